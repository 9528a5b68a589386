"""Resampling volumes and label maps between grids, separably, in torch.

Every axis is resampled on its own by a 1D operator, so 3D resampling is three cheap
passes instead of one 64-tap (cubic) or 8-tap (linear) gather per voxel:

* order 0 (nearest) is an index gather: values are copied, never blended;
* order 3 (cubic B-spline, interpolating: the spline prefilter is folded into the
  operator) is a small dense ``(n_new, n_old)`` matrix per axis applied with one matrix
  product, which BLAS runs 10-25x faster than ``scipy.ndimage.zoom(order=3)``;
* order 1 (linear) is torch's trilinear interpolation (the same voxel-centre convention).

Grid convention (the same forward and back): voxel centres, ``old = (new + 0.5) * n_old /
n_new - 0.5``, so the field of view is kept exactly; values beyond the first/last voxel
centre are the edge values. The cubic spline uses mirror boundaries for its coefficients.

Label maps go through ``"linear_onehot"`` (each class's indicator is resampled linearly
inside its bounding box, then the arg-max is taken: a class absent from a neighbourhood
can never appear in it) or ``"nearest"``. With ``separate_axis`` set (anisotropic data), that axis is resampled with
``separate_axis_order`` (0: copies of the nearest slice) and the other axes with the main
order, for images and labels alike.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.linalg import solve_banded

__all__ = [
    "SUPPORTED_ORDERS",
    "LABEL_MODES",
    "source_positions",
    "interpolation_matrix",
    "resample_image",
    "resample_label",
    "resample_probabilities",
    "resampled_shape",
]

SUPPORTED_ORDERS = (0, 1, 3)
LABEL_MODES = ("linear_onehot", "nearest")


def resampled_shape(shape, spacing, new_spacing) -> tuple[int, ...]:
    """Shape of ``shape`` voxels of ``spacing`` on a grid of ``new_spacing`` (same field of view)."""
    return tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, new_spacing)
    )


def source_positions(n_old: int, n_new: int) -> np.ndarray:
    """``(n_new,)`` continuous positions on the old axis of the new voxel centres (edge-clamped)."""
    pos = (np.arange(n_new, dtype=np.float64) + 0.5) * (n_old / n_new) - 0.5
    return np.clip(pos, 0.0, n_old - 1.0)


def _nearest_indices(n_old: int, n_new: int) -> np.ndarray:
    idx = np.floor((np.arange(n_new, dtype=np.float64) + 0.5) * (n_old / n_new)).astype(np.int64)
    return np.clip(idx, 0, n_old - 1)


def _mirror(k: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into ``[0, n)`` without repeating the edge sample (…2 1 0 1 2…)."""
    if n == 1:
        return np.zeros_like(k)
    period = 2 * (n - 1)
    k = np.mod(k, period)
    return np.where(k > n - 1, period - k, k)


def _bspline3(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    return np.where(t < 1, 2.0 / 3.0 - t**2 + 0.5 * t**3, np.where(t < 2, (2 - t) ** 3 / 6.0, 0.0))


@lru_cache(maxsize=16)
def _matrix(n_old: int, n_new: int, order: int) -> np.ndarray:
    if order not in (1, 3):
        raise ValueError(f"matrix interpolation is for orders 1 and 3, got {order}")
    x = source_positions(n_old, n_new)
    rows = np.arange(n_new)
    m = np.zeros((n_new, n_old), dtype=np.float64)
    if order == 1:
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_old - 1)
        w = x - lo
        np.add.at(m, (rows, lo), 1.0 - w)
        np.add.at(m, (rows, hi), w)
        return m
    # cubic B-spline: samples f = A c (A: the spline at integer points, tridiagonal with the
    # mirror boundary), value(x) = W c, so the operator is W A^-1 = (A^-T W^T)^T
    start = np.floor(x).astype(np.int64) - 1
    weights = np.zeros((n_new, n_old), dtype=np.float64)
    for j in range(4):
        k = start + j
        np.add.at(weights, (rows, _mirror(k, n_old)), _bspline3(x - k))
    if n_old == 1:
        return weights
    a = np.zeros((n_old, n_old), dtype=np.float64)
    base = np.arange(n_old)
    for d, w in ((-1, 1.0 / 6.0), (0, 4.0 / 6.0), (1, 1.0 / 6.0)):
        np.add.at(a, (base, _mirror(base + d, n_old)), w)
    at = np.zeros((3, n_old), dtype=np.float64)  # A^T in banded storage: super-, main, sub-diagonal
    at[0, 1:] = np.diag(a.T, 1)
    at[1] = np.diag(a.T)
    at[2, :-1] = np.diag(a.T, -1)
    return solve_banded((1, 1), at, weights.T).T


