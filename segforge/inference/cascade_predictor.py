"""Cascade prediction: locate -> crop -> segment the crop -> paste back.

:class:`CascadePredictor` is the :class:`~segforge.inference.predictor.Predictor` of a
segmentation configuration with ``cascade`` settings (registered as ``"cascade"`` in
:data:`~segforge.inference.registry.PREDICTORS`; ``create_predictor`` picks it).

1. ``preprocess`` prepares the image twice: at the segmenter's spacing (the whole image)
   and at the locator's (kept in ``properties["cascade_locator"]``, not JSON);
2. ``predict_preprocessed``: the locator networks (one per fold, heatmaps averaged) give
   the centroid on the locator grid -> world -> the segmenter's grid; a ``crop_size`` box
   around it (shifted inside the image, padded where the image is smaller) is segmented
   by sliding window, and the crop's probabilities are pasted into a background volume;
3. ``restore`` (inherited) puts that volume back onto the input's grid.

The locator's model folder is ``LocatorTrainer__<locator configuration>`` beside the
segmenter's (or ``locator_folder``). The located centroid and heatmap of the last case are
in ``properties["cascade_result"]``; with ``save_locator`` they are also written next to
each prediction (``CASE_locator.json`` and ``CASE_locator_heatmap.nii.gz``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from segforge.cascade.crop import crop_box_around, crop_with_padding, paste_crop
from segforge.cascade.grids import preprocessed_to_world, world_to_preprocessed
from segforge.cascade.locate import predict_heatmap, read_centroids
from segforge.cascade.safeguard import confidence_radius
from segforge.errors import InputError
from segforge.inference.cascade_guard import guarded_crop_segmentation
from segforge.inference.model import ModelFolder
from segforge.io.checkpoint import load_checkpoint
from segforge.inference.predictor import Predictor
from segforge.io.atomic import write_json_atomic
from segforge.io.geometry import Geometry
from segforge.paths import TRAINER_OF_KIND, model_folder_name

__all__ = ["CascadePredictor", "locator_model_folder", "save_locator_result", "save_cascade_record"]


def locator_model_folder(model: ModelFolder) -> Path:
    """``<results>/DatasetNNN/LocatorTrainer__<locator>`` beside the segmenter's folder."""
    return model.path.parent / model_folder_name(TRAINER_OF_KIND["locator"],
                                                 model.configuration.cascade.locator_configuration)


