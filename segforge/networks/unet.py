"""The dynamic U-Net built from a :class:`~segforge.networks.topology.NetworkTopology`.

Encoder contract (stated once; the decoder is derived from it): stage ``s`` outputs
``features_per_stage[s]`` channels at the input shape divided by ``prod(strides[:s+1])``
per axis. The decoder walks back up: a transposed convolution with the encoder stage's
stride (kernel = stride) brings stage ``s+1`` to stage ``s``'s shape and channels, the
(optionally attention-gated) skip is concatenated, ``n_conv_per_stage`` plain convolutions
follow, and a 1x1 head gives logits.

Deep supervision: in ``train()`` mode the forward returns one logit map per decoder stage
(``n_stages - 1`` of them), full resolution first; output ``i`` has the resolution of
encoder stage ``i`` (see :func:`deep_supervision_scales`). No output is dropped here; the
loss gives the lowest one weight 0, as nnU-Net does. In ``eval()`` mode, or with
``deep_supervision=False``, the forward returns the full-resolution logits
``(B, num_classes, *spatial)`` only.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import nn

from segforge.networks.attention import AttentionGate
from segforge.networks.blocks import NONLINS, STAGES, PlainStage, conv_class, transposed_conv_class
from segforge.networks.topology import NetworkTopology
from segforge.registry import look_up

__all__ = ["UNet", "deep_supervision_scales", "per_stage"]


def per_stage(value, n_stages: int, name: str) -> list:
    """Broadcast "one value or one per stage" to a list of ``n_stages`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_stages:
            raise ValueError(f"{name} needs one value or one per stage ({n_stages}), got {len(value)}: {value}")
        return list(value)
    return [value] * n_stages


def _check_topology(topology: NetworkTopology, dims: int) -> None:
    for what, per_axis in (("kernel_sizes", topology.kernel_sizes), ("strides", topology.strides)):
        for s, v in enumerate(per_axis):
            if len(v) != dims:
                raise ValueError(f"{what}[{s}] must have one value per axis ({dims} for a {dims}D network), got {v}")
    if topology.n_stages < 2:
        raise ValueError(f"a U-Net needs at least 2 stages, got {topology.n_stages}")
    if any(s != 1 for s in topology.strides[0]):
        raise ValueError(
            f"strides[0] must be all ones (the first stage keeps full resolution), got {topology.strides[0]}"
        )


def deep_supervision_scales(topology: NetworkTopology) -> list[list[int]]:
    """Per-axis downsampling factor of each training output, full resolution first.

    ``[[1, 1, 1], [1, 2, 2], [2, 4, 4], ...]`` for strides ``[[1,1,1], [1,2,2], [2,2,2], ...]``:
    one entry per decoder stage (``n_stages - 1``) with deep supervision, else only the first.
    """
    cumulative = np.cumprod(np.asarray(topology.strides, dtype=np.int64), axis=0)
    n_outputs = topology.n_stages - 1 if topology.deep_supervision else 1
    return [[int(f) for f in cumulative[i]] for i in range(n_outputs)]


class UNet(nn.Module):
    """``(B, in_channels, *spatial) -> (B, num_classes, *spatial)`` logits (a list in training with deep supervision).

    ``spatial`` must be divisible, per axis, by the product of the strides. ``mixes_features``:
    the forward takes ``mix_stage`` and ``mix`` (manifold mixup, :mod:`segforge.training.mixup`).
    """

    mixes_features = True

    def __init__(self, topology: NetworkTopology, dims: int, in_channels: int, num_classes: int):
        super().__init__()
        _check_topology(topology, dims)
        look_up(topology.nonlin, NONLINS, "non-linearity")
        stage_class = look_up(topology.block, STAGES, "encoder block")
        self.topology = topology
        self.dims = dims
        self.num_classes = num_classes
        self.deep_supervision = topology.deep_supervision
        n = topology.n_stages
        features = topology.features_per_stage
        kernels, strides = topology.kernel_sizes, topology.strides
        n_conv = per_stage(topology.n_conv_per_stage, n, "n_conv_per_stage")
        norm, nonlin = topology.norm, topology.nonlin
        self.divisor = [int(math.prod(s[a] for s in strides)) for a in range(dims)]

        self.encoder = nn.ModuleList()
        channels = in_channels
        for s in range(n):
            self.encoder.append(
                stage_class(channels, features[s], kernels[s], strides[s], n_conv[s], dims, norm, nonlin)
            )
            channels = features[s]

        # decoder, deepest first: decoder step j brings encoder stage s+1 up to stage s = n - 2 - j
        self.upsample = nn.ModuleList()
        self.gates = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for s in range(n - 2, -1, -1):
            self.upsample.append(
                transposed_conv_class(dims)(features[s + 1], features[s], tuple(strides[s + 1]),
                                            stride=tuple(strides[s + 1]), bias=False)
            )
            gate = AttentionGate(features[s], features[s], dims) if topology.attention_gates else nn.Identity()
            self.gates.append(gate)
            self.decoder.append(
                PlainStage(2 * features[s], features[s], kernels[s], [1] * dims, n_conv[s], dims, norm, nonlin)
            )
        # one head per decoder step with deep supervision (the last is full resolution), else only the last
        head_stages = range(n - 2, -1, -1) if self.deep_supervision else [0]
        self.heads = nn.ModuleList([conv_class(dims)(features[s], num_classes, 1, bias=True) for s in head_stages])
        self.apply(_init_weights)

    def output_scales(self) -> list[list[int]]:
        """See :func:`deep_supervision_scales`."""
        return deep_supervision_scales(self.topology)

    def check_input_shape(self, shape) -> None:
        spatial = list(shape[2:])
        if len(shape) != self.dims + 2:
            axes = "z, y, x" if self.dims == 3 else "y, x"
            raise ValueError(f"expected input (B, C, {axes}), got shape {list(shape)}")
        if any(sz % d for sz, d in zip(spatial, self.divisor)):
            raise ValueError(
                f"input spatial shape {spatial} is not divisible by the product of the network's strides "
                f"{self.divisor}; pad or crop each axis to a multiple of it"
            )
        norm = self.topology.norm
        if spatial == self.divisor and (norm == "instance" or (norm == "batch" and self.training)):
            raise ValueError(
                f"input spatial shape {spatial} leaves a single voxel at the bottleneck, too few for "
                f"{norm} normalisation; use at least twice {self.divisor} along one axis"
            )

    def forward(self, x: torch.Tensor, mix_stage: int | None = None,
                mix: Callable[[torch.Tensor], torch.Tensor] | None = None):
        """Logits of ``x``; with ``mix`` (manifold mixup), ``mix`` is applied to the features after
        encoder stage ``mix_stage`` and to the skips of every stage before it, so everything the
        decoder receives is mixed alike."""
        self.check_input_shape(x.shape)
        if mix is not None and not 0 <= int(mix_stage) < len(self.encoder):
            raise ValueError(f"mix_stage must be an encoder stage, 0..{len(self.encoder) - 1}, got {mix_stage}")
        skips = []
        for s, stage in enumerate(self.encoder):
            x = stage(x)
            skips.append(x)
            if mix is not None and s == mix_stage:
                skips = [mix(t) for t in skips]
                x = skips[-1]
        skips.pop()  # the bottleneck is not a skip
        with_all = self.deep_supervision and self.training
        outputs = []
        for j, (up, gate, stage) in enumerate(zip(self.upsample, self.gates, self.decoder)):
            skip = skips.pop()
            x = up(x)
            skip = gate(skip, x) if isinstance(gate, AttentionGate) else skip
            x = stage(torch.cat([x, skip], dim=1))
            if with_all:
                outputs.append(self.heads[j](x))
        if with_all:
            return outputs[::-1]
        return self.heads[-1](x)


def _init_weights(module: nn.Module) -> None:
    """Kaiming normal for convolutions (leaky ReLU slope 1e-2), zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