def interpolation_matrix(n_old: int, n_new: int, order: int) -> np.ndarray:
    """``(n_new, n_old)`` operator resampling one axis with spline ``order`` (1 or 3)."""
    return _matrix(int(n_old), int(n_new), int(order)).copy()


def _apply_matrix(t: torch.Tensor, axis: int, m: torch.Tensor) -> torch.Tensor:
    """``m (n_new, n_old)`` applied along axis ``axis`` (>= 1) of ``t (B, z, y, x)``."""
    if axis == 3:
        return t @ m.T
    if axis == 2:
        return m @ t
    b, n_old, y, x = t.shape
    return (m @ t.reshape(b, n_old, y * x)).reshape(b, m.shape[0], y, x)


def _resample_axis(t: torch.Tensor, axis: int, n_new: int, order: int) -> torch.Tensor:
    """Resample axis ``axis`` (>= 1) of ``t (B, z, y, x)`` to ``n_new`` voxels."""
    n_old = t.shape[axis]
    if n_new == n_old:
        return t
    if order == 0:
        return torch.index_select(t, axis, torch.from_numpy(_nearest_indices(n_old, n_new)).to(t.device))
    return _apply_matrix(t, axis, torch.from_numpy(_matrix(n_old, n_new, order)).to(t.device, t.dtype))


def _check_order(order: int) -> int:
    if int(order) not in SUPPORTED_ORDERS:
        raise ValueError(f"spline order must be one of {SUPPORTED_ORDERS}, got {order}")
    return int(order)


def _resample_batched(
    t: torch.Tensor, new_shape, order: int, separate_axis: int | None, separate_axis_order: int
) -> torch.Tensor:
    """``t (B, z, y, x)`` float -> ``(B, *new_shape)``; axes that shrink most go first (cheapest)."""
    orders = [_check_order(order)] * 3
    if separate_axis is not None:
        if separate_axis not in (0, 1, 2):
            raise ValueError(f"separate_axis must be 0, 1 or 2, got {separate_axis}")
        orders[separate_axis] = _check_order(separate_axis_order)
    if all(o in (0, 1) for o in orders):
        for axis in range(3):  # gathers copy, so they commute with the linear passes
            if orders[axis] == 0:
                t = _resample_axis(t, axis + 1, int(new_shape[axis]), 0)
        if tuple(t.shape[1:]) == tuple(new_shape):
            return t
        # trilinear over the remaining axes (gathered axes already have their size: identity)
        return F.interpolate(t.unsqueeze(0), size=tuple(new_shape), mode="trilinear", align_corners=False)[0]
    old = t.shape[1:]
    for axis in sorted(range(3), key=lambda a: new_shape[a] / old[a]):
        t = _resample_axis(t, axis + 1, int(new_shape[axis]), orders[axis])
    return t


