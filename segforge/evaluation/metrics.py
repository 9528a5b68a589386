"""Overlap and surface-distance metrics of one class in one case.

Masks are boolean ``(z, y, x)`` arrays; ``spacing`` is ``(z, y, x)`` in mm. Surfaces are
the mask voxels with at least one face neighbour outside the mask; distances are between
voxel centres, in mm, from Euclidean distance transforms with the voxel spacing.

Empty masks (documented in docs/evaluation.md):

============================  =====  =====  ==========================  ============
reference / prediction        Dice   IoU    HD95                        surface Dice
============================  =====  =====  ==========================  ============
both empty                    NaN    NaN    NaN                         NaN
one empty, the other not      0      0      image diagonal (mm)         0
============================  =====  =====  ==========================  ============

NaN means "not defined" and is left out of means. The diagonal is the largest distance two
points of the image can have: a finite worst score, so a missed structure pulls the mean
HD95 down instead of vanishing from it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["dice", "iou", "surface_voxels", "surface_distances", "hd95", "surface_dice", "class_metrics"]


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """``2 |R ∩ P| / (|R| + |P|)``; NaN when both are empty."""
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    total = int(r.sum()) + int(p.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(r, p).sum()) / total


def iou(reference: np.ndarray, prediction: np.ndarray) -> float:
    """``|R ∩ P| / |R ∪ P|``; NaN when both are empty."""
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    union = int(np.logical_or(r, p).sum())
    if union == 0:
        return float("nan")
    return int(np.logical_and(r, p).sum()) / union


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(z, y, x)``: voxels of ``mask`` with a face neighbour outside it (or the image)."""
    mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def surface_distances(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each prediction surface voxel to the reference surface, and back.

    Returns ``(pred_to_ref, ref_to_pred)``, 1D arrays. Both masks must be non-empty. The
    work is done inside the bounding box of both masks (plus one voxel), which holds every
    surface voxel, so the distances are the same as on the whole image.
    """
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    box = _bounding_box(r | p, margin=1)
    r, p = r[box], p[box]
    surface_r, surface_p = surface_voxels(r), surface_voxels(p)
    to_r = ndimage.distance_transform_edt(~surface_r, sampling=spacing)
    to_p = ndimage.distance_transform_edt(~surface_p, sampling=spacing)
    return to_r[surface_p], to_p[surface_r]


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> float:
    """95th percentile Hausdorff distance (mm): the larger of the two directed 95th percentiles."""
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    empty_r, empty_p = not r.any(), not p.any()
    if empty_r and empty_p:
        return float("nan")
    if empty_r or empty_p:
        return _diagonal_mm(r.shape, spacing)
    pred_to_ref, ref_to_pred = surface_distances(r, p, spacing)
    return float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))


def surface_dice(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 1.0
) -> float:
    """Share of both surfaces lying within ``tolerance_mm`` of the other surface.

    ``(|{s in S_P: d(s, S_R) <= tol}| + |{s in S_R: d(s, S_P) <= tol}|) / (|S_P| + |S_R|)``,
    counting surface voxels.
    """
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    empty_r, empty_p = not r.any(), not p.any()
    if empty_r and empty_p:
        return float("nan")
    if empty_r or empty_p:
        return 0.0
    pred_to_ref, ref_to_pred = surface_distances(r, p, spacing)
    tol = tolerance_mm + 1e-6  # distances on a grid hit the tolerance exactly
    within = int((pred_to_ref <= tol).sum()) + int((ref_to_pred <= tol).sum())
    return within / (pred_to_ref.size + ref_to_pred.size)


def class_metrics(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float], tolerance_mm: float = 1.0
) -> dict:
    """All metrics of one class plus the voxel counts (``n_ref``, ``n_pred``) and TP/FP/FN."""
    r, p = np.asarray(reference, bool), np.asarray(prediction, bool)
    tp = int(np.logical_and(r, p).sum())
    n_ref, n_pred = int(r.sum()), int(p.sum())
    out = {
        "dice": dice(r, p),
        "iou": iou(r, p),
        "n_ref": n_ref,
        "n_pred": n_pred,
        "tp": tp,
        "fp": n_pred - tp,
        "fn": n_ref - tp,
    }
    if n_ref and n_pred:
        pred_to_ref, ref_to_pred = surface_distances(r, p, spacing)
        out["hd95"] = float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))
        tol = tolerance_mm + 1e-6
        within = int((pred_to_ref <= tol).sum()) + int((ref_to_pred <= tol).sum())
        out["surface_dice"] = within / (pred_to_ref.size + ref_to_pred.size)
    else:
        out["hd95"] = hd95(r, p, spacing)
        out["surface_dice"] = surface_dice(r, p, spacing, tolerance_mm)
    return out


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(hits[0] - margin, 0), min(hits[-1] + 1 + margin, mask.shape[axis])))
    return tuple(box)


def _diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.linalg.norm(np.asarray(shape, float) * np.asarray(spacing, float)))
