"""Training augmentation (batchgenerators), every probability and range in one dataclass.

Batches are dicts ``{"data": (B, C, *spatial) float32, "seg": (B, 1, *spatial)}`` as made
by :class:`segforge.data.patch_sampler.PatchSampler`; the pipeline ends with contiguous arrays
(``data`` float32, ``target`` int16); the loader turns them into tensors. Spatial augmentation (rotation, scaling, elastic
deformation) works on a region larger than the patch (:func:`sample_region_size`) and
centre-crops the patch, so rotated corners hold image, not padding.

Anisotropic patches (largest edge > 3x the ``z`` edge, as nnU-Net decides): spatial
augmentation runs slice by slice in the ``(y, x)`` plane (slices folded into channels) and
low-resolution simulation leaves ``z`` alone.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    BrightnessMultiplicativeTransform,
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.noise_transforms import GaussianBlurTransform, GaussianNoiseTransform
from batchgenerators.transforms.resample_transforms import SimulateLowResolutionTransform
from batchgenerators.transforms.spatial_transforms import MirrorTransform, SpatialTransform

__all__ = [
    "AugmentationSettings",
    "is_anisotropic",
    "sample_region_size",
    "training_transforms",
    "validation_transforms",
    "FinalizeBatch",
]

ANISOTROPY_THRESHOLD = 3.0


@dataclass
class AugmentationSettings:
    """Probabilities (``p_*``, per sample unless said otherwise) and ranges of every augmentation.

    Angles are in degrees; ``rotation_3d`` applies to each of the three axes of isotropic 3D
    patches, ``rotation_2d`` to the in-plane angle of 2D and anisotropic patches.
    """

    p_rotation: float = 0.2
    rotation_3d: tuple[float, float] = (-30.0, 30.0)
    rotation_2d: tuple[float, float] = (-180.0, 180.0)
    p_scale: float = 0.2
    scale: tuple[float, float] = (0.7, 1.4)  # > 1 zooms out (a larger region fills the patch)
    p_elastic: float = 0.05
    elastic_alpha: tuple[float, float] = (0.0, 200.0)  # displacement magnitude (batchgenerators units)
    elastic_sigma: tuple[float, float] = (9.0, 13.0)  # smoothness of the displacement field, voxels
    p_noise: float = 0.1
    noise_variance: tuple[float, float] = (0.0, 0.1)
    p_blur: float = 0.2
    p_blur_per_channel: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    p_brightness: float = 0.15
    brightness: tuple[float, float] = (0.75, 1.25)  # multiplicative
    p_contrast: float = 0.15
    contrast: tuple[float, float] = (0.75, 1.25)
    p_low_resolution: float = 0.25
    p_low_resolution_per_channel: float = 0.5
    low_resolution_zoom: tuple[float, float] = (0.5, 1.0)
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.5)
    mirror: bool = True  # each axis flipped with probability 0.5
    mirror_axes: list[int] | None = None  # None = all spatial axes
    why: dict[str, str] = field(default_factory=lambda: {
        "defaults": "nnU-Net's published defaults, with elastic deformation kept rare (slow, small gain)",
    })

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def is_anisotropic(patch_size) -> bool:
    """3D patches whose largest edge is more than 3x the ``z`` edge get in-plane spatial augmentation."""
    return len(patch_size) == 3 and max(patch_size) / patch_size[0] > ANISOTROPY_THRESHOLD


def _rotation_ranges(patch_size, settings: AugmentationSettings) -> tuple[tuple, tuple, tuple]:
    """(angle_x, angle_y, angle_z) in radians; batchgenerators' angle_x turns the last two axes."""
    r2 = tuple(math.radians(a) for a in settings.rotation_2d)
    r3 = tuple(math.radians(a) for a in settings.rotation_3d)
    none = (0.0, 0.0)
    if len(patch_size) == 2 or is_anisotropic(patch_size):
        return r2, none, none
    return r3, r3, r3


def sample_region_size(patch_size, settings: AugmentationSettings) -> list[int]:
    """Edge lengths of the region to read so that any rotation and the largest zoom-out stay inside it.

    Rotation: the largest extent of the rotated patch box over the angle ranges (angles
    tried on a grid). Scaling: times ``scale[1]``. Never smaller than ``patch_size``.
    """
    patch = np.asarray(patch_size, dtype=float)
    spatial = patch[1:] if is_anisotropic(patch_size) else patch
    ax, ay, az = _rotation_ranges(patch_size, settings)
    corners = np.array(list(itertools.product(*[(-e / 2, e / 2) for e in spatial])))
    extent = spatial.copy()
    if settings.p_rotation > 0:
        grid = [np.linspace(lo, hi, 9) for lo, hi in (ax, ay, az)[: (1 if len(spatial) == 2 else 3)]]
        for angles in itertools.product(*grid):
            rotated = corners @ _rotation_matrix(angles, len(spatial)).T
            extent = np.maximum(extent, rotated.max(0) - rotated.min(0))
    if settings.p_scale > 0:
        extent = extent * max(1.0, settings.scale[1])
    region = np.ceil(extent).astype(int)
    if is_anisotropic(patch_size):
        region = np.concatenate([[int(patch[0])], region])
    return [int(max(r, p)) for r, p in zip(region, patch_size)]


