"""Preprocess one case: crop to the non-zero region, resample, normalise, describe.

The same function serves training (with a label) and prediction (without); its
``properties`` dict is what :func:`segforge.preprocessing.inverse.restore_to_original`
needs to put a prediction back on the original grid (docs/architecture.md,
"Preprocessed cases").
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from scipy import ndimage

from segforge.errors import InputError
from segforge.io.geometry import Geometry
from segforge.planning.plans import Configuration
from segforge.fingerprint.cropping import crop_to_box, nonzero_bbox, nonzero_mask
from segforge.preprocessing.inverse import original_to_preprocessed_index
from segforge.preprocessing.normalization import normalize_image
from segforge.preprocessing.resampling import resample_image, resample_label, resampled_shape

__all__ = ["MAX_CLASS_LOCATIONS", "preprocess_case", "preprocessing_version", "case_seed"]

MAX_CLASS_LOCATIONS = 10_000


def preprocessing_version(configuration: Configuration) -> str:
    """Digest of the settings that change preprocessed arrays (not network, patch or batch).

    Configurations sharing a ``data_identifier`` with the same preprocessing share it, so
    their cases are made once; any change of spacing, normalisation, resampling or cropping
    changes it and makes the cases be redone.
    """
    c = configuration
    d = {
        "spacing": [float(s) for s in c.spacing],
        "crop_to_nonzero": bool(c.crop_to_nonzero),
        "normalization": [
            {k: getattr(n, k) for k in ("scheme", "mean", "std", "lower", "upper")} for n in c.normalization
        ],
        "resampling": {
            k: getattr(c.resampling, k) for k in ("image_order", "label_mode", "separate_axis", "separate_axis_order")
        },
        "max_class_locations": MAX_CLASS_LOCATIONS,
    }
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def case_seed(name: str) -> int:
    """A stable seed from a case name (the class-location sample is the same on every run)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


