"""Fine-tuning: start a network from another training run's checkpoint (``--pretrained-weights``).

Every weight whose name and shape match is copied; the rest keep their fresh initialisation —
above all the output heads when the checkpoint was trained for other classes (the head is
replaced), and the first convolution when the number of input channels differs. What was and
was not loaded is reported. A checkpoint of another network family (``unet`` against
``residual_unet``), of other dimensions (2D against 3D) or of another kind of network (a
locator's heatmaps against a segmentation) is refused in one line: copying the few tensors that
happen to match would be a silent, poor start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from segforge.errors import InputError
from segforge.io.checkpoint import load_checkpoint, plain_state_dict
from segforge.planning.plans import Configuration, Plans

__all__ = ["PretrainedReport", "load_pretrained_weights", "checkpoint_configuration"]


@dataclass
class PretrainedReport:
    """What :func:`load_pretrained_weights` copied (``loaded``) and left fresh (``fresh``: name -> why)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    fresh: dict[str, str] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)  # checkpoint tensors with no counterpart here
    loaded_parameters: int = 0
    total_parameters: int = 0

    def lines(self) -> list[str]:
        """What a person reads: the counts, then each tensor that was not loaded and why."""
        out = [f"pretrained weights {self.path}: loaded {len(self.loaded)} of {len(self.loaded) + len(self.fresh)} "
               f"tensors ({self.loaded_parameters:,} of {self.total_parameters:,} values)"]
        out += [f"  not loaded (fresh): {name}: {why}" for name, why in self.fresh.items()]
        if self.unused:
            out.append(f"  in the checkpoint but not in this network: {', '.join(self.unused)}")
        return out

    def to_dict(self) -> dict:
        return {"path": self.path, "loaded": len(self.loaded), "not_loaded": dict(self.fresh),
                "unused": list(self.unused), "loaded_values": self.loaded_parameters,
                "total_values": self.total_parameters}


def checkpoint_configuration(checkpoint: dict, path) -> Configuration:
    """The configuration a checkpoint was trained for (from the plans it carries)."""
    try:
        plans = Plans.from_dict(checkpoint["plans"])
        return plans.configuration(checkpoint["configuration"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise InputError(f"the checkpoint does not say which network it holds (no usable plans/configuration: "
                         f"{exc}); use a checkpoint written by segforge_train", path) from None


def load_pretrained_weights(network: torch.nn.Module, path: str | os.PathLike,
                            configuration: Configuration) -> PretrainedReport:
    """Copy into ``network`` (built for ``configuration``) every tensor of the checkpoint at ``path``
    whose name and shape match; returns what was and was not loaded. Refuses another network
    family, dimension or kind with an :class:`InputError` naming the file."""
    path = Path(path).expanduser()
    checkpoint = load_checkpoint(path)
    theirs = checkpoint_configuration(checkpoint, path)
    ours = configuration
    if theirs.kind != ours.kind:
        raise InputError(f"the checkpoint holds a {theirs.kind} network ({theirs.name}); {ours.name} trains a "
                         f"{ours.kind} network: fine-tune from a {ours.kind} checkpoint", path)
    if theirs.network.name != ours.network.name:
        raise InputError(f"the checkpoint holds a {theirs.network.name} network; this plan trains "
                         f"{ours.network.name}: fine-tuning needs the same network family (plan with --network "
                         f"{theirs.network.name}, or start from a {ours.network.name} checkpoint)", path)
    if theirs.dims != ours.dims:
        raise InputError(f"the checkpoint holds a {theirs.dims}D network ({theirs.name}); {ours.name} trains a "
                         f"{ours.dims}D one: fine-tune from a checkpoint of the same dimensions", path)
    source = plain_state_dict(checkpoint["network_state"])
    target = network.state_dict()
    report = PretrainedReport(str(path))
    update = {}
    for name, tensor in target.items():
        count = tensor.numel() if tensor.is_floating_point() else 0
        report.total_parameters += count
        if name not in source:
            report.fresh[name] = "not in the checkpoint (another depth or block)"
        elif tuple(source[name].shape) != tuple(tensor.shape):
            shapes = f"{list(source[name].shape)} in the checkpoint, {list(tensor.shape)} here"
            if name.startswith("heads."):
                why = f"output head replaced: {source[name].shape[0]} outputs in the checkpoint, {tensor.shape[0]} here"
            elif name.startswith("encoder.0.") and source[name].ndim > 1 and source[name].shape[1] != tensor.shape[1]:
                why = f"first convolution: {source[name].shape[1]} input channels in the checkpoint, {tensor.shape[1]} here"
            else:
                why = "shape differs"
            report.fresh[name] = f"{why} ({shapes})"
        else:
            update[name] = source[name].to(dtype=tensor.dtype)
            report.loaded.append(name)
            report.loaded_parameters += count
    report.unused = sorted(set(source) - set(target))
    encoder_loaded = [n for n in report.loaded if n.startswith("encoder.")]
    if not encoder_loaded:
        raise InputError("no encoder weight of the checkpoint fits this network (other features, kernels or depth): "
                         "fine-tuning needs a network of the same shape; plan with the checkpoint's plans", path)
    network.load_state_dict(update, strict=False)
    return report
