"""The dynamic U-Net built from a plan's topology, its registry, and its memory estimate."""

from segforge.networks.layout import to_device_layout
from segforge.networks.memory import feature_map_elements, training_memory_bytes
from segforge.networks.registry import NETWORKS, build_network, look_up, register_network
from segforge.networks.unet import UNet, deep_supervision_scales  # registers "unet"

__all__ = [
    "to_device_layout",
    "feature_map_elements",
    "training_memory_bytes",
    "NETWORKS",
    "build_network",
    "look_up",
    "register_network",
    "UNet",
    "deep_supervision_scales",
]
