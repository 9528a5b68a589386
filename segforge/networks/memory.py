"""Activation-memory estimate of a U-Net from its topology.

The planner shrinks the patch until this estimate fits the memory budget; it never looks
inside a network class. Each convolution block stores its convolution, normalisation and
non-linearity outputs for the backward pass (3 tensors of ``features x voxels``); the
decoder additionally holds the transposed-convolution output and the concatenation.

Measured against :class:`~segforge.networks.unet.UNet` (tests/networks/test_network_memory.py):
the estimate is 1.05-1.25x the summed outputs of all leaf modules in one forward pass and
1.3-1.45x the storage autograd actually saves for 3D networks (the in-place leaky ReLU
shares the normalisation's output), so it errs on the safe side.
"""

from __future__ import annotations

import numpy as np

from segforge.networks.topology import NetworkTopology

__all__ = ["feature_map_elements", "training_memory_bytes", "inference_memory_bytes"]

_TENSORS_PER_CONV = 3  # conv, norm, nonlinearity outputs kept for backward


def feature_map_elements(topology: NetworkTopology, patch_size, in_channels: int, num_classes: int) -> int:
    """Elements of all activations kept for backward, for one sample of ``patch_size``."""
    shape = np.asarray(patch_size, dtype=np.int64)
    total = int(np.prod(shape)) * in_channels
    voxels_per_stage = []
    for stride in topology.strides:
        shape = shape // np.asarray(stride, dtype=np.int64)
        voxels_per_stage.append(int(np.prod(shape)))
    for f, v in zip(topology.features_per_stage, voxels_per_stage):
        total += topology.n_conv_per_stage * _TENSORS_PER_CONV * f * v
        if topology.block == "residual":
            total += f * v  # the residual sum
    # decoder: every stage but the deepest; upsampled + concatenated input, convs, seg head
    for f, v in zip(topology.features_per_stage[:-1], voxels_per_stage[:-1]):
        total += f * v + 2 * f * v
        total += topology.n_conv_per_stage * _TENSORS_PER_CONV * f * v
        total += num_classes * v
        if topology.attention_gates:
            total += 3 * f * v
    return total


def training_memory_bytes(
    topology: NetworkTopology,
    patch_size,
    batch_size: int,
    in_channels: int,
    num_classes: int,
    bytes_per_element: int = 2,
) -> int:
    """Estimated activation bytes of one training step (mixed precision by default)."""
    return batch_size * feature_map_elements(topology, patch_size, in_channels, num_classes) * bytes_per_element


def inference_memory_bytes(
    topology: NetworkTopology,
    patch_size,
    batch_size: int,
    in_channels: int,
    num_classes: int,
    bytes_per_element: int = 4,
) -> int:
    """Estimated peak activation bytes of one forward pass without gradients (float32 by default).

    Nothing is kept for a backward pass: the peak holds the input, every encoder stage's output
    (the skip connections wait for the decoder), the working tensors of the widest stage
    (upsampled input, concatenation, two convolution outputs: 5 feature maps) and the logits
    plus their mirrored-average buffer.
    """
    shape = np.asarray(patch_size, dtype=np.int64)
    voxels = int(np.prod(shape))
    stage_elements = []
    for stride, features in zip(topology.strides, topology.features_per_stage):
        shape = shape // np.asarray(stride, dtype=np.int64)
        stage_elements.append(int(features) * int(np.prod(shape)))
    elements = in_channels * voxels + sum(stage_elements) + 5 * max(stage_elements) + 2 * num_classes * voxels
    return int(batch_size) * elements * bytes_per_element
