"""Exporting a trained model folder for deployment: ONNX networks, safetensors weights, JSON decisions.

``export_model(model_folder, output)`` writes::

    OUT/export.json            what the folder is and how to predict with it (below)
    OUT/plans.json             the plans (spacing, normalisation, resampling, patch: the preprocessing)
    OUT/dataset.json           channel and label names
    OUT/fold_K/network.onnx    the fold's network: image (B, C, z, y, x) float32 -> logits (B, K, z, y, x)
    OUT/fold_K/weights.safetensors   the same weights as tensors only (no code can ride in them)

Batch and spatial axes of the ONNX graph are dynamic (spatial sizes must be multiples of
``network.spatial_divisor``), so any runtime can use windows of the patch size or larger.
``export.json`` states, in words and values, every step between an image file and a label
file — preprocessing, sliding window, fold ensemble, restoring onto the input grid — so a
deployment can predict without segforge's training code; ``segforge_predict -m OUT`` reads
the folder itself, with ``--backend onnxruntime`` (the ONNX files) or ``torch`` (the
safetensors weights). The folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Sequence

import torch

from segforge.errors import InputError
from segforge.inference.model import EXPORT_FILE, ModelFolder, load_checkpoint, plain_state_dict
from segforge.inference.postprocessing import POSTPROCESSING_FILE, Postprocessing
from segforge.io.atomic import write_json_atomic

__all__ = ["EXPORT_FILE", "EXPORT_FORMAT", "export_model", "export_description", "onnx_file", "weights_file"]

EXPORT_FORMAT = 1
ONNX_OPSET = 18


def onnx_file(folder: str | os.PathLike, fold: str) -> Path:
    return Path(folder) / f"fold_{fold}" / "network.onnx"


def weights_file(folder: str | os.PathLike, fold: str) -> Path:
    return Path(folder) / f"fold_{fold}" / "weights.safetensors"


def export_model(
    model_folder: str | os.PathLike,
    output: str | os.PathLike,
    folds: Sequence[str | int] | None = None,
    checkpoint: str = "final",
    log: Callable[[str], None] = print,
) -> Path:
    """Export ``folds`` (default: every trained fold) of ``model_folder`` into the new folder ``output``."""
    from safetensors.torch import save_file

    model = ModelFolder.open(model_folder)
    if model.configuration.cascade is not None or model.configuration.kind != "segmentation":
        raise InputError(f"configuration {model.configuration.name!r} is not a single-stage segmentation "
                         "configuration; exporting cascades and locators is not supported yet", model.path)
    out = Path(output).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("output exists and is not an empty folder; choose a new folder for the export", out)
    if out == model.path or model.path in out.parents:
        raise InputError("the export must not go inside the model folder", out)
    folds = model.resolve_folds(folds)
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    tmp.mkdir(parents=True)
    try:
        shutil.copyfile(model.path / "plans.json", tmp / "plans.json")
        write_json_atomic(tmp / "dataset.json", model.dataset_json or _dataset_json(model))
        decision = Postprocessing.load(model.path)
        if decision is not None:  # the cross-validated postprocessing travels with the weights
            decision.save(tmp)
        for fold in folds:
            path = model.checkpoint_file(fold, checkpoint)
            network, state = _network(model, load_checkpoint(path), path)
            (tmp / f"fold_{fold}").mkdir()
            save_file({k: v.contiguous() for k, v in state.items()}, str(weights_file(tmp, fold)),
                      metadata={"configuration": model.configuration.name, "fold": fold, "checkpoint": checkpoint})
            _export_onnx(network, model, onnx_file(tmp, fold))
            log(f"fold {fold}: {path.name} -> {onnx_file(out, fold).relative_to(out)}, "
                f"{weights_file(out, fold).relative_to(out)}")
        write_json_atomic(tmp / EXPORT_FILE, export_description(model, folds, checkpoint))
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"exported {len(folds)} fold(s) of {model.path.name} -> {out}")
    return out


def export_description(model: ModelFolder, folds: Sequence[str], checkpoint: str) -> dict:
    """The content of ``export.json``: the model, the network's contract and every prediction step."""
    from segforge import __version__
    from segforge.inference.gaussian import GAUSSIAN_SIGMA_SCALE

    c = model.configuration
    plans = model.plans
    scheme = plans.label_scheme  # softmax labels or sigmoid regions (segforge.io.labels)
    regions = scheme.is_regions
    divisor = _spatial_divisor(c.network.strides)
    axes = ["z", "y", "x"][-c.dims:]
    return {
        "format": "segforge-export",
        "format_version": EXPORT_FORMAT,
        "segforge_version": __version__,
        "source_model_folder": str(model.path),
        "trainer": model.trainer,
        "configuration": c.name,
        "folds": list(folds),
        "checkpoint": checkpoint,
        "labels": plans.labels,
        **({"regions_class_order": list(scheme.regions_class_order)} if regions else {}),
        "output_label_values": scheme.output_values,
        "channel_names": plans.channel_names,
        "network": {
            "files": {fold: {"onnx": f"fold_{fold}/network.onnx", "safetensors": f"fold_{fold}/weights.safetensors"}
                      for fold in folds},
            "registry_name": c.network.name,
            "topology": plans.to_dict()["configurations"][c.name]["network"],
            "input": {"name": "image", "shape": ["B", c.network_input_channels(plans.num_channels), *axes],
                      "dtype": "float32"},
            "output": {"name": "logits", "shape": ["B", plans.num_classes, *axes], "dtype": "float32"},
            "spatial_divisor": divisor,
            "onnx_opset": ONNX_OPSET,
            "why": "batch and spatial axes are dynamic; each spatial size must be a multiple of spatial_divisor "
                   "(the product of the strides per axis) and is normally the patch size",
        },
        "preprocessing": {
            "steps": [
                "read the image (C, Z, Y, X) with its geometry; DICOM with rescale slope/intercept applied",
                "crop to the box of voxels non-zero in any channel" if c.crop_to_nonzero else "no cropping",
                f"resample to spacing {c.spacing} mm (z, y, x): images cubic B-spline, separable, voxel centres kept",
                "normalise each channel as in normalization",
            ],
            "spacing": c.spacing,
            "crop_to_nonzero": c.crop_to_nonzero,
            "normalization": [n.__dict__ for n in c.normalization],
            "resampling": c.resampling.__dict__,
        },
        "prediction": {
            "patch_size": c.patch_size,
            "step": 0.5,
            "gaussian_sigma_scale": GAUSSIAN_SIGMA_SCALE,
            "mirror_axes": list(range(c.dims)),
            "input_slices": c.input_slices,
            "steps": [
                *([f"2.5d: stack every slice z with slices z-{c.input_slices // 2}..z+{c.input_slices // 2} (the edge "
                   "slice repeated beyond the volume) as channels, channel c * input_slices + j = channel c of slice "
                   f"z + j - {c.input_slices // 2}; then predict every slice with the 2D windows"]
                  if c.input_slices > 1 else []),
                "zero-pad (centred) every axis smaller than the patch",
                "windows of patch_size; per axis ceil((size - patch) / (step * patch)) + 1 starts spread evenly "
                "from 0 to size - patch, rounded",
                "logits of each window averaged over every flip combination of mirror_axes (the test-time "
                "augmentation; optional), multiplied by a Gaussian (sigma = gaussian_sigma_scale * patch per axis, "
                "maximum 1), summed, divided by the summed Gaussians",
                ("sigmoid of each region's logits (region-based labels), then the mean over folds" if regions
                 else "softmax over classes, then the mean over folds"),
            ],
        },
        "postprocessing": {
            "steps": [
                "resample the probabilities linearly back to the cropped region's original shape and paste them "
                "into the original grid, " + ("every region's probability 0 outside the crop" if regions
                                              else "background probability 1 outside the crop"),
                (f"label map: 0, then regions_class_order[i] {scheme.output_values} painted, in order, where region "
                 "i's probability is above 0.5" if regions else
                 f"label = argmax over classes; output k writes label value output_label_values[k] "
                 f"{scheme.output_values} (dataset.json labels)"),
                "write with the input's geometry (spacing, origin, direction)",
            ],
            "connected_component_filtering": _component_filtering(model),
            "why": "restore and argmax, then the connected-component filtering decided by cross-validation "
                   f"({POSTPROCESSING_FILE}, applied by segforge_predict unless --no-postprocessing); "
                   "null: none decided",
        },
    }


