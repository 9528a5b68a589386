"""Registries of networks, normalisations and non-linearities, looked up by name.

Plans and checkpoints store names (``"unet"``, ``"instance"``, ``"leaky_relu"``), never import
paths, so a model folder from elsewhere can only select code that segforge registered itself.
Unknown names answer with the closest registered ones.
"""

from __future__ import annotations

import difflib
from typing import Callable, Mapping, TypeVar

from segforge.errors import InputError

__all__ = ["NETWORKS", "register_network", "look_up", "build_network", "check_buildable"]

T = TypeVar("T")

# name -> constructor(topology, dims, in_channels, num_classes) -> nn.Module
NETWORKS: dict[str, Callable] = {}


def register_network(name: str) -> Callable[[T], T]:
    """Class/function decorator adding a network constructor to :data:`NETWORKS` under ``name``."""

    def add(constructor: T) -> T:
        if name in NETWORKS:
            raise ValueError(f"network name {name!r} is registered twice")
        NETWORKS[name] = constructor
        return constructor

    return add


def look_up(name: str, options: Mapping[str, T], what: str) -> T:
    """``options[name]``, or an :class:`InputError` naming the closest options ("did you mean ...")."""
    if name in options:
        return options[name]
    close = difflib.get_close_matches(str(name), list(options), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise InputError(f"unknown {what} {name!r}; {hint}known: {', '.join(sorted(options))}")


def build_network(configuration, in_channels: int, num_classes: int, name: str = "unet"):
    """The registered network ``name`` built from ``configuration.network`` and ``configuration.dims``.

    ``configuration`` is a :class:`segforge.planning.plans.Configuration`; the network maps
    ``(B, in_channels, *patch)`` to logits ``(B, num_classes, *patch)`` (a list of them, full
    resolution first, in training mode with deep supervision).
    """
    constructor = look_up(name, NETWORKS, "network")
    return constructor(configuration.network, configuration.dims, in_channels, num_classes)


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
