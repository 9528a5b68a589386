"""Connected-component postprocessing of a predicted label map, as decided by cross-validation.

Two operations (nnU-Net's), each kept only where it raised the cross-validation Dice
(:func:`segforge.workflows.postprocessing.determine_postprocessing` decides and writes
``postprocessing.json`` into the model folder):

* ``foreground_largest_component``: all foreground labels together form one mask; every
  foreground voxel outside its largest connected component becomes background;
* ``largest_component_labels``: for each of these label values, the voxels of that value outside
  its own largest component become background.

Components are 26-connected (``connected-components-3d``). :class:`Postprocessing` is what the
predictor applies after argmax on the original grid (``segforge_predict --no-postprocessing``
skips it); probabilities are written as predicted.

``postprocessing.json``::

    {"format": "segforge-postprocessing", "foreground_largest_component": true,
     "largest_component_labels": [2], "connectivity": 26,
     "cross_validation": {...the figures it was decided by...}, "why": "..."}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segforge.errors import InputError
from segforge.io.atomic import write_json_atomic
from segforge.io.json_file import read_json

__all__ = ["POSTPROCESSING_FILE", "Postprocessing", "largest_component", "remove_all_but_largest_component"]

POSTPROCESSING_FILE = "postprocessing.json"
FORMAT = "segforge-postprocessing"
CONNECTIVITY = 26


def largest_component(mask: np.ndarray, connectivity: int = CONNECTIVITY) -> np.ndarray:
    """Boolean ``mask`` (2D or 3D) reduced to its largest connected component (empty stays empty)."""
    import cc3d

    mask = np.ascontiguousarray(mask, dtype=bool)
    if not mask.any():
        return mask
    if mask.ndim == 2:
        connectivity = 8 if connectivity == CONNECTIVITY else 4
    return cc3d.largest_k(mask, k=1, connectivity=connectivity) > 0


def remove_all_but_largest_component(labels: np.ndarray, values=None, connectivity: int = CONNECTIVITY) -> np.ndarray:
    """A copy of ``labels`` where the voxels of ``values`` (None: every non-zero value, as one mask)
    outside the largest connected component of those voxels are set to 0 (background)."""
    labels = np.array(labels, copy=True)
    mask = labels != 0 if values is None else np.isin(labels, list(values))
    if not mask.any():
        return labels
    keep = largest_component(mask, connectivity)
    labels[mask & ~keep] = 0
    return labels


@dataclass
class Postprocessing:
    """What to apply to a predicted label map, and the cross-validation figures it was decided by."""

    foreground_largest_component: bool = False
    largest_component_labels: list[int] = field(default_factory=list)
    connectivity: int = CONNECTIVITY
    cross_validation: dict = field(default_factory=dict)
    why: str = ""

    @property
    def does_something(self) -> bool:
        return self.foreground_largest_component or bool(self.largest_component_labels)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """``labels (Z, Y, X)`` -> the postprocessed label map (same dtype and shape)."""
        if self.foreground_largest_component:
            labels = remove_all_but_largest_component(labels, None, self.connectivity)
        for value in self.largest_component_labels:
            labels = remove_all_but_largest_component(labels, [value], self.connectivity)
        return labels

    def describe(self, names: dict[int, str] | None = None) -> str:
        """One line: what is applied."""
        names = names or {}
        parts = []
        if self.foreground_largest_component:
            parts.append("largest component of all foreground")
        if self.largest_component_labels:
            parts.append("largest component of " + ", ".join(
                names.get(v, f"label {v}") for v in self.largest_component_labels))
        return "; ".join(parts) if parts else "none"

    def to_dict(self) -> dict:
        return {"format": FORMAT, "foreground_largest_component": bool(self.foreground_largest_component),
                "largest_component_labels": [int(v) for v in self.largest_component_labels],
                "connectivity": int(self.connectivity), "cross_validation": self.cross_validation, "why": self.why}

    @classmethod
    def from_dict(cls, d: dict, path=None) -> "Postprocessing":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"not a segforge postprocessing description (format {FORMAT})", path)
        try:
            labels = [int(v) for v in d.get("largest_component_labels", [])]
            connectivity = int(d.get("connectivity", CONNECTIVITY))
        except (TypeError, ValueError) as exc:
            raise InputError(f"postprocessing description is not valid ({exc})", path) from None
        if connectivity not in (6, 18, 26):
            raise InputError(f"connectivity must be 6, 18 or 26, got {connectivity}", path)
        return cls(bool(d.get("foreground_largest_component", False)), labels, connectivity,
                   dict(d.get("cross_validation") or {}), str(d.get("why", "")))

    def save(self, folder: str | os.PathLike) -> Path:
        path = Path(folder) / POSTPROCESSING_FILE
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Postprocessing | None":
        """The folder's ``postprocessing.json``, or None when it has none (nothing decided yet)."""
        path = Path(folder) / POSTPROCESSING_FILE
        data = read_json(path, missing_ok=True)
        return None if data is None else cls.from_dict(data, path)