def preprocess_case(
    image: np.ndarray,
    geometry: Geometry,
    configuration: Configuration,
    label: np.ndarray | None = None,
    rng_seed: int = 0,
    case_name: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """Crop, resample and normalise one case as ``configuration`` says.

    ``image (C, Z, Y, X)`` on ``geometry``; ``label (Z, Y, X)`` non-negative integers or
    ``None``. Returns ``data (C, z, y, x)`` float32, ``seg (z, y, x)`` int16 (or ``None``)
    and the properties dict of docs/architecture.md ("Preprocessed cases"); class locations
    are sampled with ``rng_seed``.
    """
    image = np.asarray(image)
    if image.ndim != 4:
        raise InputError(f"expected an image of shape (C, Z, Y, X), got {image.shape}", case_name)
    if tuple(image.shape[1:]) != tuple(geometry.shape):
        raise InputError(f"image shape {image.shape[1:]} does not match its geometry {geometry.shape}", case_name)
    if len(configuration.normalization) != image.shape[0]:
        raise InputError(
            f"the plans expect {len(configuration.normalization)} channel(s), the image has {image.shape[0]}", case_name
        )
    if label is not None:
        label = np.asarray(label)
        if label.shape != tuple(geometry.shape):
            raise InputError(f"label shape {label.shape} does not match image shape {geometry.shape}", case_name)

    # 1. crop to the non-zero region (the whole image when the configuration does not crop)
    if configuration.crop_to_nonzero:
        box = [[int(a), int(b)] for a, b in nonzero_bbox(image)]
    else:
        box = [[0, int(n)] for n in geometry.shape]
    cropped = crop_to_box(image, box)
    cropped_label = _as_int16(crop_to_box(label, box), case_name) if label is not None else None
    crop_shape = tuple(int(b - a) for a, b in box)

    # 2. resample to the configuration's spacing
    rs = configuration.resampling
    new_shape = resampled_shape(crop_shape, geometry.spacing, configuration.spacing)
    data = resample_image(cropped.astype(np.float32, copy=False), new_shape, rs.image_order, rs.separate_axis,
                          rs.separate_axis_order)
    if np.may_share_memory(data, image):
        data = data.copy()
    seg = None
    if cropped_label is not None:
        seg = resample_label(cropped_label, new_shape, rs.label_mode, rs.separate_axis,
                             rs.separate_axis_order)

    # 3. normalise each channel
    mask = None
    if any(n.scheme == "zscore_nonzero" for n in configuration.normalization):
        # the mask's linear resampling above one half: the one-hot arg-max of a two-class map
        weight = resample_image(nonzero_mask(cropped)[None].astype(np.float32), new_shape, 1, rs.separate_axis,
                                min(int(rs.separate_axis_order), 1))
        mask = weight[0] > 0.5
    normalize_image(data, configuration.normalization, mask)

    # 4. describe
    properties = {
        "case": case_name,
        "configuration": configuration.name,
        "plans_version": configuration.version(),
        "preprocessing_version": preprocessing_version(configuration),
        "original_geometry": geometry.to_dict(),
        "crop_box": box,
        "shape_after_crop": list(crop_shape),
        "preprocessed_shape": list(new_shape),
        "preprocessed_spacing": [float(s) * c / n for s, c, n in zip(geometry.spacing, crop_shape, new_shape)],
        "class_locations": {},
        "centroid_voxel": None,
        "centroid_world": None,
    }
    if seg is not None:
        properties["class_locations"] = _class_locations(seg, cropped_label, rng_seed)
        centroid = _foreground_centroid(cropped_label)
        if centroid is not None:
            original_index = centroid + np.asarray([a for a, _ in box], dtype=np.float64)
            properties["centroid_voxel"] = [float(v) for v in original_to_preprocessed_index(original_index, properties)]
            properties["centroid_world"] = [float(v) for v in geometry.index_to_world(original_index)]
    return np.ascontiguousarray(data, dtype=np.float32), seg, properties


def _as_int16(label: np.ndarray, case_name: str | None) -> np.ndarray:
    if label.dtype.kind not in "iub":
        rounded = np.rint(label)
        if not np.array_equal(rounded, label):
            raise InputError("label map holds non-integer values", case_name)
        label = rounded
    if label.size and (label.min() < 0 or label.max() > np.iinfo(np.int16).max):
        raise InputError(f"label values must lie in [0, 32767], found {label.min()}..{label.max()}", case_name)
    return label.astype(np.int16, copy=False)


def _class_locations(seg: np.ndarray, original: np.ndarray, seed: int) -> dict[str, list[list[int]]]:
    """Up to ``MAX_CLASS_LOCATIONS`` voxels ``[z, y, x]`` per foreground class, on ``seg``'s grid.

    Every class of the (cropped) original label has a key, empty when resampling lost it.
    """
    rng = np.random.default_rng(seed)
    present = [c for c, box in enumerate(ndimage.find_objects(original), start=1) if box is not None]
    flat = np.flatnonzero(seg)
    classes_at = seg.ravel()[flat]
    locations = {}
    for c in present:
        idx = flat[classes_at == c]
        if idx.size > MAX_CLASS_LOCATIONS:
            idx = np.sort(rng.choice(idx, MAX_CLASS_LOCATIONS, replace=False))
        locations[str(int(c))] = np.stack(np.unravel_index(idx, seg.shape), axis=1).tolist()
    return locations


def _foreground_centroid(label: np.ndarray) -> np.ndarray | None:
    """Mean ``(z, y, x)`` index of all non-zero voxels of ``label`` (``None`` if there are none)."""
    fg = label != 0
    count = int(fg.sum())
    if count == 0:
        return None
    return np.asarray(
        [(np.arange(n) * fg.sum(axis=tuple(a for a in range(3) if a != axis))).sum() / count
         for axis, n in enumerate(label.shape)],
        dtype=np.float64,
    )
