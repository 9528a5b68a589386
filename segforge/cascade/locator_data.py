"""Whole-image batches for the locator.

Every case of the ``locator`` configuration is the whole image at the locator spacing.
It is placed on a canvas filled with its background value (its minimum) whose edges are multiples of 16 and divisible by the
network's total stride (:func:`locator_canvas`); in training at a random position,
otherwise centred; the random placement may push part of the image off the canvas (the
target stays on it). Augmentation is light (the locator must see the anatomy as it is):
a small isotropic scale and intensity jitter, and a left/right mirror only when the
anatomy is symmetric (``LocatorSettings.symmetric``). Parameters are drawn first
(:func:`draw_augmentation`) and applied by a deterministic function
(:func:`apply_augmentation`) that moves the centroids with the image.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segforge.cascade.grids import world_to_preprocessed
from segforge.cascade.heatmaps import label_centroids
from segforge.errors import InputError
from segforge.planning.plans import Configuration

__all__ = [
    "CANVAS_MULTIPLE",
    "canvas_divisor",
    "locator_canvas",
    "background_values",
    "place_on_canvas",
    "centred_offset",
    "LocatorCase",
    "heatmap_channels",
    "load_locator_cases",
    "LocatorAugmentation",
    "draw_augmentation",
    "apply_augmentation",
    "LocatorBatches",
]

CANVAS_MULTIPLE = 16
SHIFT_FRACTION = 0.25  # training placement: up to this share of the canvas beyond its slack
CENTROID_MARGIN = 2.0  # voxels a training centroid stays inside the canvas


def canvas_divisor(configuration: Configuration) -> np.ndarray:
    """Per-axis multiple ``(3,)`` a canvas edge must have: lcm(16, product of strides)."""
    strides = np.prod(np.asarray(configuration.network.strides, dtype=np.int64), axis=0)
    return np.array([math.lcm(CANVAS_MULTIPLE, int(s)) for s in strides], dtype=np.int64)


def locator_canvas(configuration: Configuration, shapes) -> tuple[int, int, int]:
    """The smallest canvas ``(z, y, x)`` holding the planned patch and every shape in ``shapes``."""
    need = np.maximum(np.asarray(configuration.patch_size, dtype=np.int64), np.max(np.asarray(shapes), axis=0))
    div = canvas_divisor(configuration)
    return tuple(int(v) for v in -(-need // div) * div)


def centred_offset(shape, canvas) -> np.ndarray:
    return (np.asarray(canvas) - np.asarray(shape)) // 2


def background_values(data: np.ndarray) -> np.ndarray:
    """Per-channel minimum ``(C,)`` of ``data (C, z, y, x)``: the value of "nothing there".

    After normalisation 0 is the foreground's mean intensity (CT z-score on the labels'
    intensities), so a zero canvas would frame the image with target-bright padding.
    """
    return np.asarray(data).reshape(data.shape[0], -1).min(axis=1).astype(np.float32)


def place_on_canvas(data: np.ndarray, canvas, offset) -> np.ndarray:
    """``(C, *canvas)`` float32 filled with the image's background, ``data (C, z, y, x)`` at ``offset``.

    ``offset`` may be negative or push the image past the canvas: what falls outside is cut.
    """
    data = np.asarray(data)
    out = np.empty((data.shape[0], *canvas), dtype=np.float32)
    out[:] = background_values(data)[:, None, None, None]
    o = np.asarray(offset, dtype=np.int64)
    n = np.asarray(data.shape[1:], dtype=np.int64)
    lo, hi = np.maximum(o, 0), np.minimum(o + n, np.asarray(canvas, dtype=np.int64))
    if np.any(hi <= lo):
        return out
    dst = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    src = tuple(slice(int(a - v), int(b - v)) for a, b, v in zip(lo, hi, o))
    out[(slice(None), *dst)] = data[(slice(None), *src)]
    return out


@dataclass
class LocatorCase:
    """One preprocessed locator case: ``data (C, z, y, x)`` (memory-mapped) and its centroids."""

    name: str
    data: np.ndarray
    centroids: list  # per heatmap channel: (3,) voxel position on this grid, or None
    properties: dict


def heatmap_channels(labels: dict[str, int]) -> list[int]:
    """Foreground label values of ``labels`` (name -> value), in order: one heatmap for all of them
    (``target="union"``) or one each (``"per_class"``)."""
    return sorted(v for v in labels.values() if v != 0)


def load_locator_cases(folder: str | Path, names, classes, target: str = "union") -> list[LocatorCase]:
    """Read cases ``names`` from a preprocessed folder.

    Union centroids come from the properties' ``centroid_world`` (measured on the original
    grid) mapped onto this grid; per-class centroids from ``CASE_seg.npy``.
    """
    folder = Path(folder)
    cases = []
    for name in names:
        json_path = folder / f"{name}.json"
        if not json_path.is_file():
            raise InputError(f"preprocessed case {name!r} is missing; run segforge_plan_and_preprocess", json_path)
        properties = json.loads(json_path.read_text())
        data = np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        if target == "union" and properties.get("centroid_world") is not None:
            # the centroid measured at full resolution, exact; the resampled label's is close
            centroids = [world_to_preprocessed(properties["centroid_world"], properties)]
        else:
            seg = np.load(folder / f"{name}_seg.npy", allow_pickle=False)
            centroids = label_centroids(seg, classes, target)
        cases.append(LocatorCase(name, data, centroids, properties))
    return cases


@dataclass(frozen=True)
class LocatorAugmentation:
    """Drawn parameters of one sample's augmentation (kept so plots can show them)."""

    offset: tuple[int, int, int]  # where the image's voxel (0, 0, 0) lands on the canvas
    scale: float  # isotropic zoom about the canvas centre
    intensity_scale: float
    intensity_shift: float
    mirror_x: bool


