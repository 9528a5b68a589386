"""Write a complete synthetic raw dataset (nnU-Net layout) for demos, tests and benchmarks.

::

    <raw_root>/DatasetNNN_Name/
        dataset.json             channel_names, labels, numTraining, file_ending
        synthetic_truth.json     what was generated, per case (voxel counts, centroids, spacing)
        imagesTr/case_000_0000.nii.gz   labelsTr/case_000.nii.gz
        imagesTs/case_010_0000.nii.gz   labelsTs/case_010.nii.gz   (held-out cases)

Everything is drawn from ``numpy.random.default_rng([seed, case_index])``, so the same
seed gives the same bytes, and adding test cases does not change the training cases.
The arrays hold the anatomy in a fixed orientation; the random direction (axis flips and
an in-plane rotation) and origin only change where the voxels lie in the world.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from segforge import paths
from segforge.errors import InputError
from segforge.io import Geometry, write_image
from segforge.io.atomic import write_json_atomic
from segforge.synthetic.appearance import render_ct, render_mr
from segforge.synthetic.phantoms import (
    ORGAN_LABELS,
    SMALL_TARGET_LABELS,
    PhantomGrid,
    organs_phantom,
    small_target_phantom,
)

__all__ = ["make_synthetic_dataset", "KINDS", "default_shape", "default_spacing", "label_truth"]

KINDS = ("organs", "small_target")
MODALITIES = ("CT", "MR")
_SHAPES = {  # (kind, size, anisotropic) -> (z, y, x)
    ("organs", "small", False): (40, 64, 64),
    ("organs", "realistic", False): (96, 192, 192),
    ("organs", "small", True): (16, 96, 96),
    ("organs", "realistic", True): (32, 320, 320),
    ("small_target", "small", False): (64, 128, 128),
    ("small_target", "realistic", False): (128, 256, 256),
    ("small_target", "small", True): (20, 128, 128),
    ("small_target", "realistic", True): (40, 320, 320),
}
_SPACING_VARIATION = 0.15  # each case's spacing is the nominal one times 1 +- this (z apart from y=x)


def default_shape(kind: str, size: str = "small", anisotropic: bool = False) -> tuple[int, int, int]:
    return _SHAPES[(kind, size, bool(anisotropic))]


def default_spacing(kind: str, anisotropic: bool = False) -> tuple[float, float, float]:
    """Nominal spacing ``(z, y, x)`` mm: 5 x 0.7 x 0.7 when anisotropic."""
    if anisotropic:
        return (5.0, 0.7, 0.7)
    return (2.0, 1.5, 1.5) if kind == "organs" else (1.5, 1.5, 1.5)


def make_synthetic_dataset(
    dataset_id: int,
    name: str,
    kind: str = "organs",
    num_train: int = 10,
    num_test: int = 2,
    shape: tuple[int, int, int] | None = None,
    modality: str = "CT",
    num_channels: int = 1,
    anisotropic: bool = False,
    seed: int = 0,
    raw_root: str | os.PathLike | None = None,
    size: str = "small",
) -> Path:
    """Generate ``DatasetNNN_Name`` under ``raw_root`` (default ``SEGFORGE_RAW``) and return its folder.

    ``kind``: ``"organs"`` (4 labels: liver, gallbladder touching it, kidneys as two
    components, a lesion nested in the liver) or ``"small_target"`` (one 1-2 cm target
    among look-alikes in a large volume). ``shape``: ``(z, y, x)`` voxels per case (default
    from ``size``: ``"small"`` generates in seconds, ``"realistic"`` is larger). An existing
    synthetic dataset of the same name is replaced; any other existing folder is refused.
    """
    if kind not in KINDS:
        raise InputError(f"unknown synthetic kind {kind!r}; choose one of {', '.join(KINDS)}")
    if modality not in MODALITIES:
        raise InputError(f"unknown modality {modality!r}; choose CT or MR")
    if size not in ("small", "realistic"):
        raise InputError(f"unknown size {size!r}; choose small or realistic")
    if num_train < 1 or num_test < 0 or num_channels < 1:
        raise InputError("need num_train >= 1, num_test >= 0 and num_channels >= 1")
    shape = tuple(int(s) for s in (shape or default_shape(kind, size, anisotropic)))
    if len(shape) != 3 or min(shape) < 8:
        raise InputError(f"shape must be three sizes (z, y, x) of at least 8 voxels, got {shape}")

    folder = Path(raw_root or paths.raw_root()) / paths.dataset_folder_name(dataset_id, name)
    if folder.exists() and not (folder / "synthetic_truth.json").is_file():
        raise InputError("folder exists and is not a synthetic dataset; not replacing it (pick another id or name)",
                         folder)
    tmp = folder.parent / f".tmp-{uuid.uuid4().hex[:8]}-{folder.name}"
    nominal = default_spacing(kind, anisotropic)
    half_fov = tuple(n * s / 2.0 for n, s in zip(shape, nominal))
    label_table = ORGAN_LABELS if kind == "organs" else SMALL_TARGET_LABELS
    truth_cases = {}
    try:
        for index in range(num_train + num_test):
            case = f"case_{index:03d}"
            split = ("Tr", "train") if index < num_train else ("Ts", "test")
            rng = np.random.default_rng([seed, index])
            images, labels, geometry, extra = _make_case(kind, modality, num_channels, shape, nominal, half_fov,
                                                         label_table, rng)
            for c, image in enumerate(images):
                write_image(image, geometry, tmp / f"images{split[0]}" / f"{case}_{c:04d}.nii.gz")
            write_image(labels, geometry, tmp / f"labels{split[0]}" / f"{case}.nii.gz")
            truth_cases[case] = {"split": split[1], **geometry.to_dict(),
                                 "labels": label_truth(labels, geometry, [v for v, _ in label_table.values()]),
                                 **extra}
        dataset_json = {
            "name": name,
            "description": f"synthetic {kind} ({modality}), made by segforge_synthetic with seed {seed}",
            "channel_names": {str(c): _channel_name(modality, c) for c in range(num_channels)},
            "labels": {"background": 0, **{k: v for k, (v, _) in label_table.items()}},
            "numTraining": num_train,
            "file_ending": ".nii.gz",
        }
        truth = {"kind": kind, "modality": modality, "seed": seed, "num_channels": num_channels,
                 "anisotropic": bool(anisotropic), "nominal_spacing": list(nominal), "shape": list(shape),
                 "cases": truth_cases}
        write_json_atomic(tmp / "dataset.json", dataset_json)
        write_json_atomic(tmp / "synthetic_truth.json", truth)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


def _make_case(kind, modality, num_channels, shape, nominal, half_fov, label_table, rng):
    spacing = _draw_spacing(nominal, rng)
    grid = PhantomGrid(shape, spacing)
    if kind == "organs":
        tissue, extra = organs_phantom(grid, half_fov, rng), {}
    else:
        tissue, extra = small_target_phantom(grid, half_fov, rng)
    labels = np.zeros(shape, dtype=np.uint8)
    for value, tissue_code in label_table.values():
        labels[tissue == tissue_code] = value
    render = render_ct if modality == "CT" else render_mr
    images = [render(tissue, grid, c, rng) for c in range(num_channels)]
    return images, labels, _draw_geometry(shape, spacing, rng), extra


def _draw_spacing(nominal, rng) -> tuple[float, float, float]:
    """Nominal spacing times ``1 +- 15 %``, once for z and once shared by y and x (rounded to 0.001 mm)."""
    fz, fyx = rng.uniform(1 - _SPACING_VARIATION, 1 + _SPACING_VARIATION, size=2)
    return tuple(round(float(s * f), 3) for s, f in zip(nominal, (fz, fyx, fyx)))


def _draw_geometry(shape, spacing, rng) -> Geometry:
    """Random axis flips, an in-plane rotation of up to 15 degrees (half the cases) and a random origin."""
    flips = np.diag(rng.choice([-1.0, 1.0], size=3))
    angle = np.deg2rad(rng.uniform(-15, 15)) if rng.random() < 0.5 else 0.0
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    direction = rotation @ flips
    origin = tuple(round(float(o), 2) for o in rng.uniform(-250.0, 250.0, size=3))
    return Geometry(spacing, origin, tuple(direction.ravel()), shape)


def label_truth(labels: np.ndarray, geometry: Geometry, values: list[int]) -> dict:
    """Per label value and for the union: voxel count, centroid ``(z, y, x)`` voxel and ``(x, y, z)`` world."""
    out = {}
    for key, mask in [(str(v), labels == v) for v in values] + [("union", labels > 0)]:
        idx = np.argwhere(mask)
        if len(idx) == 0:
            out[key] = {"voxels": 0, "centroid_voxel": None, "centroid_world": None}
            continue
        centroid = idx.mean(axis=0)
        out[key] = {"voxels": int(len(idx)), "centroid_voxel": [float(v) for v in centroid],
                    "centroid_world": [float(v) for v in geometry.index_to_world(centroid)]}
    return out


def _channel_name(modality: str, channel: int) -> str:
    if modality == "CT":
        return "CT"  # every channel holds HU (phases of one scan)
    return ("T1", "T2")[channel] if channel < 2 else f"MR{channel}"