def _rotation_matrix(angles, dims: int) -> np.ndarray:
    if dims == 2:
        (a,) = angles
        return np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        m = r @ m
    return m


class _FoldSlicesIntoChannels(AbstractTransform):
    """(B, C, Z, Y, X) -> (B, C*Z, Y, X) so 2D spatial augmentation treats every slice alike."""

    def __call__(self, **batch):
        for key in ("data", "seg"):
            a = batch[key]
            batch[f"{key}_shape"] = a.shape
            batch[key] = a.reshape(a.shape[0], a.shape[1] * a.shape[2], *a.shape[3:])
        return batch


class _UnfoldSlices(AbstractTransform):
    def __call__(self, **batch):
        for key in ("data", "seg"):
            b, c, z = batch.pop(f"{key}_shape")[:3]
            a = batch[key]
            batch[key] = a.reshape(b, c, z, *a.shape[2:])
        return batch


class FinalizeBatch(AbstractTransform):
    """``data`` -> contiguous float32, ``seg`` -> int16 under the key ``target`` (numpy, cheap to send).

    A ``seg`` with more than one channel holds labels then class probabilities (pseudo-labels):
    the probabilities go to ``soft`` (float16 ``(B, K, ...)``); where the spatial transform padded
    (all of them 0) they are background, like the labels there."""

    def __call__(self, **batch):
        batch["data"] = np.ascontiguousarray(batch["data"], dtype=np.float32)
        seg = batch.pop("seg")
        if seg.shape[1] > 1:
            soft = np.asarray(seg[:, 1:], dtype=np.float32)
            soft[:, 0] += soft.sum(1) <= 0
            batch["soft"] = np.ascontiguousarray(soft, dtype=np.float16)
            seg = seg[:, :1]
        batch["target"] = np.ascontiguousarray(np.rint(seg), dtype=np.int16)
        return batch


def training_transforms(patch_size, settings: AugmentationSettings | None = None) -> Compose:
    """The augmentation pipeline for batches sampled at :func:`sample_region_size`; output at ``patch_size``."""
    s = settings or AugmentationSettings()
    patch_size = [int(p) for p in patch_size]
    aniso = is_anisotropic(patch_size)
    spatial_patch = patch_size[1:] if aniso else patch_size
    ax, ay, az = _rotation_ranges(patch_size, s)
    transforms: list[AbstractTransform] = []
    if aniso:
        transforms.append(_FoldSlicesIntoChannels())
    transforms.append(SpatialTransform(
        spatial_patch, patch_center_dist_from_border=None, random_crop=False,
        do_elastic_deform=s.p_elastic > 0, alpha=s.elastic_alpha, sigma=s.elastic_sigma, p_el_per_sample=s.p_elastic,
        do_rotation=s.p_rotation > 0, angle_x=ax, angle_y=ay, angle_z=az, p_rot_per_sample=s.p_rotation,
        do_scale=s.p_scale > 0, scale=s.scale, p_scale_per_sample=s.p_scale,
        border_mode_data="constant", border_cval_data=0, order_data=3,
        border_mode_seg="constant", border_cval_seg=0, order_seg=0,
    ))
    if aniso:
        transforms.append(_UnfoldSlices())
    transforms += [
        GaussianNoiseTransform(s.noise_variance, p_per_sample=s.p_noise),
        GaussianBlurTransform(s.blur_sigma, different_sigma_per_channel=True, p_per_sample=s.p_blur,
                              p_per_channel=s.p_blur_per_channel),
        BrightnessMultiplicativeTransform(s.brightness, p_per_sample=s.p_brightness),
        ContrastAugmentationTransform(s.contrast, p_per_sample=s.p_contrast),
        SimulateLowResolutionTransform(zoom_range=s.low_resolution_zoom, per_channel=True,
                                       p_per_channel=s.p_low_resolution_per_channel, order_downsample=0,
                                       order_upsample=3, p_per_sample=s.p_low_resolution,
                                       ignore_axes=(0,) if aniso else None),
        GammaTransform(s.gamma, invert_image=True, per_channel=True, retain_stats=True,
                       p_per_sample=s.p_gamma_inverted),
        GammaTransform(s.gamma, invert_image=False, per_channel=True, retain_stats=True, p_per_sample=s.p_gamma),
    ]
    if s.mirror:
        axes = s.mirror_axes if s.mirror_axes is not None else list(range(len(patch_size)))
        transforms.append(MirrorTransform(tuple(axes)))
    transforms.append(FinalizeBatch())
    return Compose(transforms)


def validation_transforms() -> Compose:
    """No augmentation: batches are sampled at the patch size and only become tensors."""
    return Compose([FinalizeBatch()])