def draw_augmentation(rng: np.random.Generator, shape, canvas, symmetric: bool, centroids=(),
                      scale_range: float = 0.1, intensity_range: float = 0.1,
                      shift_fraction: float = SHIFT_FRACTION) -> LocatorAugmentation:
    """Random parameters; the placement moves the image by up to ``shift_fraction`` of the
    canvas beyond the canvas' slack, keeping every known centroid ``CENTROID_MARGIN`` voxels
    inside (the network must learn what the target looks like, not where the training
    targets happened to lie)."""
    shape, canvas = np.asarray(shape, dtype=np.int64), np.asarray(canvas, dtype=np.int64)
    reach = np.floor(shift_fraction * canvas).astype(np.int64)
    lo, hi = -reach, canvas - shape + reach
    margin = CENTROID_MARGIN + scale_range * canvas / 2  # the zoom about the centre may move it this far
    for c in centroids:
        if c is not None:  # canvas position c + offset within [margin, canvas - 1 - margin]
            c = np.asarray(c, dtype=np.float64)
            lo = np.maximum(lo, np.ceil(margin - c).astype(np.int64))
            hi = np.minimum(hi, np.floor(canvas - 1 - margin - c).astype(np.int64))
    hi = np.maximum(hi, lo)
    offset = tuple(int(rng.integers(a, b + 1)) for a, b in zip(lo, hi))
    return LocatorAugmentation(
        offset=offset,
        scale=float(rng.uniform(1 - scale_range, 1 + scale_range)),
        intensity_scale=float(rng.uniform(1 - intensity_range, 1 + intensity_range)),
        intensity_shift=float(rng.uniform(-intensity_range, intensity_range)),
        mirror_x=bool(symmetric and rng.random() < 0.5),
    )


