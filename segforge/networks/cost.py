"""Compute cost of a U-Net training step from its topology: the convolutions it runs.

The planner sizes a network to the time a run has; this is what one iteration costs. Every
convolution of :class:`~segforge.networks.unet.UNet` (encoder, transposed-convolution
upsampling, decoder, segmentation heads, residual shortcuts, attention gates) is listed with
its channels, kernel volume and output voxels; a forward pass costs ``2 x in x out x kernel
x voxels`` multiply-adds per convolution, the backward pass twice that (gradient of the input
and of the weights), except that the first convolution needs no gradient of the image.
Normalisation and non-linearities are not counted here: they cost memory traffic, which
:func:`segforge.networks.memory.feature_map_elements` measures.

Checked against ``torch.utils.flop_counter`` on the meta device (tests/networks/test_network_cost.py):
identical for plain, residual and attention-gated networks in 2D and 3D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["ConvLayer", "conv_layers", "training_flops", "elementwise_elements"]


@dataclass(frozen=True)
class ConvLayer:
    """One convolution of a training step, per sample: ``forward_flops`` and its width (smaller channel count)."""

    in_channels: int
    out_channels: int
    kernel_volume: int
    out_voxels: int
    input_grad: bool = True  # False for the first convolution: the image needs no gradient
    role: str = "conv"  # "conv" (then normalisation + non-linearity), "upsample" (transposed), "head", "gate"

    @property
    def transposed(self) -> bool:
        return self.role == "upsample"

    @property
    def forward_flops(self) -> int:
        # a transposed convolution runs its kernel once per INPUT voxel
        voxels = self.out_voxels // self.kernel_volume if self.transposed else self.out_voxels
        return 2 * self.in_channels * self.out_channels * self.kernel_volume * voxels

    @property
    def training_flops(self) -> int:
        return self.forward_flops * (3 if self.input_grad else 2)

    @property
    def width(self) -> int:
        return min(self.in_channels, self.out_channels)


def conv_layers(topology, patch_size, in_channels: int, num_classes: int) -> list[ConvLayer]:
    """The convolutions of one sample's training step, encoder first."""
    shape = np.asarray(patch_size, dtype=np.int64)
    voxels = []
    for stride in topology.strides:
        shape = shape // np.asarray(stride, dtype=np.int64)
        voxels.append(int(np.prod(shape)))
    features = topology.features_per_stage
    n = topology.n_stages
    layers: list[ConvLayer] = []
    channels = in_channels
    for s in range(n):
        k = math.prod(topology.kernel_sizes[s])
        strided = any(v != 1 for v in topology.strides[s])
        if topology.block == "residual":
            for b in range(max(1, topology.n_conv_per_stage // 2)):
                cin = channels if b == 0 else features[s]
                layers.append(ConvLayer(cin, features[s], k, voxels[s], input_grad=bool(layers)))
                layers.append(ConvLayer(features[s], features[s], k, voxels[s]))
                if b == 0 and (strided or cin != features[s]):
                    layers.append(ConvLayer(cin, features[s], 1, voxels[s], input_grad=s > 0))
        else:
            for i in range(topology.n_conv_per_stage):
                cin = channels if i == 0 else features[s]
                layers.append(ConvLayer(cin, features[s], k, voxels[s], input_grad=bool(layers)))
        channels = features[s]
    for s in range(n - 2, -1, -1):  # decoder, deepest first
        up = math.prod(topology.strides[s + 1])
        layers.append(ConvLayer(features[s + 1], features[s], up, voxels[s], role="upsample"))
        if topology.attention_gates:
            inter = max(1, features[s] // 2)
            layers += [ConvLayer(features[s], inter, 1, voxels[s], role="gate"),
                       ConvLayer(features[s], inter, 1, voxels[s], role="gate"),
                       ConvLayer(inter, 1, 1, voxels[s], role="gate")]
        k = math.prod(topology.kernel_sizes[s])
        for i in range(topology.n_conv_per_stage):
            layers.append(ConvLayer(2 * features[s] if i == 0 else features[s], features[s], k, voxels[s]))
        if topology.deep_supervision or s == 0:
            layers.append(ConvLayer(features[s], num_classes, 1, voxels[s], role="head"))
    return layers


def training_flops(topology, patch_size, batch_size: int, in_channels: int, num_classes: int) -> int:
    """Floating-point operations of one training step (forward + backward) of ``batch_size`` samples."""
    return batch_size * sum(layer.training_flops for layer in conv_layers(topology, patch_size, in_channels,
                                                                          num_classes))


def elementwise_elements(topology, patch_size, batch_size: int, in_channels: int, num_classes: int) -> int:
    """Elements that pass through normalisation + non-linearity (and, for the heads, the loss) in one step."""
    layers = conv_layers(topology, patch_size, in_channels, num_classes)
    return batch_size * sum(layer.out_channels * layer.out_voxels for layer in layers if layer.role in ("conv", "head"))
