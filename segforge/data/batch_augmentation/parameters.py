"""Drawing a batch's augmentation: every random choice, per sample, before anything is transformed.

:func:`draw_parameters` makes :class:`AugmentationParameters` (plain numpy arrays, one row per
sample) from a numpy random source; :class:`~segforge.data.batch_augmentation.BatchAugmentation`
then applies them deterministically on the batch's device. What was drawn stays with the
batch, so a batch can be replayed and shown. The probabilities and ranges are the fields of
:class:`~segforge.data.augmentation.AugmentationSettings`, drawn as batchgenerators draws them
(the CPU pipeline of :mod:`segforge.data.augmentation`).

Geometry. Output voxel ``x`` of a patch of size ``P`` has the centred coordinate
``x~ = x - (P - 1) / 2``; it is read from the source at

    patch centre + M @ (F @ x~ + d(x~))

with ``F`` the mirroring (``diag(+-1)``), ``d`` the elastic displacement and
``M = scale * R^T`` (batchgenerators' rotation matrices ``R = R_0 R_1 R_2``, axis ``k`` turning
the two others: a rotation by +90 degrees about axis 0 is ``np.rot90(axes=(1, 2))``, about
axis 1 ``np.rot90(axes=(2, 0))``, about axis 2 ``np.rot90(axes=(0, 1))``). 2D patches and
anisotropic 3D patches (``is_anisotropic``) are rotated, scaled and deformed in the last two
axes only. :func:`source_box` gives the voxels a sample reads: nothing more than the
transformed patch (plus the largest elastic displacement), the patch itself when the sample is
not rotated, scaled or deformed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from segforge.data.augmentation import AugmentationSettings, is_anisotropic

__all__ = ["AugmentationParameters", "draw_parameters", "spatial_axes", "affine_matrix", "source_box",
           "elastic_amplitude"]


@dataclass
class AugmentationParameters:
    """What was drawn for a batch of ``B`` samples with ``C`` channels; ``D`` spatial axes.

    Rows whose transform was not drawn hold the identity value (angle 0, scale 1, no flip,
    noise 0, sigma 0, factor 1, zoom 1) and a False mask.
    """

    angles: np.ndarray  # (B, 3) radians about axes 0, 1, 2 (3D); (B, 1) in-plane (2D, anisotropic)
    scale: np.ndarray  # (B,)
    elastic: list  # per sample None or (S, *nodes) float32 displacement (voxels) at coarse nodes
    mirror: np.ndarray  # (B, D) bool
    noise_std: np.ndarray  # (B,) standard deviation of the added Gaussian noise (0: none)
    noise_seed: np.ndarray  # (B,) int64 seed of the sample's noise
    blur_sigma: np.ndarray  # (B, C) Gaussian blur sigma in voxels (0: none)
    brightness: np.ndarray  # (B, C) multiplier (1: none)
    contrast: np.ndarray  # (B, C) factor
    contrast_mask: np.ndarray  # (B,) bool
    low_res_zoom: np.ndarray  # (B, C) zoom of the low-resolution simulation (1: none)
    gamma_inverted: np.ndarray  # (B, C) gamma applied to the inverted image
    gamma_inverted_mask: np.ndarray  # (B,) bool
    gamma: np.ndarray  # (B, C)
    gamma_mask: np.ndarray  # (B,) bool

    @property
    def batch_size(self) -> int:
        return len(self.scale)

    @property
    def spatial(self) -> np.ndarray:
        """(B,) bool: rotated, scaled or deformed (else the sample is a plain, maybe mirrored, crop)."""
        return (np.any(self.angles != 0, axis=1) | (self.scale != 1)
                | np.array([e is not None for e in self.elastic], dtype=bool))

    @classmethod
    def identity(cls, batch_size: int, channels: int, dims: int, angle_axes: int | None = None):
        """Parameters that change nothing (a plain centre crop); tests and replays start here."""
        b, c = int(batch_size), int(channels)
        return cls(angles=np.zeros((b, angle_axes or (3 if dims == 3 else 1))), scale=np.ones(b),
                   elastic=[None] * b, mirror=np.zeros((b, dims), bool), noise_std=np.zeros(b),
                   noise_seed=np.zeros(b, np.int64), blur_sigma=np.zeros((b, c)), brightness=np.ones((b, c)),
                   contrast=np.ones((b, c)), contrast_mask=np.zeros(b, bool), low_res_zoom=np.ones((b, c)),
                   gamma_inverted=np.ones((b, c)), gamma_inverted_mask=np.zeros(b, bool), gamma=np.ones((b, c)),
                   gamma_mask=np.zeros(b, bool))

    def sample(self, index: int) -> dict:
        """One sample's drawn values as plain Python (for logs and pictures)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)[index]
            out[f.name] = None if value is None else np.asarray(value).tolist()
        return out