def _component_filtering(model: ModelFolder) -> dict | None:
    """The model folder's postprocessing.json decision, in words and values (None when none was decided)."""
    decision = Postprocessing.load(model.path)
    if decision is None:
        return None
    names = {v: k for k, v in model.plans.labels.items() if isinstance(v, int)}
    return {"file": POSTPROCESSING_FILE, "applied": decision.describe(names), "connectivity": decision.connectivity,
            "foreground_largest_component": decision.foreground_largest_component,
            "largest_component_labels": decision.largest_component_labels,
            "steps": ["foreground_largest_component: foreground voxels outside the largest connected component of "
                      "all foreground together -> background",
                      "then for each of largest_component_labels: its voxels outside its own largest connected "
                      "component -> background"]}


def _network(model: ModelFolder, checkpoint: dict, path: Path):
    from segforge.networks import build_network

    network = build_network(model.configuration, model.plans.num_channels, model.plans.num_classes)
    state = plain_state_dict(checkpoint["network_state"])
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"checkpoint does not fit the planned network ({str(exc).splitlines()[0]})", path) from None
    return network.eval(), network.state_dict()


def _export_onnx(network: torch.nn.Module, model: ModelFolder, path: Path) -> None:
    """The eval-mode network (full-resolution logits only) as ONNX with dynamic batch and spatial axes."""
    import warnings

    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise InputError("ONNX export needs the onnx extra: pip install 'segforge[onnx]'") from None
    c = model.configuration
    divisor = _spatial_divisor(c.network.strides)
    example = torch.zeros(2, c.network_input_channels(model.plans.num_channels), *c.patch_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    axes = "zyx"[-c.dims:]
    spatial = {2 + i: d * torch.export.Dim(f"{axes[i]}_blocks", min=1, max=4096) for i, d in enumerate(divisor)}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(network, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=["image"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch, **spatial}}, verbose=False)
        program.save(str(path))


def _spatial_divisor(strides) -> list[int]:
    out = [1] * len(strides[0])
    for stride in strides:
        out = [o * s for o, s in zip(out, stride)]
    return out


def _dataset_json(model: ModelFolder) -> dict:
    return {"channel_names": model.plans.channel_names, **model.plans.label_scheme.to_dict(), "file_ending": ".nii.gz"}
