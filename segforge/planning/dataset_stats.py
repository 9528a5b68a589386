"""Numbers the rules read from a fingerprint dict (keys: docs/architecture.md "Fingerprint").

Shapes are ``(z, y, x)`` voxels; spacings ``(z, y, x)`` mm. A case's shape at another
spacing is ``shape * case_spacing / spacing`` (rounded), as resampling will make it.
"""

from __future__ import annotations

import numpy as np

from segforge.errors import InputError

__all__ = [
    "summary",
    "case_spacings",
    "shapes_at_spacing",
    "median_shape_at_spacing",
    "total_voxels_at_spacing",
    "median_extent_mm",
    "num_channels",
    "num_classes",
]


def summary(fingerprint: dict) -> dict:
    try:
        return fingerprint["summary"]
    except KeyError:
        raise InputError("fingerprint has no 'summary'; re-extract it (delete fingerprint.json)") from None


def case_spacings(fingerprint: dict) -> np.ndarray:
    """``(N, 3)`` spacings of the cases (the summary's median when the cases are absent)."""
    cases = fingerprint.get("cases") or []
    if cases:
        return np.array([c["spacing"] for c in cases], dtype=float)
    return np.array([summary(fingerprint)["median_spacing"]], dtype=float)


def _case_shapes(fingerprint: dict, cropped: bool) -> np.ndarray:
    key = "shape_after_crop" if cropped else "shape"
    cases = fingerprint.get("cases") or []
    if cases:
        return np.array([c[key] for c in cases], dtype=float)
    return np.array([summary(fingerprint)["median_" + key]], dtype=float)


def shapes_at_spacing(fingerprint: dict, spacing, cropped: bool = True) -> np.ndarray:
    """``(N, 3)`` case shapes (after cropping to non-zero when ``cropped``) at ``spacing``."""
    shapes = _case_shapes(fingerprint, cropped) * case_spacings(fingerprint) / np.asarray(spacing, dtype=float)
    return np.maximum(np.round(shapes), 1)


def median_shape_at_spacing(fingerprint: dict, spacing, cropped: bool = True) -> list[int]:
    return [int(v) for v in np.round(np.median(shapes_at_spacing(fingerprint, spacing, cropped), axis=0))]


def total_voxels_at_spacing(fingerprint: dict, spacing, cropped: bool = True) -> int:
    """Voxels of the whole dataset at ``spacing``; a summary-only fingerprint counts one case."""
    return int(np.prod(shapes_at_spacing(fingerprint, spacing, cropped), axis=1).sum())


def median_extent_mm(fingerprint: dict, cropped: bool = False) -> np.ndarray:
    """Median physical size ``(z, y, x)`` mm of the (whole, by default) images."""
    return np.median(_case_shapes(fingerprint, cropped) * case_spacings(fingerprint), axis=0)


def max_extent_mm(fingerprint: dict, cropped: bool = False) -> np.ndarray:
    """Largest physical size ``(z, y, x)`` mm over the (whole, by default) images, per axis."""
    return np.max(_case_shapes(fingerprint, cropped) * case_spacings(fingerprint), axis=0)


def num_channels(fingerprint: dict) -> int:
    return len(fingerprint["channel_names"])


def num_classes(fingerprint: dict) -> int:
    """The network's outputs (softmax classes including background, or sigmoid regions; not the ignore label)."""
    from segforge.io.labels import parse_label_scheme

    return parse_label_scheme(fingerprint["labels"], fingerprint.get("regions_class_order")).num_outputs
