"""The planner's memory estimate against the activations a real forward pass produces."""

import pytest
import torch
from torch import nn

from segforge.networks import build_network, feature_map_elements, training_memory_bytes

torch.set_num_threads(1)


def activation_elements(net: nn.Module, x: torch.Tensor) -> int:
    """Output elements of every leaf module in one forward pass (in training mode)."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        total += output.numel()

    leaves = [m for m in net.modules() if not list(m.children()) and not isinstance(m, nn.Identity)]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            net.train()(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def measure(make_configuration, geometry="3d_iso", patch=None, features=(4, 8, 16), **options):
    conf = make_configuration(geometry, features=features, **options)
    patch = list(patch or conf.patch_size)
    net = build_network(conf, 1, 3)
    estimate = feature_map_elements(conf.network, patch, 1, 3)
    return estimate, activation_elements(net, torch.randn(1, 1, *patch))


@pytest.mark.parametrize("geometry, patch", [("2d", [32, 32]), ("3d_iso", [16, 16, 16]), ("3d_aniso", [8, 32, 32])])
@pytest.mark.parametrize("block", ["plain", "residual"])
@pytest.mark.parametrize("attention", [False, True])
def test_estimate_is_within_a_factor_two_of_the_activations(make_configuration, geometry, patch, block, attention):
    estimate, actual = measure(make_configuration, geometry, patch, block=block, attention_gates=attention)
    assert 0.5 < estimate / actual < 2, (estimate, actual)


@pytest.mark.parametrize("variants", [
    [dict(patch=[8, 8, 8]), dict(patch=[8, 16, 16]), dict(patch=[16, 16, 16]), dict(patch=[16, 32, 32])],
    [dict(features=(2, 4, 8)), dict(features=(4, 8, 16)), dict(features=(8, 16, 32))],
    [dict(n_conv_per_stage=1), dict(n_conv_per_stage=2), dict(n_conv_per_stage=3)],
    [dict(), dict(attention_gates=True)],
    [dict(), dict(block="residual")],
], ids=["patch", "features", "convs", "attention", "residual"])
def test_estimate_grows_when_the_activations_grow(make_configuration, variants):
    pairs = [measure(make_configuration, **v) for v in variants]
    estimates, actuals = zip(*pairs)
    assert list(actuals) == sorted(set(actuals)), "variants must be listed in increasing size"
    assert list(estimates) == sorted(set(estimates)), pairs


def test_training_bytes_scale_with_batch_and_precision(make_configuration):
    topology = make_configuration("3d_iso").network
    one = training_memory_bytes(topology, [16, 16, 16], 1, 1, 3)
    assert one == 2 * feature_map_elements(topology, [16, 16, 16], 1, 3)
    assert training_memory_bytes(topology, [16, 16, 16], 4, 1, 3, bytes_per_element=4) == 8 * one
