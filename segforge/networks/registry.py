"""Registries of networks, normalisations and non-linearities, looked up by name.

Plans and checkpoints store names (``"unet"``, ``"instance"``, ``"leaky_relu"``), never import
paths, so a model folder from elsewhere can only select code that segforge registered itself.
Unknown names answer with the closest registered ones.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

from segforge.errors import InputError
from segforge.networks.topology import NETWORK_FAMILIES
from segforge.networks.unet import UNet
from segforge.registry import look_up

__all__ = ["NETWORKS", "register_network", "look_up", "build_network", "check_buildable"]

T = TypeVar("T")



def _family(name: str) -> Callable:
    """A U-Net whose block and attention gates are those ``NETWORK_FAMILIES[name]`` implies."""
    options = NETWORK_FAMILIES[name]["options"]

    def build(topology, dims: int, in_channels: int, num_classes: int):
        return UNet(dataclasses.replace(topology, **options), dims, in_channels, num_classes)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = NETWORK_FAMILIES[name]["what"]
    return build


# name -> constructor(topology, dims, in_channels, num_classes) -> nn.Module. "unet" honours the
# topology's block and attention flags as written in plans.json; the other families impose theirs.
NETWORKS: dict[str, Callable] = {"unet": UNet, **{n: _family(n) for n in NETWORK_FAMILIES if n != "unet"}}


def register_network(name: str) -> Callable[[T], T]:
    """Class/function decorator adding a network constructor to :data:`NETWORKS` under ``name``."""

    def add(constructor: T) -> T:
        if name in NETWORKS:
            raise ValueError(f"network name {name!r} is registered twice")
        NETWORKS[name] = constructor
        return constructor

    return add


def build_network(configuration, in_channels: int, num_classes: int):
    """The network the plans name (``configuration.network.name``), built from ``configuration.network``
    and ``configuration.dims``.

    ``configuration`` is a :class:`segforge.planning.plans.Configuration`; ``in_channels`` the
    image's channels. The network maps ``(B, in_channels * input_slices, *patch)`` (``input_slices``
    adjacent slices stacked, for ``2.5d``; 1 otherwise) to logits ``(B, num_classes, *patch)`` (a
    list of them, full resolution first, in training mode with deep supervision).
    """
    constructor = look_up(configuration.network.name, NETWORKS, "network")
    stacked = in_channels * int(getattr(configuration, "input_slices", 1))  # 2.5d: every channel of k slices
    return constructor(configuration.network, configuration.dims, stacked, num_classes)


def check_buildable(plans, path) -> None:
    """Build every configuration's network of ``plans`` on the meta device (no memory used), so an
    unknown name in ``plans.json`` ("instanse") is reported naming that file, before any work."""
    import torch

    for configuration in plans.configurations.values():
        classes = plans.num_classes
        try:
            with torch.device("meta"):
                build_network(configuration, plans.num_channels, classes)
        except InputError as exc:
            raise InputError(f"configuration {configuration.name!r}: {exc}", path) from None
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise InputError(f"configuration {configuration.name!r}: network cannot be built from these settings "
                             f"({type(exc).__name__}: {exc})", path) from None
