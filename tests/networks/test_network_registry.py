"""Networks are looked up by name; unknown names answer "did you mean"."""

import pytest
import torch
from torch import nn

from segforge.errors import InputError
from segforge.networks import registry
from segforge.networks.registry import NETWORKS, build_network, look_up, register_network


def test_unet_is_registered():
    assert "unet" in NETWORKS


def test_unknown_network_name_answers_did_you_mean(make_configuration):
    with pytest.raises(InputError, match=r"unknown network 'unett'; did you mean 'unet'.*\? "
                                         r"known: attention_unet, residual_unet, unet"):
        build_network(make_configuration("2d", name="unett"), 1, 2)


def test_unrelated_name_lists_the_known_ones_without_a_guess():
    with pytest.raises(InputError, match=r"unknown colour 'zzz'; known: blue, red$"):
        look_up("zzz", {"red": 1, "blue": 2}, "colour")


def test_registered_constructor_gets_topology_dims_and_channels(monkeypatch, make_configuration):
    monkeypatch.setattr(registry, "NETWORKS", dict(NETWORKS))

    @register_network("one_by_one")
    class OneByOne(nn.Module):
        def __init__(self, topology, dims, in_channels, num_classes):
            super().__init__()
            self.conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(in_channels, num_classes, 1)

        def forward(self, x):
            return self.conv(x)

    net = build_network(make_configuration("2d", name="one_by_one"), 3, 5)
    assert isinstance(net, OneByOne)
    assert list(net(torch.zeros(1, 3, 4, 4)).shape) == [1, 5, 4, 4]
    with pytest.raises(ValueError, match="registered twice"):
        register_network("one_by_one")(OneByOne)