class CascadePredictor(Predictor):
    """A cascade model (locator + crop segmenter), fold-ensembled in both stages."""

    def __init__(self, model_folder, folds=None, checkpoint: str = "final", device=None, tta: bool = True,
                 step: float = 0.5, window_batch: int | None = None, locator_folder=None,
                 save_locator: bool = False, progress: bool = False, backend: str = "torch",
                 mirror_axes=None, bf16: bool = False, guard: bool = True, postprocessing: bool = True):
        if backend != "torch":
            raise InputError("cascade models run with --backend torch only (they cannot be exported yet)",
                             getattr(model_folder, "path", model_folder))
        super().__init__(model_folder, folds, checkpoint, device, tta, step, window_batch, progress=progress,
                         mirror_axes=mirror_axes, bf16=bf16, postprocessing=postprocessing)
        cascade = self.configuration.cascade
        if cascade is None or not cascade.crop_size:
            raise InputError(f"configuration {self.configuration.name!r} has no cascade crop", self.model.path)
        folder = Path(locator_folder) if locator_folder is not None else locator_model_folder(self.model)
        if not folder.is_dir():
            raise InputError("the cascade's locator model folder is missing; train the locator "
                             f"(segforge_train ID FOLD -c {cascade.locator_configuration}) or copy it beside the "
                             "segmenter's folder", folder)
        self.locator_model = ModelFolder.open(folder)
        self.locator_configuration = self.locator_model.configuration
        if self.locator_configuration.kind != "locator":
            raise InputError(f"{folder.name} is not a locator model folder", folder)
        available = self.locator_model.available_folds()
        same = [f for f in self.folds if f in available]
        self.locator_folds = same or self.locator_model.resolve_folds(None)
        self.locator_networks = [self._load_locator(f) for f in self.locator_folds]
        self.save_locator = save_locator
        self.guard = guard  # the never-miss safeguards (docs/cascade.md); False: the plain crop
        self.confidence_reference, self.confidence_radius = self._confidence_reference()
        self.last_cascade_record: dict | None = None

    def _load_locator(self, fold: str) -> torch.nn.Module:
        from segforge.networks import build_network, to_device_layout

        path = self.locator_model.checkpoint_file(fold, self.checkpoint)
        ckpt = load_checkpoint(path)
        n_heatmaps = int(ckpt.get("n_heatmaps", 1))
        network = build_network(self.locator_configuration, self.plans.num_channels, n_heatmaps)
        try:
            network.load_state_dict(ckpt["network_state"])
        except RuntimeError as exc:
            raise InputError(f"locator checkpoint does not fit the planned network ({str(exc).splitlines()[0]})",
                             path) from None
        return to_device_layout(network, self.device).eval()

    def _confidence_reference(self) -> tuple[dict | None, float]:
        """The locator folds' validation heatmap statistics, pooled (weakest / widest over folds), and the
        "near the peak" radius in locator voxels; ``(None, 3 sigma_min + 1)`` for locators trained without them."""
        refs, radii = [], []
        for fold in self.locator_folds:
            path = self.locator_model.path / f"fold_{fold}" / "locator_validation.json"
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(info.get("confidence_reference"), dict) and info["confidence_reference"].get("n"):
                refs.append(info["confidence_reference"])
                radii.append(float(info.get("confidence_radius_voxels") or 0))
        settings = self.locator_configuration.locator
        radius = max(radii) if radii and max(radii) > 0 else confidence_radius(settings.sigma_min if settings else 1.5)
        if not refs:
            return None, radius
        pooled = {"n": sum(int(r["n"]) for r in refs),
                  "min_peak": min(r["min_peak"] for r in refs),
                  "min_mass_near_peak": min(r["min_mass_near_peak"] for r in refs),
                  "max_spread": max(r["max_spread"] for r in refs),
                  "max_second_peak": max(r["max_second_peak"] for r in refs),
                  "why": f"extremes over the validation cases of locator fold(s) {', '.join(self.locator_folds)}"}
        return pooled, radius

    # ------------------------------------------------------------------ steps
    def preprocess(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, dict]:
        """Full-resolution ``(data, properties)``; the locator's input rides in the properties."""
        from segforge.preprocessing import preprocess_case

        data, properties = super().preprocess(image, geometry)
        image = np.asarray(image, dtype=np.float32)
        image = image[None] if image.ndim == 3 else image
        loc_data, _, loc_props = preprocess_case(image, geometry, self.locator_configuration)
        properties["cascade_locator"] = {"data": loc_data, "properties": loc_props}
        return data, properties

    def locate(self, loc_data: np.ndarray, loc_props: dict) -> dict:
        """Heatmap ``(K, z, y, x)`` on the locator grid and the centroid (world mm)."""
        heatmap = predict_heatmap(self.locator_networks, loc_data, self.locator_configuration, self.device)
        centroids = read_centroids(heatmap)
        centre = np.mean(centroids, axis=0)  # one channel (union) or the classes' midpoint
        return {"heatmap": heatmap, "centroid_voxel_locator": centre,
                "centroid_world": preprocessed_to_world(centre, loc_props), "locator_properties": loc_props}

    def predict_preprocessed(self, data, properties: dict) -> torch.Tensor:
        """Probabilities ``(K, z, y, x)`` on the full-resolution grid: background outside the crop."""
        located = properties.get("cascade_locator")
        if located is None:
            raise InputError("cascade prediction needs CascadePredictor.preprocess (the locator's input is missing)")
        result = self.locate(located["data"], located["properties"])
        data = np.asarray(data, dtype=np.float32)
        shape = data.shape[1:]
        centre = world_to_preprocessed(result["centroid_world"], properties)
        del properties["cascade_locator"]
        if self.guard:
            loss = self.locator_configuration.locator.loss if self.locator_configuration.locator else "mse"
            full, record = guarded_crop_segmentation(
                lambda crop: Predictor.predict_preprocessed(self, crop, properties).cpu().numpy(), data, properties,
                result["heatmap"], located["properties"], self.configuration.cascade.crop_size, self.num_classes,
                self.confidence_reference, self.confidence_radius, loss=loss,
                centre=result["centroid_voxel_locator"])
            result.update(crop_box=record["final_box"], centroid_voxel=centre, safeguard=record)
            properties["cascade_result"] = result
            self.last_cascade_record = record
            return torch.from_numpy(full)
        box = crop_box_around(centre, self.configuration.cascade.crop_size, shape)
        crop = crop_with_padding(data, box, pad_value=0.0)
        crop_probabilities = super().predict_preprocessed(crop, properties).cpu().numpy()
        full = np.zeros((self.num_classes, *shape), dtype=np.float32)
        full[0] = 0.0 if self.labels.is_regions else 1.0  # outside the crop: background (regions: none)
        paste_crop(crop_probabilities, box, full)
        result.update(crop_box=box, centroid_voxel=centre)
        properties["cascade_result"] = result
        self.last_cascade_record = {"decision": "crop", "confident": None, "reasons": ["safeguards off"],
                                    "boxes": [box], "final_box": box, "growths": 0}
        return torch.from_numpy(full)

    def export_extras(self, properties: dict, target: Path) -> None:
        """Called by the pipeline after writing ``target``: ``CASE_cascade.json`` (what the cascade did and
        why), and the locator's outputs when asked for."""
        if "cascade_result" not in properties:
            return
        if "safeguard" in properties["cascade_result"]:
            save_cascade_record(properties["cascade_result"]["safeguard"], target)
        if self.save_locator:
            save_locator_result(properties["cascade_result"], target)