def spatial_axes(patch_size) -> tuple[int, ...]:
    """The axes rotation, scaling and elastic deformation act on: all of them, or the last two
    for 2D and anisotropic patches."""
    dims = len(patch_size)
    return (1, 2) if dims == 3 and is_anisotropic(patch_size) else tuple(range(dims))


def _rotation_ranges(patch_size, settings: AugmentationSettings) -> list[tuple[float, float]]:
    if len(spatial_axes(patch_size)) == 2:
        return [tuple(math.radians(a) for a in settings.rotation_2d)]
    r3 = tuple(math.radians(a) for a in settings.rotation_3d)
    return [r3, r3, r3]


def _two_sided(rng, bounds) -> float:
    """batchgenerators' draw for scale, contrast and gamma: below 1 or above 1 with equal odds."""
    lo, hi = bounds
    if rng.random_sample() < 0.5 and lo < 1:
        return float(rng.uniform(lo, 1))
    return float(rng.uniform(max(lo, 1), hi))


def elastic_amplitude(alpha: float, sigma: float, axes: int) -> float:
    """Half-range of the uniform values at the coarse nodes of the displacement field.

    batchgenerators filters uniform(-1, 1) noise with a Gaussian of ``sigma`` and multiplies by
    ``alpha``: a standard deviation of ``alpha / sqrt(3) * (2 sqrt(pi) sigma) ** (-axes / 2)``.
    Linear interpolation between nodes spaced ``sigma`` apart keeps, on average, ``(2/3) ** axes``
    of the nodes' variance; the amplitude makes the two standard deviations equal.
    """
    target_std = alpha / math.sqrt(3.0) * (2.0 * math.sqrt(math.pi) * sigma) ** (-axes / 2.0)
    return target_std * math.sqrt(3.0) / (2.0 / 3.0) ** (axes / 2.0)


def _elastic_nodes(patch_size, axes, sigma: float) -> list[int]:
    return [int(math.ceil((patch_size[a] - 1) / sigma)) + 1 for a in axes]


