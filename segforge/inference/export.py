"""From preprocessed-grid probabilities to files on the input's own grid.

Probabilities ``(K, z, y, x)`` are taken back through the preprocessing's inverse
(``restore_to_original``: undo resampling and cropping; outside the crop background is 1)
and only then turned into labels by argmax, so boundaries are placed at original
resolution. Labels are written with the input's geometry in the input's format.

``--save-probabilities`` writes, next to ``CASE.nii.gz``:

* ``CASE_probabilities.npy``: float16 ``(K, Z, Y, X)``, class ``k`` = label value ``k``,
  on the original grid (load with ``np.load(path, allow_pickle=False)``);
* ``CASE_probabilities.json``: the geometry, the label names and the axis order.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from segforge.io.atomic import save_npy_atomic, write_json_atomic
from segforge.io.geometry import Geometry
from segforge.io.image import write_image

__all__ = [
    "restore_probabilities",
    "restore_labels",
    "probabilities_to_labels",
    "write_prediction",
    "probability_files",
]


def restore_probabilities(probabilities: torch.Tensor | np.ndarray, properties: dict,
                          background_channel: bool = True) -> np.ndarray:
    """``(K, z, y, x)`` on the preprocessed grid -> float32 ``(K, Z, Y, X)`` on the original grid (outside the
    crop: background, or 0 everywhere for region-based outputs, ``background_channel=False``)."""
    from segforge.preprocessing import restore_to_original

    if isinstance(probabilities, torch.Tensor):
        probabilities = probabilities.detach().float().cpu().numpy()
    restored = restore_to_original(np.asarray(probabilities, dtype=np.float32), properties, is_label=False,
                                   background_channel=background_channel)
    return np.asarray(restored, dtype=np.float32)


def restore_labels(probabilities: torch.Tensor, properties: dict) -> np.ndarray:
    """``(K, z, y, x)`` probabilities on the preprocessed grid -> ``(Z, Y, X)`` uint8 (uint16 beyond 255
    classes) labels on the original grid, on the probabilities' device.

    The same labels as :func:`restore_probabilities` then :func:`probabilities_to_labels`, made one
    class at a time (resample its map to the crop, keep the running maximum and its class), so only
    two crop-sized maps and the labels are ever held, and only the labels leave the device.
    """
    from segforge.preprocessing import resample_probabilities

    target = tuple(int(s) for s in properties["original_geometry"]["shape"])
    crop_shape = tuple(int(s) for s in properties["shape_after_crop"])
    crop = tuple(slice(int(a), int(b)) for a, b in properties["crop_box"])
    k = probabilities.shape[0]
    dtype = torch.uint8 if k <= 256 else torch.int32
    best, labels = None, None
    for c in range(k):
        restored = resample_probabilities(probabilities[c : c + 1].float(), crop_shape)[0]
        if best is None:
            best, labels = restored, torch.zeros(crop_shape, dtype=dtype, device=restored.device)
            continue
        better = restored > best  # ties keep the lower class, as argmax does
        labels.masked_fill_(better, c)
        best = torch.maximum(best, restored)
    out = np.zeros(target, dtype=np.uint8 if k <= 256 else np.uint16)
    out[crop] = labels.cpu().numpy()  # outside the crop: background
    return out


def probabilities_to_labels(probabilities: np.ndarray | torch.Tensor) -> np.ndarray:
    """Argmax over classes ``(K, Z, Y, X)`` -> ``(Z, Y, X)`` uint8 (uint16 beyond 255 classes)."""
    if isinstance(probabilities, torch.Tensor):
        labels = probabilities.argmax(0).cpu().numpy()
    else:
        labels = np.argmax(probabilities, axis=0)
    return labels.astype(np.uint8 if probabilities.shape[0] <= 256 else np.uint16)


def probability_files(label_file: str | os.PathLike) -> tuple[Path, Path]:
    """``(CASE_probabilities.npy, CASE_probabilities.json)`` beside ``CASE<ending>``."""
    from segforge.io.image import split_ending

    p = Path(label_file)
    stem, _ = split_ending(p) if not p.name.endswith(".dcm") else (p.name[: -len(".dcm")], ".dcm")
    return p.with_name(f"{stem}_probabilities.npy"), p.with_name(f"{stem}_probabilities.json")


def write_prediction(
    labels: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike,
    probabilities: np.ndarray | None = None,
    label_names: dict[str, int] | None = None,
    source=None,
) -> None:
    """Write ``labels (Z, Y, X)`` on ``geometry`` to ``path``; probabilities beside it when given.

    A ``.dcm`` path is written as a DICOM Segmentation of ``source`` (the case's
    :class:`~segforge.inference.inputs.InputCase`, a DICOM series folder; docs/prediction.md).
    The probability files are written before the label file, so a label file on disk means
    the case is complete (what ``--continue`` looks for).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if probabilities is not None:
        npy, meta = probability_files(path)
        if probabilities.shape[1:] != tuple(geometry.shape):
            raise ValueError(f"probabilities {probabilities.shape} do not fit the grid {geometry.shape}")
        save_npy_atomic(npy, probabilities.astype(np.float16))
        info = {
            "axes": "(K, z, y, x): class k = label value k; float16; geometry as in segforge.io.Geometry",
            "labels": label_names or {},
            "geometry": geometry.to_dict(),
            "shape": list(probabilities.shape),
        }
        write_json_atomic(meta, info)
    if path.name.endswith(".dcm"):
        from segforge.inference.dicom_seg import write_dicom_seg
        from segforge.io.image import pick_dicom_series

        if source is None or not source.is_dicom:
            raise ValueError("a DICOM-SEG output needs the DICOM series it was predicted from")
        folder = source.sources[0]
        write_dicom_seg(labels, geometry, path, folder, pick_dicom_series(folder, source.series_uids),
                        label_names or {})
        return
    write_image(labels, geometry, path)


