"""Gaussian heatmap targets and the sub-voxel peak readout of the locator.

All positions are continuous voxel indices ``(z, y, x)`` of the array they refer to
(voxel centres at integers). Sigmas are in voxels; with ``spacing`` they are voxels of the
*finest* axis and the Gaussian is round in millimetres (coarser axes get fewer voxels).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "axis_sigmas",
    "gaussian_heatmap",
    "label_centroids",
    "heatmap_targets",
    "heatmap_batch",
    "soft_argmax",
    "centroid_error_mm",
]


def axis_sigmas(sigma_voxels, spacing=None) -> np.ndarray:
    """Per-axis sigma ``(3,)`` in voxels.

    ``sigma_voxels``: one value or one per axis. With ``spacing`` (z, y, x mm) and a single
    value, the value is in voxels of the finest axis and converted so the blob is isotropic
    in mm: ``sigma_axis = sigma * min(spacing) / spacing_axis``.
    """
    s = np.asarray(sigma_voxels, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(3, float(s))
        if spacing is not None:
            sp = np.asarray(spacing, dtype=np.float64)
            s = s * sp.min() / sp
    if s.shape != (3,):
        raise ValueError(f"sigma needs one value or one per axis (3), got {s.shape}")
    if np.any(s <= 0):
        raise ValueError(f"sigma must be positive, got {s.tolist()}")
    return s


def gaussian_heatmap(shape, center_voxel, sigma_voxels, spacing=None) -> np.ndarray:
    """A ``(z, y, x)`` float32 Gaussian with peak value 1 at ``center_voxel`` (sub-voxel).

    The value at voxel ``i`` is ``exp(-sum_a (i_a - c_a)^2 / (2 sigma_a^2))``; it is 1 only
    when the centre lies exactly on a voxel. Separable: built from three 1D profiles.
    """
    shape = tuple(int(n) for n in shape)
    c = np.asarray(center_voxel, dtype=np.float64)
    s = axis_sigmas(sigma_voxels, spacing)
    profiles = [np.exp(-((np.arange(n) - c[a]) ** 2) / (2.0 * s[a] ** 2)) for a, n in enumerate(shape)]
    out = profiles[0][:, None, None] * profiles[1][None, :, None] * profiles[2][None, None, :]
    return out.astype(np.float32)


def label_centroids(seg: np.ndarray, classes, target: str = "union") -> list[np.ndarray | None]:
    """Centroids ``(3,)`` in voxels of a label map ``(z, y, x)``.

    ``target="union"``: one centroid of all ``classes`` together; ``"per_class"``: one per
    class in ``classes`` order. ``None`` where the structure is absent.
    """
    if target not in ("union", "per_class"):
        raise ValueError(f"locator target must be 'union' or 'per_class', got {target!r}")
    groups = [list(classes)] if target == "union" else [[c] for c in classes]
    out: list[np.ndarray | None] = []
    for group in groups:
        idx = np.argwhere(np.isin(seg, group))
        out.append(idx.mean(axis=0) if len(idx) else None)
    return out


def heatmap_targets(shape, centroids, sigma_voxels, spacing=None) -> np.ndarray:
    """``(K, z, y, x)`` float32 targets, one Gaussian per centroid; zeros where it is ``None``."""
    out = np.zeros((len(centroids), *shape), dtype=np.float32)
    for k, c in enumerate(centroids):
        if c is not None:
            out[k] = gaussian_heatmap(shape, c, sigma_voxels, spacing)
    return out


def heatmap_batch(shape, centroids: torch.Tensor, sigma_voxels, spacing=None) -> torch.Tensor:
    """:func:`heatmap_targets` of a batch, in torch where the centroids are (e.g. on the GPU).

    ``centroids`` ``(B, K, 3)`` voxel positions, NaN where a structure is absent; returns
    ``(B, K, *shape)`` float32, zeros for the absent ones. The 1D profiles are computed in
    float64 like :func:`gaussian_heatmap`, so both agree to float32 rounding.
    """
    s = torch.as_tensor(axis_sigmas(sigma_voxels, spacing), dtype=torch.float64, device=centroids.device)
    c = centroids.to(torch.float64)
    valid = ~torch.isnan(c).any(-1)  # (B, K)
    c = torch.nan_to_num(c)
    profiles = []
    for a, n in enumerate(shape):
        i = torch.arange(int(n), dtype=torch.float64, device=c.device)
        profiles.append(torch.exp(-((i - c[..., a, None]) ** 2) / (2.0 * s[a] ** 2)).to(torch.float32))
    out = profiles[0][..., :, None, None] * profiles[1][..., None, :, None] * profiles[2][..., None, None, :]
    return out * valid[..., None, None, None].to(out.dtype)


def soft_argmax(heatmap: np.ndarray, window: int = 3, min_fraction: float = 0.05) -> np.ndarray:
    """Sub-voxel peak position ``(3,)`` ``(z, y, x)`` of a heatmap ``(z, y, x)``.

    Around the argmax, inside a box of half-width ``window`` (clipped to the image), the
    voxels above ``min_fraction`` of the peak are fitted with an axis-aligned Gaussian by
    weighted least squares on ``log h`` (weights ``h^2``, which approximates a fit on ``h``
    itself). For a Gaussian the fit is exact — also when the blob is cut by the image
    border, where a plain weighted mean would be pulled inwards. Where the fit is
    degenerate (flat or one-voxel peak along an axis) that axis falls back to the
    ``h``-weighted mean over the same voxels.
    """
    h = np.asarray(heatmap, dtype=np.float64)
    if h.ndim != 3:
        raise ValueError(f"heatmap must be (z, y, x), got shape {h.shape}")
    peak = np.array(np.unravel_index(int(np.argmax(h)), h.shape))
    lo = np.maximum(peak - window, 0)
    hi = np.minimum(peak + window + 1, h.shape)
    box = h[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    top = box.max()
    if not np.isfinite(top) or top <= 0:
        return peak.astype(np.float64)
    keep = box > top * min_fraction
    coords = (np.argwhere(keep) + lo).astype(np.float64)  # (N, 3)
    values = box[keep]
    mean = (coords * values[:, None]).sum(0) / values.sum()
    rel = coords - peak  # centred for conditioning
    design = np.concatenate([np.ones((len(rel), 1)), rel, rel**2], axis=1)  # (N, 7)
    w = values  # sqrt of the h^2 weights
    result = mean.copy()
    try:
        params, *_ = np.linalg.lstsq(design * w[:, None], np.log(values) * w, rcond=None)
    except np.linalg.LinAlgError:
        return result
    for a in range(3):
        b, c = params[1 + a], params[4 + a]
        spread = np.ptp(rel[:, a])
        if c < -1e-9 and spread >= 2:  # a downward parabola seen over >= 3 voxels
            pos = peak[a] - b / (2 * c)
            if abs(pos - peak[a]) <= window:
                result[a] = pos
    return result


def centroid_error_mm(predicted_voxel, true_voxel, spacing) -> dict:
    """Distance between two voxel positions on a grid of ``spacing`` (z, y, x mm).

    Returns ``{"error_mm": float, "error_zyx_mm": [dz, dy, dx]}`` (signed, predicted - true).
    """
    d = (np.asarray(predicted_voxel, float) - np.asarray(true_voxel, float)) * np.asarray(spacing, float)
    return {"error_mm": float(np.linalg.norm(d)), "error_zyx_mm": [float(v) for v in d]}
