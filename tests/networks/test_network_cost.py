"""The FLOPs of a training step, from the topology: by hand, and against torch's FLOP counter on the meta device."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from segforge.networks.cost import conv_layers, elementwise_elements, training_flops
from segforge.networks.unet import UNet
from segforge.planning.plans import NetworkTopology
from segforge.planning.topology_rule import fit_topology


def _counted(topology, patch, batch, in_channels, num_classes) -> int:
    with torch.device("meta"):
        net = UNet(topology, len(patch), in_channels, num_classes)
        x = torch.zeros(batch, in_channels, *patch)
    counter = FlopCounterMode(display=False)
    with counter:
        outputs = net(x)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        sum(o.sum() for o in outputs).backward()
    return counter.get_total_flops()


def test_two_stage_2d_network_by_hand():
    topology = NetworkTopology(features_per_stage=[4, 8], kernel_sizes=[[3, 3], [3, 3]], strides=[[1, 1], [2, 2]])
    # per sample, forward x 3 (x 2 for the first conv: the image needs no gradient):
    # enc 1->4 on 64 px: 4608 x 2; 4->4: 18432 x 3; 4->8 on 16 px: 9216 x 3; 8->8: 18432 x 3;
    # upsample 8->4 (2x2 kernel on 16 px): 4096 x 3; dec 8->4 on 64 px: 36864 x 3; 4->4: 18432 x 3; head 4->2: 1024 x 3
    per_sample = 9216 + 55296 + 27648 + 55296 + 12288 + 110592 + 55296 + 3072
    assert training_flops(topology, [8, 8], 2, 1, 2) == 2 * per_sample
    assert _counted(topology, [8, 8], 2, 1, 2) == 2 * per_sample
    # normalised conv outputs 4x64 + 4x64 + 8x16 + 8x16 + 4x64 + 4x64, and the head's 2x64
    assert elementwise_elements(topology, [8, 8], 2, 1, 2) == 2 * 1408
    assert [layer.role for layer in conv_layers(topology, [8, 8], 1, 2)] == [
        "conv", "conv", "conv", "conv", "upsample", "conv", "conv", "head"]


@pytest.mark.parametrize("spacing, patch, options", [
    ([1.0, 1.0, 1.0], [16, 32, 48], {}),
    ([3.0, 0.7, 0.7], [16, 64, 64], {}),
    ([1.0, 1.0, 1.0], [16, 16, 32], {"block": "residual"}),
    ([1.0, 1.0, 1.0], [16, 16, 32], {"attention_gates": True}),
    ([1.0, 1.0, 1.0], [16, 16, 32], {"deep_supervision": False}),
    ([1.0, 1.0], [64, 96], {}),
])
def test_matches_torch_flop_counter(spacing, patch, options):
    patch, topology = fit_topology(spacing, patch, base_features=4, **options)
    assert training_flops(topology, patch, 2, 2, 3) == _counted(topology, patch, 2, 2, 3)