def apply_augmentation(data: np.ndarray, centroids, canvas, aug: LocatorAugmentation):
    """``data (C, z, y, x)`` -> ``((C, *canvas) float32, centroids on the canvas)``.

    Order: intensity, placement at ``aug.offset``, mirror of the x axis, zoom about the
    canvas centre (trilinear). A centroid that the zoom pushes off the canvas becomes None.
    """
    image = np.asarray(data, dtype=np.float32) * aug.intensity_scale + aug.intensity_shift
    out = place_on_canvas(image, canvas, aug.offset)
    canvas_arr = np.asarray(canvas, dtype=np.float64)
    moved = [None if c is None else np.asarray(c, dtype=np.float64) + np.asarray(aug.offset) for c in centroids]
    if aug.mirror_x:
        out = out[..., ::-1].copy()
        moved = [None if c is None else np.array([c[0], c[1], canvas_arr[2] - 1 - c[2]]) for c in moved]
    if aug.scale != 1.0:
        fill = background_values(image)[:, None, None, None]
        out = _zoom_about_centre(out - fill, aug.scale) + fill
        centre = (canvas_arr - 1) / 2
        moved = [None if c is None else centre + aug.scale * (c - centre) for c in moved]
    moved = [None if c is None or np.any(c < 0) or np.any(c > canvas_arr - 1) else c for c in moved]
    return out, moved


def _zoom_about_centre(volume: np.ndarray, scale: float) -> np.ndarray:
    """Output voxel ``p`` takes input ``c + (p - c) / scale`` (``c`` the centre), zeros outside."""
    x = torch.from_numpy(np.ascontiguousarray(volume))[None]
    theta = torch.zeros(1, 3, 4, dtype=torch.float32)
    theta[0, 0, 0] = theta[0, 1, 1] = theta[0, 2, 2] = 1.0 / scale
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0].numpy()


class LocatorBatches:
    """Endless random training batches (batchgenerators' data-loader protocol, like the patch trainers').

    Each item is ``{"data": (B, C, *canvas) float32, "target": (B, K, 3) float32 centroids on the
    canvas (NaN where a structure is absent or was pushed off the canvas)}``;
    the heatmaps are made from the centroids where the network runs, at the curriculum's
    current sigma. Draws come from ``rng`` (a seeded :class:`numpy.random.Generator`, whose
    state a checkpoint keeps); in a background worker the generator is re-seeded from the
    worker's own seed (:meth:`set_thread_id`), so workers draw different batches.
    """

    def __init__(self, cases: list[LocatorCase], canvas, batch_size: int, symmetric: bool, seed: int = 0):
        if not cases:
            raise InputError("the locator has no training cases in this fold")
        self.cases, self.canvas, self.batch_size, self.symmetric = cases, tuple(canvas), int(batch_size), symmetric
        self.n_heatmaps = len(cases[0].centroids)
        self.rng = np.random.default_rng(seed)

    def set_thread_id(self, thread_id: int) -> None:
        """Called in a worker after ``np.random.seed(worker seed)``: a stream of the worker's own."""
        self.rng = np.random.default_rng([int(np.random.randint(0, 2**31 - 1)), int(thread_id)])

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        images, centroids, _ = self.next()
        target = np.full((len(centroids), self.n_heatmaps, 3), np.nan, dtype=np.float32)
        for b, sample in enumerate(centroids):
            for k, c in enumerate(sample):
                if c is not None:
                    target[b, k] = c
        return {"data": images, "target": target}

    def next(self) -> tuple[np.ndarray, list, list[LocatorAugmentation]]:
        """``(images (B, C, *canvas), centroids [B][K] (3,) or None, the drawn augmentations)``."""
        picks = self.rng.integers(0, len(self.cases), self.batch_size)
        images, centroids, augs = [], [], []
        for i in picks:
            case = self.cases[int(i)]
            aug = draw_augmentation(self.rng, case.data.shape[1:], self.canvas, self.symmetric, case.centroids)
            image, moved = apply_augmentation(case.data, case.centroids, self.canvas, aug)
            images.append(image)
            centroids.append(moved)
            augs.append(aug)
        return np.stack(images), centroids, augs