def resample_image(
    data: np.ndarray | torch.Tensor,
    new_shape,
    order: int = 3,
    separate_axis: int | None = None,
    separate_axis_order: int = 0,
) -> np.ndarray | torch.Tensor:
    """Resample ``data (C, z, y, x)`` to ``(C, *new_shape)`` float32 with spline ``order``.

    ``separate_axis`` (0, 1 or 2 = z, y, x) is resampled with ``separate_axis_order`` instead.
    A torch tensor is resampled on its own device (a GPU: in milliseconds) and returned as a
    tensor; a numpy array comes back as a numpy array.
    """
    if data.ndim != 4:
        raise ValueError(f"expected (C, z, y, x), got shape {tuple(data.shape)}")
    new_shape = tuple(int(s) for s in new_shape)
    if isinstance(data, torch.Tensor):
        t = data.float()
        if tuple(t.shape[1:]) == new_shape:
            return t
        return _resample_batched(t, new_shape, order, separate_axis, separate_axis_order)
    data = np.asarray(data)
    if tuple(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
    out = _resample_batched(t, new_shape, order, separate_axis, separate_axis_order)
    return np.ascontiguousarray(out.numpy())


def resample_probabilities(
    probabilities: np.ndarray | torch.Tensor,
    new_shape,
    order: int = 1,
    separate_axis: int | None = None,
    separate_axis_order: int = 1,
) -> np.ndarray | torch.Tensor:
    """Resample class probabilities ``(K, z, y, x)`` (linear by default: they stay in [0, 1]).

    Tensors stay on their device, as in :func:`resample_image`.
    """
    return resample_image(probabilities, new_shape, order, separate_axis, separate_axis_order)


def resample_label(
    seg: np.ndarray,
    new_shape,
    mode: str = "linear_onehot",
    separate_axis: int | None = None,
    separate_axis_order: int = 0,
) -> np.ndarray:
    """Resample a label map ``seg (z, y, x)`` of non-negative integers to ``new_shape``.

    ``"linear_onehot"``: each class present is resampled as a linear-interpolated indicator
    (within its bounding box) and every voxel takes the class of highest weight (ties: the
    lower class), so only classes of the neighbourhood can appear. ``"nearest"``: nearest voxel on every axis.
    The ``separate_axis`` is resampled with ``separate_axis_order`` (0: nearest slice;
    1: linear like the other axes). Returns the input's dtype.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"label resampling mode must be one of {LABEL_MODES}, got {mode!r}")
    seg = np.asarray(seg)
    if seg.ndim != 3:
        raise ValueError(f"expected a (z, y, x) label map, got shape {seg.shape}")
    new_shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape) == new_shape:
        return seg.copy()
    if seg.dtype.kind not in "iub":
        raise ValueError(f"label maps hold integers, got {seg.dtype}")
    work = seg if seg.dtype in (np.uint8, np.int8, np.int16, np.int32, np.int64) else seg.astype(np.int64)
    t = torch.from_numpy(np.ascontiguousarray(work)).unsqueeze(0)  # (torch lacks most unsigned types)
    orders = [0 if mode == "nearest" else 1] * 3
    if separate_axis is not None and mode != "nearest":
        orders[separate_axis] = _check_order(min(int(separate_axis_order), 1))
    # nearest axes first: a gather commutes with the linear passes and works on integers
    for axis in range(3):
        if orders[axis] == 0:
            t = _resample_axis(t, axis + 1, new_shape[axis], 0)
    labels = t[0].numpy()
    if tuple(labels.shape) == new_shape:
        return labels.astype(seg.dtype, copy=False)
    return _onehot_linear_argmax(labels, new_shape).astype(seg.dtype, copy=False)


def _onehot_linear_argmax(labels: np.ndarray, new_shape: tuple[int, int, int]) -> np.ndarray:
    """Arg-max of the linearly resampled class indicators of ``labels (z, y, x)`` (non-negative).

    Each foreground class is resampled only inside its bounding box (plus the one voxel a
    linear weight reaches); class 0 takes the rest of the weight, ``1 - sum(foreground)``.
    Ties go to the lower class.
    """
    old_shape = labels.shape
    positions = [source_positions(o, n) for o, n in zip(old_shape, new_shape)]
    matrices = [torch.from_numpy(_matrix(o, n, 1).astype(np.float32)) for o, n in zip(old_shape, new_shape)]
    best = torch.zeros(new_shape)  # highest foreground weight so far
    total = torch.zeros(new_shape)  # sum of foreground weights
    dtype = torch.int16 if labels.size == 0 or labels.max() <= np.iinfo(np.int16).max else torch.int32
    result = torch.zeros(new_shape, dtype=dtype)
    for c, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        old_slices, new_slices, local = [], [], []  # local: the linear operator restricted to the box
        for axis, sl in enumerate(box):
            lo, hi = max(sl.start - 1, 0), min(sl.stop + 1, old_shape[axis])
            pos = positions[axis]
            touched = np.flatnonzero((pos > sl.start - 1) & (pos < sl.stop))  # non-zero weight on the box
            if touched.size == 0:
                break
            j0, j1 = int(touched[0]), int(touched[-1]) + 1
            old_slices.append(slice(lo, hi))
            new_slices.append(slice(j0, j1))
            local.append(matrices[axis][j0:j1, lo:hi])
        else:
            if all(sl.stop - sl.start == n for sl, n in zip(new_slices, new_shape)):
                # the class reaches every new voxel: trilinear over the whole volume is cheaper
                indicator = torch.from_numpy(labels == c).to(torch.float32)[None, None]
                weight = F.interpolate(indicator, size=new_shape, mode="trilinear", align_corners=False)[0, 0]
            else:
                weight = torch.from_numpy(labels[tuple(old_slices)] == c).to(torch.float32)[None]
                for axis in sorted(range(3), key=lambda a: local[a].shape[0] / local[a].shape[1]):
                    weight = _apply_matrix(weight, axis + 1, local[axis])
                weight = weight[0]
            sub = tuple(new_slices)
            better = weight > best[sub]
            torch.maximum(best[sub], weight, out=best[sub])
            total[sub] += weight
            result[sub].masked_fill_(better, c)
    result.masked_fill_((1.0 - total) >= best, 0)
    return result.numpy()
