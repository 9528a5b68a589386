"""Image geometry: how array indices map to world coordinates.

Conventions (the same in every segforge module):

* arrays are indexed ``(z, y, x)`` — the order SimpleITK's ``GetArrayFromImage`` gives;
  multi-channel images are ``(C, z, y, x)``;
* ``spacing`` is in that array order, ``(z, y, x)`` in mm;
* ``origin`` is the world position (ITK/LPS, mm) of voxel ``(0, 0, 0)``, as ``(x, y, z)``;
* ``direction`` is ITK's 3x3 direction matrix, row-major: column ``j`` is the world
  direction of ITK index axis ``j`` (x, then y, then z).

``world = origin + direction @ (spacing_xyz * index_xyz)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Geometry"]


@dataclass(frozen=True)
class Geometry:
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    shape: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in np.asarray(self.direction).ravel()))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9 or len(self.shape) != 3:
            raise ValueError("Geometry needs 3 spacings, 3 origin values, 9 direction values and a 3D shape")

    @classmethod
    def identity(cls, shape, spacing=(1.0, 1.0, 1.0)) -> "Geometry":
        return cls(tuple(spacing), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()), tuple(shape))

    @property
    def spacing_xyz(self) -> tuple[float, float, float]:
        return self.spacing[::-1]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_world(self, index_zyx) -> np.ndarray:
        """``(..., 3)`` continuous indices ``(z, y, x)`` -> ``(..., 3)`` world points ``(x, y, z)``."""
        idx = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
        return np.asarray(self.origin) + (idx * np.asarray(self.spacing_xyz)) @ self.direction_matrix.T

    def world_to_index(self, world_xyz) -> np.ndarray:
        """``(..., 3)`` world points ``(x, y, z)`` -> continuous indices ``(z, y, x)``."""
        rel = np.asarray(world_xyz, dtype=np.float64) - np.asarray(self.origin)
        idx_xyz = (rel @ np.linalg.inv(self.direction_matrix).T) / np.asarray(self.spacing_xyz)
        return idx_xyz[..., ::-1]

    def same_grid(self, other: "Geometry", rtol: float = 1e-4, atol_mm: float = 1e-3) -> bool:
        """Same shape and (within tolerance) the same spacing, origin and direction."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=rtol, atol=0)
            and np.allclose(self.origin, other.origin, rtol=0, atol=max(atol_mm, rtol * max(self.spacing)))
            and np.allclose(self.direction, other.direction, atol=1e-4)
        )

    def describe_difference(self, other: "Geometry") -> str:
        """A short text naming what differs (for error messages)."""
        parts = []
        if self.shape != other.shape:
            parts.append(f"shape {self.shape} vs {other.shape}")
        if not np.allclose(self.spacing, other.spacing, rtol=1e-4):
            parts.append(f"spacing {_fmt(self.spacing)} vs {_fmt(other.spacing)}")
        if not np.allclose(self.origin, other.origin, atol=max(1e-3, 1e-4 * max(self.spacing))):
            parts.append(f"origin {_fmt(self.origin)} vs {_fmt(other.origin)}")
        if not np.allclose(self.direction, other.direction, atol=1e-4):
            parts.append("direction differs")
        return ", ".join(parts) or "identical"

    def to_dict(self) -> dict:
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "shape": list(self.shape),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        return cls(tuple(d["spacing"]), tuple(d["origin"]), tuple(d["direction"]), tuple(d["shape"]))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
