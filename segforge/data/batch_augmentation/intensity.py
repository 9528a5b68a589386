"""Intensity transforms of a batch ``(B, C, *spatial)`` float32, with per-row parameters.

Every function takes the rows it changes (``(N, *spatial)``: one row per sample and channel,
or per sample for noise) and their parameters as tensors on the rows' device, and returns
the transformed rows; :class:`~segforge.data.batch_augmentation.BatchAugmentation` picks the
rows. Each reproduces the batchgenerators transform of :mod:`segforge.data.augmentation`:

* :func:`gaussian_blur`: ``scipy.ndimage.gaussian_filter`` (truncated at ``int(4 sigma + 0.5)``
  voxels, ``reflect`` borders), separable;
* :func:`multiply`: brightness;
* :func:`contrast`: ``(x - mean) * factor + mean`` clipped to the row's range;
* :func:`simulate_low_resolution`: nearest downsampling by ``zoom`` then cubic upsampling back
  (Keys' cubic convolution, an interpolating cubic like the spline batchgenerators uses, edge
  mode) as one ``(n, n)`` matrix per row and axis;
* :func:`gamma`: ``((x - min) / range) ** gamma`` keeping each row's mean and standard deviation,
  optionally of the inverted image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BLUR_TRUNCATE", "gaussian_blur", "multiply", "contrast", "simulate_low_resolution", "gamma",
           "low_resolution_matrices"]

BLUR_TRUNCATE = 4.0


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, 2 radius + 1)`` normalised kernels, each cut at its own ``int(4 sigma + 0.5)`` as scipy does;
    a sigma of 0 gives the identity kernel."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-6)[:, None]
    own_radius = torch.floor(BLUR_TRUNCATE * s + 0.5)
    k = torch.exp(-0.5 * (offsets / s) ** 2) * (offsets.abs() <= own_radius)
    return k / k.sum(1, keepdim=True)


def _symmetric_pad(x: torch.Tensor, axis: int, r: int) -> torch.Tensor:
    """Pad ``r`` voxels on both sides of ``axis`` by mirroring with the edge repeated (scipy's ``reflect``)."""
    n = x.shape[axis]
    if r > n:  # pad repeatedly for rows shorter than the kernel
        return _symmetric_pad(_symmetric_pad(x, axis, n), axis, r - n)
    before = x.narrow(axis, 0, r).flip(axis)
    after = x.narrow(axis, n - r, r).flip(axis)
    return torch.cat([before, x, after], dim=axis)


def gaussian_blur(rows: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Blur each row ``(N, *spatial)`` with its own isotropic Gaussian of ``sigma (N,)`` voxels."""
    n, spatial = rows.shape[0], rows.shape[1:]
    radius = int(BLUR_TRUNCATE * max_sigma + 0.5)
    kernels = _gaussian_kernels(sigma, radius).to(rows.dtype)
    conv = F.conv3d if len(spatial) == 3 else F.conv2d
    x = rows[None]  # (1, N, *spatial): one group per row
    for axis in range(len(spatial)):
        shape = [n, 1] + [1] * len(spatial)
        shape[2 + axis] = 2 * radius + 1
        x = conv(_symmetric_pad(x, 2 + axis, radius), kernels.view(shape), groups=n)
    return x[0]


def multiply(rows: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return rows * factor.view(-1, *[1] * (rows.ndim - 1)).to(rows.dtype)


def _row_stat(rows: torch.Tensor, fn) -> torch.Tensor:
    return fn(rows.flatten(1), 1).view(-1, *[1] * (rows.ndim - 1))


def contrast(rows: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``(x - mean) * factor + mean`` per row, clipped to the row's minimum and maximum."""
    mean = _row_stat(rows, torch.mean)
    lo, hi = _row_stat(rows, torch.amin), _row_stat(rows, torch.amax)
    out = (rows - mean) * factor.view_as(mean) + mean
    return torch.maximum(torch.minimum(out, hi), lo)


def gamma(rows: torch.Tensor, exponent: torch.Tensor, invert: bool, epsilon: float = 1e-7) -> torch.Tensor:
    """batchgenerators' ``augment_gamma(retain_stats=True, per_channel=True)`` per row."""
    x = -rows if invert else rows
    mean = _row_stat(x, torch.mean)
    std = x.flatten(1).std(1, unbiased=False).view_as(mean)
    lo = _row_stat(x, torch.amin)
    span = _row_stat(x, torch.amax) - lo + epsilon
    y = ((x - lo) / span).clamp_min(0).pow(exponent.view_as(mean)) * span + lo
    y = y - _row_stat(y, torch.mean)
    y = y / (y.flatten(1).std(1, unbiased=False).view_as(mean) + 1e-8) * std + mean
    return -y if invert else y


def _keys(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel at distances ``t >= 0``."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def low_resolution_matrices(zoom: torch.Tensor, n: int, max_zoom: float = 1.0) -> torch.Tensor:
    """``(N, n, n)``: nearest downsampling of ``n`` voxels to ``m = round(n * zoom)``, then cubic
    upsampling back to ``n`` (voxel centres aligned, edges repeated), per row. ``zoom`` 1 gives
    exactly the identity; ``max_zoom`` bounds ``zoom`` (it sizes the low-resolution grid)."""
    device = zoom.device
    m = torch.round(n * zoom.double()).clamp_min(1)[:, None]  # (N, 1) low-resolution sizes
    mmax = max(n, int(math.ceil(n * max_zoom)))
    j = torch.arange(mmax, device=device, dtype=torch.float64)[None]
    source = torch.floor((j + 0.5) * n / m).clamp(0, n - 1).long()  # (N, mmax) nearest voxel of each sample
    i = torch.arange(n, device=device, dtype=torch.float64)[None]
    q = (i + 0.5) * m / n - 0.5  # (N, n) position on the low-resolution grid
    base = torch.floor(q)
    rows = torch.zeros((zoom.shape[0], n, n), dtype=torch.float64, device=device)
    for offset in (-1, 0, 1, 2):
        tap = base + offset
        weight = _keys(q - tap)
        index = torch.minimum(tap.clamp_min(0), m - 1).long()  # edge mode on the low-resolution grid
        rows.scatter_add_(2, source.gather(1, index)[..., None], weight[..., None])
    return rows.float()


def simulate_low_resolution(rows: torch.Tensor, zoom: torch.Tensor, axes, max_zoom: float = 1.0) -> torch.Tensor:
    """Downsample each row ``(N, *spatial)`` by ``zoom (N,)`` along ``axes`` and back (see the module)."""
    x = rows
    for axis in axes:
        n = x.shape[1 + axis]
        m = low_resolution_matrices(zoom, n, max_zoom).to(x.dtype)  # (N, n_out, n_in)
        moved = x.movedim(1 + axis, -1)
        shape = (m.shape[0],) + (1,) * (moved.ndim - 3) + (n, n)
        x = torch.matmul(moved, m.transpose(1, 2).reshape(shape)).movedim(-1, 1 + axis)
    return x
