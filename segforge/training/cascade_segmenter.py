"""The cascade's second stage: the generic segmentation trainer, fed crops around the target.

At inference the segmenter only ever sees the ``crop_size`` box cut around the *located*
centroid, and the locator is off by a few millimetres. So in training every patch comes
from such a box cut around the *true* centroid plus a random offset drawn from the
locator's measured error: ``rms_zyx_mm`` of ``locator_validation.json`` of the same fold
when the locator is trained, else ``CascadeSettings.expected_locator_error_mm`` spread over
the three axes (at most a quarter of the crop per axis). Inside the box a patch is placed as the generic sampler does (1/3 around a
foreground voxel, else uniformly), but never outside the box.
"""

from __future__ import annotations

import json
import math
import numpy as np

from segforge import paths
from segforge.cascade.crop import crop_box_around
from segforge.cascade.grids import case_centroid_voxel
from segforge.training.locator_trainer import LOCATOR_VALIDATION_FILE, LocatorTrainer
from segforge.data import PatchSampler
from segforge.errors import InputError
from segforge.planning.plans import Configuration, Plans
from segforge.training.reporting import write_json
from segforge.training.segmentation_trainer import SegmentationTrainer

__all__ = ["CascadePatchSampler", "CascadeSegmentationTrainer", "crop_jitter"]


def crop_jitter(plans: Plans, configuration: Configuration, fold) -> dict:
    """Per-axis standard deviation of the crop-centre offset, with where it came from.

    ``{"std_zyx_mm": [...], "std_zyx_voxels": [...], "source": ..., "why": ...}``.
    """
    cascade = configuration.cascade
    locator_folder = paths.results_root() / plans.dataset_name / paths.model_folder_name(
        LocatorTrainer.name, cascade.locator_configuration)
    path = paths.fold_folder(locator_folder, fold) / LOCATOR_VALIDATION_FILE
    std = None
    if path.is_file():
        try:
            measured = json.loads(path.read_text())["centroid_error"]
            std = measured.get("rms_zyx_mm")
        except (json.JSONDecodeError, KeyError, TypeError):
            std = None
    if std is not None:
        source = str(path)
        why = "the locator's measured per-axis RMS centroid error on this fold's validation cases"
    else:
        e = float(cascade.expected_locator_error_mm)
        std = [e / math.sqrt(3.0)] * 3
        source = "plans: cascade.expected_locator_error_mm"
        why = (f"no measured locator error for fold {fold} yet; the planned expected error {e:.3g} mm "
               "spread evenly over the three axes (per-axis std = error / sqrt(3))")
    # a locator worse than a quarter crop would mostly train on crops that miss the target
    cap = [c / 4.0 * sp for c, sp in zip(cascade.crop_size, configuration.spacing)]
    if any(float(s) > c for s, c in zip(std, cap)):
        why += f"; capped at a quarter of the crop per axis ({', '.join(f'{c:.3g}' for c in cap)} mm)"
        std = [min(float(s), c) for s, c in zip(std, cap)]
    voxels = [float(s) / float(sp) for s, sp in zip(std, configuration.spacing)]
    return {"std_zyx_mm": [float(s) for s in std], "std_zyx_voxels": voxels, "source": source, "why": why}


class CascadePatchSampler(PatchSampler):
    """Patches that lie inside a ``crop_size`` box around the jittered true centroid."""

    def __init__(self, store, cases, patch_size, batch_size, crop_size, jitter_std_voxels, sample_size=None,
                 oversample_foreground=None, **kwargs):
        if oversample_foreground is not None:
            kwargs["oversample_foreground"] = oversample_foreground
        super().__init__(store, cases, patch_size, batch_size, sample_size=sample_size, **kwargs)
        if self.dims != 3:
            raise InputError("the cascade segmenter needs a 3D configuration")
        self.crop_size = np.asarray(crop_size, dtype=np.int64)
        self.jitter_std = np.asarray(jitter_std_voxels, dtype=np.float64)

    def crop_box(self, case: str, shape, rng) -> np.ndarray | None:
        """``(3, 2)`` box around the jittered centroid (clamped like at inference), or None."""
        centre = case_centroid_voxel(self.store.properties(case))
        if centre is None:
            return None
        jitter = np.array([rng.normal() for _ in range(3)]) * self.jitter_std
        return np.asarray(crop_box_around(centre + jitter, self.crop_size, shape), dtype=np.int64)

    def choose_lower_corner(self, case: str, shape: np.ndarray, props, rng) -> np.ndarray:
        box = self.crop_box(case, shape, rng)
        if box is None:  # no foreground in this case: a random patch as usual
            return super().choose_lower_corner(case, shape, props, rng)
        p, margin = self.patch_size, (self.sample_size - self.patch_size) // 2
        size = box[:, 1] - box[:, 0]
        lo_min = np.where(size >= p, box[:, 0], box[:, 0] - (p - size) // 2)
        lo_max = np.where(size >= p, box[:, 1] - p, lo_min)
        point = self._foreground_point(props, rng) if props is not None else None
        if point is not None:
            patch_lo = np.clip(np.asarray(point) - p // 2, lo_min, lo_max)
        else:
            patch_lo = np.array([rng.randint(a, b + 1) for a, b in zip(lo_min, lo_max)])
        return patch_lo - margin


class CascadeSegmentationTrainer(SegmentationTrainer):
    """:class:`SegmentationTrainer` for a configuration with ``cascade`` settings."""

    name = "CascadeSegmentationTrainer"

    def __init__(self, plans: Plans, configuration_name: str, fold, *args, **kwargs):
        super().__init__(plans, configuration_name, fold, *args, **kwargs)
        if self.configuration.cascade is None:
            raise InputError(f"configuration {configuration_name!r} has no cascade settings; "
                             "train it with SegmentationTrainer")
        if not self.configuration.cascade.crop_size:
            raise InputError(f"configuration {configuration_name!r} plans no cascade crop_size; re-plan")

    def setup(self) -> None:
        super().setup()
        self.jitter = crop_jitter(self.plans, self.configuration, self.fold)
        if self.writes_files:
            self.output_folder.mkdir(parents=True, exist_ok=True)
            write_json(self.output_folder / "crop_jitter.json",
                       {"crop_size": list(self.configuration.cascade.crop_size), **self.jitter})
        self.log(f"cascade crops {self.configuration.cascade.crop_size}, centre jitter std "
                 f"{', '.join(f'{v:.2f}' for v in self.jitter['std_zyx_mm'])} mm (z, y, x) from {self.jitter['source']}")

    def _sampler(self, cases, batch_size: int, sample_size=None, **kwargs) -> CascadePatchSampler:
        return CascadePatchSampler(self.store, cases, self.configuration.patch_size, batch_size,
                                   self.configuration.cascade.crop_size, self.jitter["std_zyx_voxels"],
                                   sample_size=sample_size, **kwargs)

    def build_training_sampler(self) -> PatchSampler:
        cases, weights = self.training_cases()  # with the pseudo-labelled ones (--pseudo-labels)
        return self._sampler(cases, self.batch_size, self.training_sample_size(), case_weights=weights,
                             soft_classes=self.soft_classes)

    def build_validation_sampler(self) -> PatchSampler:
        return self._sampler(self.val_cases, self.configuration.batch_size)