def save_cascade_record(record: dict, target: Path) -> Path:
    """``CASE_cascade.json`` beside the prediction ``target``: the safeguards' decision, reasons and boxes."""
    from segforge.io.image import split_ending

    target = Path(target)
    stem = target.name[: -len(".dcm")] if target.name.endswith(".dcm") else split_ending(target)[0]
    path = target.with_name(f"{stem}_cascade.json")
    write_json_atomic(path, _jsonable(record))
    return path


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_locator_result(result: dict, target: Path) -> tuple[Path, Path]:
    """Write ``CASE_locator.json`` (centroid in world mm, crop box) and the heatmap on the
    locator grid as ``CASE_locator_heatmap.nii.gz`` (``..._heatmap_K.nii.gz`` per channel
    when there are several) beside the prediction ``target``."""
    from segforge.io.image import split_ending, write_image
    from segforge.preprocessing import preprocessed_geometry

    target = Path(target)
    stem, _ = split_ending(target)
    geometry = preprocessed_geometry(result["locator_properties"])
    heatmap = result["heatmap"]
    heat_files = []
    for k in range(len(heatmap)):
        suffix = "" if len(heatmap) == 1 else f"_{k}"
        path = target.with_name(f"{stem}_locator_heatmap{suffix}.nii.gz")
        write_image(heatmap[k].astype(np.float32), geometry, path)
        heat_files.append(path.name)
    info = {
        "centroid_world": [float(v) for v in result["centroid_world"]],
        "centroid_voxel_locator_grid": [float(v) for v in result["centroid_voxel_locator"]],
        "centroid_voxel_segmenter_grid": [float(v) for v in result["centroid_voxel"]],
        "crop_box_segmenter_grid": result["crop_box"],
        "heatmaps": heat_files,
        "locator_grid": geometry.to_dict(),
        "why": "world point (x, y, z) mm, ITK/LPS; voxels (z, y, x)",
    }
    json_path = target.with_name(f"{stem}_locator.json")
    write_json_atomic(json_path, info)
    return json_path, target.with_name(heat_files[0])
