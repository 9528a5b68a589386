"""Synthetic anatomy as a tissue map: which tissue each voxel holds.

Anatomy is laid out in millimetres around the volume centre, so a case with a finer
spacing shows the same anatomy over more voxels (and a smaller field of view), as in real
scans. Shapes are ellipsoids and tubes whose surface is pushed in and out by a smooth
random field, so no two cases look alike. Appearance (HU, MR signal) is added later by
:mod:`segforge.synthetic.appearance` from the tissue codes defined here.

All maps are ``(Z, Y, X)`` ``uint8`` tissue codes; ``grid.axes_mm`` gives the centred
mm coordinate of each voxel centre along ``z``, ``y`` and ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage

__all__ = [
    "Tissue",
    "PhantomGrid",
    "smooth_field",
    "organs_phantom",
    "small_target_phantom",
    "ORGAN_LABELS",
    "SMALL_TARGET_LABELS",
]


class Tissue(IntEnum):
    PADDING = 0  # outside the scanned region: stored as exactly 0
    AIR = 1
    SOFT = 2
    FAT = 3
    BONE = 4
    LIVER = 5
    GALLBLADDER = 6
    KIDNEY = 7
    LESION = 8
    TARGET = 9
    VESSEL = 10
    NODE = 11


# label name -> (label value, tissue that carries it)
ORGAN_LABELS = {"liver": (1, Tissue.LIVER), "gallbladder": (2, Tissue.GALLBLADDER),
                "kidney": (3, Tissue.KIDNEY), "lesion": (4, Tissue.LESION)}
SMALL_TARGET_LABELS = {"target": (1, Tissue.TARGET)}


@dataclass(frozen=True)
class PhantomGrid:
    """Voxel centres in mm, centred on the volume: ``axes_mm[a][i] = (i + 0.5 - n_a / 2) * spacing[a]``."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def axes_mm(self) -> list[np.ndarray]:
        return [((np.arange(n) + 0.5 - n / 2.0) * s).astype(np.float32) for n, s in zip(self.shape, self.spacing)]

    def index_range(self, axis: int, lo_mm: float, hi_mm: float) -> slice:
        """Voxels of ``axis`` whose centres may lie in ``[lo_mm, hi_mm]`` (clipped to the grid)."""
        n, s = self.shape[axis], self.spacing[axis]
        start = int(np.floor(lo_mm / s + n / 2.0 - 0.5))
        stop = int(np.ceil(hi_mm / s + n / 2.0 - 0.5)) + 1
        return slice(max(start, 0), max(min(stop, n), 0))


def smooth_field(rng: np.random.Generator, axes_mm: list[np.ndarray], correlation_mm: float) -> np.ndarray:
    """A smooth random field with unit variance at every voxel, ``(len(z), len(y), len(x))`` float32.

    A sum of Gaussian bumps with standard-normal weights on a lattice ``correlation_mm``
    apart; separable, so it costs a few tensor contractions.
    """
    weights = []
    for coords in axes_mm:
        lo, hi = (float(coords.min()), float(coords.max())) if coords.size else (0.0, 0.0)
        centres = np.arange(lo - correlation_mm, hi + 2 * correlation_mm, correlation_mm)
        w = np.exp(-0.5 * ((coords[:, None] - centres[None, :]) / correlation_mm) ** 2)
        weights.append((w / np.sqrt((w**2).sum(axis=1, keepdims=True))).astype(np.float32))
    field = rng.standard_normal(tuple(w.shape[1] for w in weights), dtype=np.float32)
    field = np.tensordot(weights[0], field, axes=(1, 0))
    field = np.tensordot(field, weights[1], axes=(1, 1)).transpose(0, 2, 1)
    field = np.tensordot(field, weights[2], axes=(2, 1))
    return np.ascontiguousarray(field)


