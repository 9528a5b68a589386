"""Smoke tests over every registered network and every topology variant, plus shape checks."""

import itertools

import pytest
import torch

from segforge.errors import InputError
from segforge.networks import NETWORKS, build_network, deep_supervision_scales

GEOMETRIES = ["2d", "3d_iso", "3d_aniso"]  # see conftest.py

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "name, geometry, block, attention, deep_supervision",
    # "unet" honours the block and attention flags; the other families impose theirs
    list(itertools.product(["unet"], GEOMETRIES, ["plain", "residual"], [False, True], [False, True]))
    + list(itertools.product(sorted(set(NETWORKS) - {"unet"}), GEOMETRIES, ["plain"], [False], [False, True])),
)
def test_every_network_trains_and_predicts(name, geometry, block, attention, deep_supervision,
                                          make_configuration):
    torch.manual_seed(0)
    conf = make_configuration(geometry, block=block, attention_gates=attention, deep_supervision=deep_supervision,
                              name=name)
    net = build_network(conf, in_channels=2, num_classes=3)
    patch = conf.patch_size
    x = torch.randn(2, 2, *patch)

    net.train()
    out = net(x)
    scales = deep_supervision_scales(conf.network)
    if deep_supervision:
        assert isinstance(out, list) and len(out) == len(scales) == 2
        for logits, factors in zip(out, scales):
            assert list(logits.shape) == [2, 3] + [p // f for p, f in zip(patch, factors)]
        loss = sum(o.square().mean() for o in out)
    else:
        assert isinstance(out, torch.Tensor) and list(out.shape) == [2, 3, *patch]
        loss = out.square().mean()
    loss.backward()
    first_conv = next(p for p in net.parameters() if p.ndim == len(patch) + 2)
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0

    net.eval()
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, torch.Tensor) and list(out.shape) == [2, 3, *patch]


def test_input_not_divisible_says_what_to_do(make_configuration):
    net = build_network(make_configuration("3d_aniso"), 1, 2)
    with pytest.raises(ValueError, match=r"not divisible by the product of the network's strides \[2, 4, 4\]"):
        net(torch.randn(1, 1, 4, 16, 18))


@pytest.mark.parametrize("training", [True, False])
def test_single_voxel_bottleneck_is_refused_with_instance_norm(make_configuration, training):
    net = build_network(make_configuration("2d", deep_supervision=False), 1, 2).train(training)
    with pytest.raises(ValueError, match=r"single voxel at the bottleneck.*at least twice \[4, 4\]"):
        net(torch.randn(1, 1, 4, 4))


def test_wrong_number_of_axes_is_rejected(make_configuration):
    net = build_network(make_configuration("2d"), 1, 2)
    with pytest.raises(ValueError, match=r"expected input \(B, C, y, x\)"):
        net(torch.randn(1, 1, 4, 16, 16))


def test_topology_with_wrong_axis_count_names_the_field(make_configuration):
    conf = make_configuration("3d_iso")
    conf.network.kernel_sizes[1] = [3, 3]
    with pytest.raises(ValueError, match=r"kernel_sizes\[1\] must have one value per axis \(3"):
        build_network(conf, 1, 2)


def test_first_stride_must_be_ones(make_configuration):
    conf = make_configuration("3d_iso")
    conf.network.strides[0] = [1, 2, 2]
    with pytest.raises(ValueError, match=r"strides\[0\] must be all ones"):
        build_network(conf, 1, 2)


@pytest.mark.parametrize("field, value, suggestion", [
    ("norm", "instnce", "instance"), ("nonlin", "leakyrelu", "leaky_relu"), ("block", "residul", "residual")])
def test_unknown_component_names_answer_did_you_mean(field, value, suggestion, make_configuration):
    conf = make_configuration("2d", **{field: value})
    with pytest.raises(InputError, match=f"did you mean '{suggestion}'"):
        build_network(conf, 1, 2)


@pytest.mark.parametrize("norm", ["instance", "batch", "group"])
def test_every_normalisation_builds(norm, make_configuration):
    net = build_network(make_configuration("2d", norm=norm, deep_supervision=False), 1, 2)
    assert list(net(torch.randn(2, 1, 16, 16)).shape) == [2, 2, 16, 16]


def test_channels_last_3d_input_gives_same_result(make_configuration):
    torch.manual_seed(0)
    net = build_network(make_configuration("3d_aniso", attention_gates=True, block="residual"), 1, 2).eval()
    x = torch.randn(1, 1, 4, 16, 16)
    with torch.no_grad():
        expected = net(x)
        got = net.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_deep_supervision_scales_follow_the_strides(make_configuration):
    conf = make_configuration("3d_aniso")
    assert deep_supervision_scales(conf.network) == [[1, 1, 1], [1, 2, 2]]
    conf.network.deep_supervision = False
    assert deep_supervision_scales(conf.network) == [[1, 1, 1]]


def test_n_conv_per_stage_accepts_one_per_stage_and_checks_length(make_configuration):
    net = build_network(make_configuration("2d", n_conv_per_stage=[1, 2, 3]), 1, 2)
    assert len(net.encoder[2]) == 3
    with pytest.raises(ValueError, match=r"n_conv_per_stage needs one value or one per stage \(3\)"):
        build_network(make_configuration("2d", n_conv_per_stage=[1, 2]), 1, 2)


@pytest.mark.parametrize("geometry", ["2d", "3d_aniso"])
def test_instance_norm_without_gradients_gives_the_training_path_numbers(make_configuration, geometry):
    """The no-gradient fast path (group norm, one group per channel) equals the stock instance norm."""
    from segforge.networks import build_network, to_device_layout

    torch.manual_seed(0)
    configuration = make_configuration(geometry)
    net = to_device_layout(build_network(configuration, 2, 3), "cpu").eval()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.instancenorm._InstanceNorm):
            torch.nn.init.normal_(module.weight)
            torch.nn.init.normal_(module.bias)
    x = torch.randn(2, 2, *[2 * p for p in configuration.patch_size]) * 3 + 1
    with_grad = net(x)
    with torch.inference_mode():
        fast = net(x)
    torch.testing.assert_close(fast, with_grad.detach(), rtol=1e-4, atol=1e-4)
