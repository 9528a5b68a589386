"""A cascade that never silently misses: the locator's confidence and the crop's border check.

A locate-then-crop cascade fails silently in two ways: the locator points at the wrong place
(no target, a look-alike, one of two targets) and the crop holds none or part of the target;
or the target is larger or further off than the crop allows and is cut at the crop's edge.
Both are caught here from numbers alone (no torch):

* :func:`heatmap_statistics` measures a heatmap: its raw ``peak`` height, the share of its
  mass near the peak (``mass_near_peak``), its ``spread`` (voxels) around the peak, and the
  height of the strongest ``second_peak`` away from it (relative to the peak). The locator
  trainer records them for every validation case at its final validation
  (``locator_validation.json``, ``confidence_reference``: :func:`reference_statistics`).
* :func:`assess_confidence` compares one case's statistics with that reference and says
  whether to trust the crop, to cover every strong peak, or to segment the whole volume.
* :func:`touched_faces` tells which faces of the crop the segmentation touches where the
  crop is not at the image border; :func:`grow_box` grows the crop on those sides.

The cascade predictor acts on these answers and writes what it did to ``CASE_cascade.json``
(docs/cascade.md, "Never a silent miss").
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "confidence_radius",
    "heatmap_peak_value",
    "heatmap_statistics",
    "reference_statistics",
    "assess_confidence",
    "strong_peaks",
    "box_around_points",
    "touched_faces",
    "grow_box",
    "DEFAULT_REFERENCE",
]

# used when a locator was trained before the reference was recorded: a single clear blob
DEFAULT_REFERENCE = {"n": 0, "min_peak": None, "min_mass_near_peak": 0.5, "max_spread": None,
                     "max_second_peak": 0.1,
                     "why": "no validation statistics in locator_validation.json: fixed thresholds"}


def confidence_radius(sigma_voxels: float) -> float:
    """What counts as "near the peak" for a blob of ``sigma_voxels``: three sigmas and a voxel."""
    return 3.0 * float(sigma_voxels) + 1.0


def heatmap_peak_value(heatmap: np.ndarray, loss: str) -> float:
    """The network's peak on one channel of a displayed heatmap: for ``kl`` the heatmap is the softmax
    scaled to peak 1, so the softmax peak is ``1 / sum`` (the mass on the image); for ``mse`` the maximum."""
    h = np.asarray(heatmap, dtype=np.float64)
    if loss == "kl":
        total = float(np.clip(h, 0, None).sum())
        return 1.0 / total if total > 0 else 0.0
    return float(h.max())


def heatmap_statistics(heatmap: np.ndarray, radius: float, raw_peak: float | None = None) -> dict:
    """Statistics of one heatmap channel ``(z, y, x)`` (non-negative; any scale).

    ``radius`` (voxels) is what counts as "near the peak" (about three sigmas of the trained
    blob); ``spread_voxels`` is the root-mean-square distance from the peak of the mass within
    ``2 * radius`` (the blob's own width; mass further away shows in ``mass_near_peak`` and
    ``second_peak``); ``second_peak`` is the highest value further than ``2 * radius`` from
    the peak, divided by the peak. ``raw_peak``: the network's own peak value when ``heatmap`` was
    rescaled for display (the KL locator's softmax maximum), else the maximum of ``heatmap``.
    """
    h = np.clip(np.asarray(heatmap, dtype=np.float64), 0, None)
    total = float(h.sum())
    top = float(h.max()) if h.size else 0.0
    peak_at = np.unravel_index(int(np.argmax(h)), h.shape)
    if total <= 0 or top <= 0:
        return {"peak": 0.0 if raw_peak is None else float(raw_peak), "peak_voxel": [int(v) for v in peak_at],
                "mass_near_peak": 0.0, "spread_voxels": float("inf"), "second_peak": 1.0}
    grid = np.indices(h.shape, dtype=np.float64)
    d2 = sum((g - p) ** 2 for g, p in zip(grid, peak_at))
    near = d2 <= radius**2
    far = d2 > (2 * radius) ** 2
    return {
        "peak": float(top if raw_peak is None else raw_peak),
        "peak_voxel": [int(v) for v in peak_at],
        "mass_near_peak": float(h[near].sum() / total),
        "spread_voxels": float(np.sqrt((h * d2)[~far].sum() / max(h[~far].sum(), 1e-300))),
        "second_peak": float(h[far].max() / top) if far.any() else 0.0,
    }


def reference_statistics(cases: list[dict]) -> dict:
    """What the validation cases' heatmaps looked like: the weakest peak and near-peak mass, the widest
    spread, the strongest second peak (each case a :func:`heatmap_statistics` dict)."""
    if not cases:
        return dict(DEFAULT_REFERENCE)
    return {
        "n": len(cases),
        "min_peak": float(min(c["peak"] for c in cases)),
        "min_mass_near_peak": float(min(c["mass_near_peak"] for c in cases)),
        "max_spread": float(max(c["spread_voxels"] for c in cases)),
        "max_second_peak": float(max(c["second_peak"] for c in cases)),
        "why": "extremes over the locator's validation cases at its final validation",
    }


def assess_confidence(stats: dict, reference: dict | None) -> dict:
    """``{"confident": bool, "action": "crop" | "cover_peaks" | "whole_volume", "reasons": [...]}``.

    Low confidence, each against the validation reference: a peak under half the weakest one
    seen; less than half the weakest near-peak mass share; a spread over twice the widest; a
    second peak above ``max(0.2, twice the strongest seen)`` of the first (two candidate
    targets: the crop must cover every strong peak; a trained KL locator's validation second
    peaks were under 0.01, docs/cascade.md). Anything but a lone second peak sends the whole
    volume to the segmenter.
    """
    ref = {**DEFAULT_REFERENCE, **(reference or {})}
    reasons, whole = [], False
    if ref.get("min_peak") and stats["peak"] < 0.5 * ref["min_peak"]:
        reasons.append(f"peak {stats['peak']:.3g} is under half the weakest validation peak {ref['min_peak']:.3g}")
        whole = True
    if ref.get("min_mass_near_peak") and stats["mass_near_peak"] < 0.5 * ref["min_mass_near_peak"]:
        reasons.append(f"{stats['mass_near_peak']:.0%} of the heatmap lies near its peak, under half the least "
                       f"seen in validation ({ref['min_mass_near_peak']:.0%})")
        whole = True
    if ref.get("max_spread") and stats["spread_voxels"] > 2 * ref["max_spread"]:
        reasons.append(f"spread {stats['spread_voxels']:.1f} voxels is over twice the widest seen in validation "
                       f"({ref['max_spread']:.1f})")
        whole = True
    limit = max(0.2, 2 * (ref.get("max_second_peak") or 0.0))
    two = stats["second_peak"] > limit
    if two:
        reasons.append(f"a second peak at {stats['second_peak']:.0%} of the first (validation: at most "
                       f"{ref.get('max_second_peak') or 0:.0%})")
    action = "whole_volume" if whole else ("cover_peaks" if two else "crop")
    return {"confident": not reasons, "action": action, "reasons": reasons, "second_peak_limit": limit}


def strong_peaks(heatmap: np.ndarray, radius: float, fraction: float = 0.2, limit: int = 4) -> list[np.ndarray]:
    """Voxels ``(z, y, x)`` of local maxima above ``fraction`` of the highest, at least ``2 * radius`` apart."""
    h = np.asarray(heatmap, dtype=np.float64).copy()
    top = h.max()
    peaks = []
    grid = np.indices(h.shape, dtype=np.float64)
    while len(peaks) < limit and h.max() >= fraction * top > 0:
        at = np.unravel_index(int(np.argmax(h)), h.shape)
        peaks.append(np.asarray(at, dtype=np.float64))
        h[sum((g - p) ** 2 for g, p in zip(grid, at)) <= (2 * radius) ** 2] = -np.inf
    return peaks


def box_around_points(points, crop_size, image_shape) -> list[list[int]]:
    """The smallest box holding a ``crop_size`` box around every point, clipped to the image."""
    half = np.asarray(crop_size, dtype=np.float64) / 2
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    lo = np.floor(pts.min(0) + 0.5 - half).astype(int)
    hi = lo + np.ceil(pts.max(0) - pts.min(0)).astype(int) + np.asarray(crop_size, dtype=int)
    shape = np.asarray(image_shape, dtype=int)
    size = np.minimum(hi - lo, shape)
    lo = np.clip(lo, 0, shape - size)
    return [[int(a), int(a + s)] for a, s in zip(lo, size)]


def touched_faces(labels: np.ndarray, box, image_shape) -> list[tuple[int, int]]:
    """Faces ``(axis, side)`` (side 0 = low, 1 = high) of ``box`` where the foreground of ``labels``
    (the crop's label map, shape = box size) reaches the crop's edge and the image goes on beyond it."""
    faces = []
    for axis, ((b0, b1), n) in enumerate(zip(box, image_shape)):
        first = np.take(labels, 0, axis=axis)
        last = np.take(labels, labels.shape[axis] - 1, axis=axis)
        if b0 > 0 and first.any():
            faces.append((axis, 0))
        if b1 < n and last.any():
            faces.append((axis, 1))
    return faces


def grow_box(box, faces, image_shape, amount) -> list[list[int]]:
    """``box`` moved outwards by ``amount[axis]`` voxels on each touched face, clipped to the image."""
    out = [list(b) for b in box]
    for axis, side in faces:
        if side == 0:
            out[axis][0] = max(0, out[axis][0] - int(amount[axis]))
        else:
            out[axis][1] = min(int(image_shape[axis]), out[axis][1] + int(amount[axis]))
    return out
