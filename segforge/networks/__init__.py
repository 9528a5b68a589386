"""The dynamic U-Net built from a plan's topology, and its memory estimate."""

from segforge.networks.memory import feature_map_elements, training_memory_bytes

__all__ = ["feature_map_elements", "training_memory_bytes"]
