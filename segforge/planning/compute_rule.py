"""What one training iteration of a planned network costs on a device (seconds).

``seconds = sum over convolutions of FLOPs / rate(width) + normalised elements / elementwise rate
+ layers x per-layer overhead``, with the FLOPs and elements of :mod:`segforge.networks.cost`
and the rates of the device's calibration (:mod:`segforge.planning.calibration`).
"""

from __future__ import annotations

from segforge.networks.cost import conv_layers, elementwise_elements, training_flops
from segforge.planning.device_profile import DeviceProfile

__all__ = ["iteration_seconds", "iteration_gflop"]


def iteration_gflop(configuration, in_channels: int, num_classes: int) -> float:
    c = configuration
    return training_flops(c.network, c.patch_size, c.batch_size, in_channels, num_classes) / 1e9


def iteration_seconds(configuration, profile: DeviceProfile, in_channels: int, num_classes: int) -> float:
    """Predicted seconds of one training step (forward, backward, optimiser) of ``configuration`` on ``profile``."""
    c = configuration
    dims = len(c.patch_size)
    layers = conv_layers(c.network, c.patch_size, in_channels, num_classes)
    conv = sum(c.batch_size * layer.training_flops / profile.conv_rate(layer.width, dims) for layer in layers)
    elements = elementwise_elements(c.network, c.patch_size, c.batch_size, in_channels, num_classes)
    return conv + elements / (profile.elementwise_gelems * 1e9) + len(layers) * profile.layer_overhead_s