def _paint_ellipsoid(tissue, grid, code, centre, radii, rng, roughness=0.12, angle=0.0, where=None):
    """Paint a rough ellipsoid (centre/radii in mm, ``(z, y, x)``; rotated by ``angle`` in the y-x plane).

    ``where`` (full-size bool map) restricts painting. Returns the painted mask (full size).
    """
    reach = max(radii) * (1.0 + 4 * roughness)
    box = tuple(grid.index_range(a, centre[a] - reach, centre[a] + reach) for a in range(3))
    axes = [ax[b] - np.float32(c) for ax, b, c in zip(grid.axes_mm, box, centre)]
    z, y, x = axes[0][:, None, None] / np.float32(radii[0]), axes[1][None, :, None], axes[2][None, None, :]
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    yr, xr = (cos * y + sin * x) / np.float32(radii[1]), (-sin * y + cos * x) / np.float32(radii[2])
    dist = np.sqrt(z * z + yr * yr + xr * xr)
    bump = smooth_field(rng, axes, correlation_mm=0.6 * float(np.mean(radii)))
    inside = dist < 1.0 + roughness * bump
    if where is not None:
        inside &= where[box]
    mask = np.zeros(tissue.shape, dtype=bool)
    mask[box] = inside
    tissue[mask] = code
    return mask


def _paint_tube(tissue, grid, code, centre_yx, radius, rng, wander_mm, where=None):
    """Paint a tube running along z whose centre line wanders smoothly in y and x."""
    z = grid.axes_mm[0]
    period = rng.uniform(60.0, 140.0)
    phase = rng.uniform(0, 2 * np.pi, size=2)
    cy = centre_yx[0] + wander_mm * np.sin(2 * np.pi * z / period + phase[0])
    cx = centre_yx[1] + wander_mm * np.cos(2 * np.pi * z / period + phase[1])
    y, x = grid.axes_mm[1], grid.axes_mm[2]
    d2 = (y[None, :, None] - cy[:, None, None]) ** 2 + (x[None, None, :] - cx[:, None, None]) ** 2
    inside = d2 < radius**2
    if where is not None:
        inside &= where
    tissue[inside] = code
    return inside


def _body(tissue, grid, half_fov, rng, body_radii, scan_radius):
    """Air inside the scanned cylinder (radius as a fraction of half the field of view), a body
    ellipsoid with a fat rim, and a spine. Returns the body mask."""
    _, y, x = grid.axes_mm
    scan = ((y[:, None] / half_fov[1]) ** 2 + (x[None, :] / half_fov[2]) ** 2) < scan_radius**2
    tissue[:, scan] = Tissue.AIR
    radii = [f * h * rng.uniform(0.95, 1.05) for f, h in zip(body_radii, half_fov)]
    body = _paint_ellipsoid(tissue, grid, Tissue.FAT, (0.0, 0.0, 0.0), radii, rng, roughness=0.03)
    _paint_ellipsoid(tissue, grid, Tissue.SOFT, (0.0, 0.0, 0.0), [0.88 * r for r in radii], rng,
                     roughness=0.03, where=body)
    spine_r = 0.10 * min(half_fov[1], half_fov[2])
    _paint_tube(tissue, grid, Tissue.BONE, (0.55 * radii[1], 0.0), spine_r, rng, wander_mm=0.1 * spine_r, where=body)
    return body


def organs_phantom(grid: PhantomGrid, half_fov, rng: np.random.Generator) -> np.ndarray:
    """Abdomen-like tissue map ``(Z, Y, X)`` uint8: liver with a nested lesion, a gallbladder
    touching the liver, two kidneys (one label, two components), spine, fat rim, air, padding.

    ``half_fov``: half the nominal field of view in mm ``(z, y, x)``; anatomy scales with it.
    """
    hz, hy, hx = half_fov
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    body = _body(tissue, grid, half_fov, rng, body_radii=(0.95, 0.70, 0.78), scan_radius=0.84)
    inner = body & (tissue == Tissue.SOFT)

    def jitter(value, h, amount=0.04):
        return value + rng.uniform(-amount, amount) * h

    for side in (-1.0, 1.0):
        centre = (jitter(-0.38 * hz, hz), jitter(0.22 * hy, hy), jitter(side * 0.45 * hx, hx))
        radii = [f * h * rng.uniform(0.9, 1.1) for f, h in zip((0.32, 0.19, 0.16), half_fov)]
        _paint_ellipsoid(tissue, grid, Tissue.KIDNEY, centre, radii, rng, angle=side * rng.uniform(0.1, 0.4),
                         where=inner)

    liver_c = (jitter(0.25 * hz, hz), jitter(-0.10 * hy, hy), jitter(-0.26 * hx, hx))
    liver_r = [f * h * rng.uniform(0.9, 1.1) for f, h in zip((0.50, 0.40, 0.36), half_fov)]
    liver = _paint_ellipsoid(tissue, grid, Tissue.LIVER, liver_c, liver_r, rng, angle=rng.uniform(-0.3, 0.3),
                             where=inner)

    # the gallbladder overlaps the liver's medial edge and is painted after it, so the two touch
    gb_r = [f * h * rng.uniform(0.9, 1.1) for f, h in zip((0.28, 0.20, 0.17), half_fov)]
    gb_c = (liver_c[0] - 0.2 * liver_r[0], liver_c[1] + 0.2 * liver_r[1],
            liver_c[2] + 0.85 * liver_r[2] + 0.5 * gb_r[2])
    _paint_ellipsoid(tissue, grid, Tissue.GALLBLADDER, gb_c, gb_r, rng, roughness=0.06, where=inner)

    # the lesion lies strictly inside the liver: painted only where the eroded liver is
    liver_core = ndimage.binary_erosion(liver & (tissue == Tissue.LIVER), iterations=1)
    lesion_c = tuple(c + rng.uniform(-0.25, 0.25) * r for c, r in zip(liver_c, liver_r))
    lesion_r = [0.40 * r * rng.uniform(0.85, 1.15) for r in liver_r]
    _paint_ellipsoid(tissue, grid, Tissue.LESION, lesion_c, lesion_r, rng, roughness=0.15, where=liver_core)
    return tissue


