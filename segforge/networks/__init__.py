"""The dynamic U-Net built from a plan's topology, its registry, and its memory estimate.

Names are imported on first use (PEP 562): the plans and the planner import
:class:`NetworkTopology` and the memory estimate without paying for torch.
"""

from importlib import import_module

_WHERE = {
    "NetworkTopology": "topology",
    "to_device_layout": "layout",
    "feature_map_elements": "memory",
    "training_memory_bytes": "memory",
    "NETWORKS": "registry",
    "build_network": "registry",
    "look_up": "registry",
    "register_network": "registry",
    "UNet": "unet",
    "deep_supervision_scales": "unet",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'segforge.networks' has no attribute {name!r}")
    value = getattr(import_module(f"segforge.networks.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