def draw_parameters(rng, batch_size: int, channels: int, patch_size,
                    settings: AugmentationSettings | None = None) -> AugmentationParameters:
    """Draw every augmentation of ``batch_size`` samples from ``rng`` (numpy ``RandomState`` API:
    the ``np.random`` module, seeded per loader worker, or a ``RandomState``)."""
    s = settings or AugmentationSettings()
    dims = len(patch_size)
    axes = spatial_axes(patch_size)
    ranges = _rotation_ranges(patch_size, s)
    p = AugmentationParameters.identity(batch_size, channels, dims, angle_axes=len(ranges))
    mirror_axes = list(range(dims)) if s.mirror_axes is None else [int(a) for a in s.mirror_axes]
    for b in range(batch_size):
        if rng.uniform() < s.p_rotation:
            p.angles[b] = [rng.uniform(lo, hi) for lo, hi in ranges]
        if rng.uniform() < s.p_scale:
            p.scale[b] = _two_sided(rng, s.scale)
        if rng.uniform() < s.p_elastic:
            alpha, sigma = rng.uniform(*s.elastic_alpha), rng.uniform(*s.elastic_sigma)
            amplitude = elastic_amplitude(alpha, sigma, len(axes))
            nodes = _elastic_nodes(patch_size, axes, sigma)
            p.elastic[b] = (rng.uniform(-1.0, 1.0, size=(len(axes), *nodes)) * amplitude).astype(np.float32)
        if s.mirror:
            for a in mirror_axes:
                p.mirror[b, a] = rng.uniform() < 0.5
        if rng.uniform() < s.p_noise:
            p.noise_std[b] = rng.uniform(*s.noise_variance)  # batchgenerators' "variance" is the std
        p.noise_seed[b] = rng.randint(0, 2**31 - 1)
        if rng.uniform() < s.p_blur:
            for c in range(channels):
                if rng.uniform() < s.p_blur_per_channel:
                    p.blur_sigma[b, c] = rng.uniform(*s.blur_sigma)
        if rng.uniform() < s.p_brightness:
            p.brightness[b] = [rng.uniform(*s.brightness) for _ in range(channels)]
        if rng.uniform() < s.p_contrast:
            p.contrast_mask[b] = True
            p.contrast[b] = [_two_sided(rng, s.contrast) for _ in range(channels)]
        if rng.uniform() < s.p_low_resolution:
            for c in range(channels):
                if rng.uniform() < s.p_low_resolution_per_channel:
                    p.low_res_zoom[b, c] = rng.uniform(*s.low_resolution_zoom)
        if rng.uniform() < s.p_gamma_inverted:
            p.gamma_inverted_mask[b] = True
            p.gamma_inverted[b] = [_two_sided(rng, s.gamma) for _ in range(channels)]
        if rng.uniform() < s.p_gamma:
            p.gamma_mask[b] = True
            p.gamma[b] = [_two_sided(rng, s.gamma) for _ in range(channels)]
    return p


def _rotation(angle: float, i: int, j: int, dims: int) -> np.ndarray:
    """batchgenerators' rotation turning axis ``i`` towards ``j`` (``[[c, -s], [s, c]]`` on ``(i, j)``)."""
    r = np.eye(dims)
    c, s = math.cos(angle), math.sin(angle)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine_matrix(params: AugmentationParameters, index: int, patch_size) -> np.ndarray:
    """``M = scale * R^T`` of sample ``index`` as a ``(D, D)`` matrix over all patch axes."""
    dims = len(patch_size)
    axes = spatial_axes(patch_size)
    angles = params.angles[index]
    if len(axes) == 3:
        # batchgenerators: R = R_x R_y R_z with R_x on (1, 2), R_y = [[c, 0, s], ...] on (2, 0), R_z on (0, 1)
        r = _rotation(angles[0], 1, 2, 3) @ _rotation(angles[1], 2, 0, 3) @ _rotation(angles[2], 0, 1, 3)
    else:
        r = np.eye(dims)
        r[np.ix_(axes, axes)] = _rotation(angles[0], 0, 1, 2)
    m = r.T.copy()
    for a in axes:
        m[a] *= params.scale[index]
    return m


def source_box(params: AugmentationParameters, index: int, patch_size) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, size)`` of the voxels sample ``index`` reads, relative to the patch's lower corner.

    The transformed patch box (its corners are extreme, the map being linear) widened by the
    largest elastic displacement; exactly the patch for a sample that is only mirrored.
    """
    patch = np.asarray(patch_size, dtype=np.float64)
    half = (patch - 1) / 2
    if not params.spatial[index]:
        return np.zeros(len(patch), np.int64), patch.astype(np.int64)
    m = np.abs(affine_matrix(params, index, patch_size))
    reach = half.copy()
    field = params.elastic[index]
    if field is not None:
        for k, a in enumerate(spatial_axes(patch_size)):
            reach[a] += float(np.abs(field[k]).max())
    extent = m @ reach
    tolerance = 1e-6  # a rotation by a right angle must not grow the box by rounding
    lower = np.floor(half - extent + tolerance).astype(np.int64)
    upper = np.ceil(half + extent - tolerance).astype(np.int64)
    return lower, upper - lower + 1