def small_target_phantom(grid: PhantomGrid, half_fov, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """A small target (1-2 cm) somewhere in a large body among look-alikes, ``(Z, Y, X)`` uint8.

    Distractors: tubes with the target's intensity but thin and long, big blobs with the
    target's intensity, and target-sized nodes with another intensity; so neither intensity
    nor size alone finds the target. Returns ``(tissue, {"target_centre_mm", "target_radius_mm"})``.
    """
    hz, hy, hx = half_fov
    tissue = np.zeros(grid.shape, dtype=np.uint8)
    body = _body(tissue, grid, half_fov, rng, body_radii=(1.2, 0.80, 0.86), scan_radius=0.93)
    inner = body & (tissue == Tissue.SOFT)

    radius = rng.uniform(6.0, 10.0)  # 1.2-2 cm across
    centre = np.array([rng.uniform(-0.35, 0.35) * hz, rng.uniform(-0.38, 0.2) * hy, rng.uniform(-0.4, 0.4) * hx])
    placed = [(centre, radius + 4.0)]

    def free_spot(r, box):
        for _ in range(100):
            c = np.array([rng.uniform(-f, f) * h for f, h in zip(box, half_fov)])
            if all(np.linalg.norm(c - pc) > r + pr + 3.0 for pc, pr in placed):
                placed.append((c, r))
                return c
        return None

    for _ in range(3):  # vessels: target intensity, 6-10 mm across, running along z
        r = rng.uniform(3.0, 5.0)
        c = free_spot(r, (0.0, 0.5, 0.55))
        if c is not None:
            away = ~_ball_mask(grid, centre, radius + 5.0)
            _paint_tube(tissue, grid, Tissue.VESSEL, (c[1], c[2]), r, rng, wander_mm=6.0, where=inner & away)
    for code, (lo, hi), count in ((Tissue.VESSEL, (15.0, 22.0), 2), (Tissue.NODE, (6.0, 10.0), 4)):
        for _ in range(count):  # decoy blobs: big with the target's intensity, or target-sized but darker
            r = rng.uniform(lo, hi)
            c = free_spot(r, (0.45, 0.5, 0.55))
            if c is not None:
                _paint_ellipsoid(tissue, grid, code, tuple(c), (r, r * rng.uniform(0.8, 1.2), r), rng, where=inner)
    radii = (radius * rng.uniform(0.85, 1.15), radius, radius * rng.uniform(0.85, 1.15))
    _paint_ellipsoid(tissue, grid, Tissue.TARGET, tuple(centre), radii, rng, roughness=0.08, where=inner)
    return tissue, {"target_centre_mm": [float(c) for c in centre], "target_radius_mm": float(radius)}


def _ball_mask(grid: PhantomGrid, centre, radius: float) -> np.ndarray:
    z, y, x = grid.axes_mm
    return ((z[:, None, None] - centre[0]) ** 2 + (y[None, :, None] - centre[1]) ** 2
            + (x[None, None, :] - centre[2]) ** 2) < radius**2
