"""Patch size (and with it the topology) that fits the memory budget.

Memory budget: ``budget_bytes = ACTIVATION_FRACTION * gpu_memory_gb * 2**30``. The
estimate :func:`segforge.networks.training_memory_bytes` counts only the activations
kept for the backward pass (in half precision); the rest of the GPU holds weights,
optimiser state, cuDNN workspaces, the allocator's slack and the augmentation pipeline.
With ``ACTIVATION_FRACTION = 0.55`` a 10 GB GPU gives 5.5 GiB: nnU-Net's usual
128^3 patch with a 6-stage 32->320 U-Net at batch 2 is estimated at 5.0 GiB and fits,
while a 0.5 GB budget (0.275 GiB) gives a 4-stage network on a 48^3 patch, small enough
to train on a laptop CPU.

Patch: start from the median image shape at the target spacing (rounded up to the
divisibility rule), then shrink the axis that is largest relative to that median shape,
one divisor step at a time (re-deriving the topology after each step), until the
estimate for ``fit_batch`` samples fits the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from segforge.networks.memory import training_memory_bytes
from segforge.networks.topology import NetworkTopology
from segforge.planning.topology_rule import (
    PATCH_MULTIPLE,
    describe_topology,
    fit_topology,
    patch_divisor,
    pools_per_axis,
)

__all__ = ["ACTIVATION_FRACTION", "memory_budget_bytes", "base_features_for_budget", "fit_patch_to_memory", "PatchFit"]

ACTIVATION_FRACTION = 0.55
_GIB = 2**30


def memory_budget_bytes(gpu_memory_gb: float) -> int:
    """Bytes of training activations allowed on a GPU of ``gpu_memory_gb``."""
    if gpu_memory_gb <= 0:
        raise ValueError(f"gpu_memory_gb must be positive, got {gpu_memory_gb}")
    return int(ACTIVATION_FRACTION * gpu_memory_gb * _GIB)


@dataclass
class PatchFit:
    """Result of :func:`fit_patch_to_memory`; ``sample_bytes`` is the estimate for one sample."""

    patch_size: list[int]
    topology: NetworkTopology
    sample_bytes: int
    patch_why: str
    network_why: str


# (gpu_memory_gb at least, first-stage features): compute grows with features squared,
# memory only linearly, so a small budget (a CPU) also gets a narrower network.
_BASE_FEATURES_BY_BUDGET = ((4.0, 32), (1.0, 16), (0.0, 8))


def base_features_for_budget(budget_bytes: int) -> tuple[int, str]:
    """First-stage features for an activation budget, with the reason."""
    gb = budget_bytes / (ACTIVATION_FRACTION * _GIB)
    for at_least, features in _BASE_FEATURES_BY_BUDGET:
        if gb >= at_least - 1e-6:
            break
    if features == 32:
        return features, f"{gb:.3g} GB >= 4 GB: features start at 32 (GPU-sized, as nnU-Net)"
    below = 4.0 if features == 16 else 1.0
    return features, (
        f"{gb:.3g} GB < {below:g} GB: features start at {features} "
        "(compute grows with features squared: a small budget means a CPU or a small GPU)"
    )


def _sample_bytes(topology, patch, in_channels, num_classes) -> int:
    return training_memory_bytes(topology, patch, 1, in_channels, num_classes)


def fit_patch_to_memory(
    spacing,
    median_shape,
    budget_bytes: int,
    in_channels: int,
    num_classes: int,
    fit_batch: int = 2,
    start_patch=None,
    base_features: int | None = None,
    network_options: dict | None = None,
) -> PatchFit:
    """Largest patch (by the shrink rule) whose ``fit_batch``-sample estimate fits.

    ``spacing``, ``median_shape`` and ``start_patch`` (default: ``median_shape``) share
    one axis order, ``(z, y, x)`` or ``(y, x)``. ``network_options``: topology fields of the
    chosen network (:func:`segforge.networks.topology.network_family_options`), part of the estimate.
    """
    network_options = network_options or {}
    features_why = ""
    if base_features is None:
        base_features, features_why = base_features_for_budget(budget_bytes)
    median = np.maximum(np.asarray(median_shape, dtype=float), 1)
    start = list(start_patch) if start_patch is not None else [int(v) for v in median_shape]
    patch, topology = fit_topology(spacing, start, base_features=base_features, **network_options)
    initial = list(patch)
    steps = 0
    while fit_batch * _sample_bytes(topology, patch, in_channels, num_classes) > budget_bytes:
        pools = pools_per_axis(topology)
        relative = np.asarray(patch, dtype=float) / median
        shrinkable = [a for a in np.argsort(-relative, kind="stable") if patch[a] > PATCH_MULTIPLE]
        if not shrinkable:
            break
        axis = int(shrinkable[0])
        smaller = list(patch)
        smaller[axis] = max(PATCH_MULTIPLE, patch[axis] - patch_divisor(pools[axis]))
        new_patch, new_topology = fit_topology(spacing, smaller, base_features=base_features,
                                                   **network_options)
        if new_patch[axis] >= patch[axis]:  # rounding gave the step back: take a bigger one
            smaller[axis] = max(PATCH_MULTIPLE, patch[axis] - 2 * patch_divisor(pools[axis]))
            new_patch, new_topology = fit_topology(spacing, smaller, base_features=base_features,
                                                   **network_options)
        patch, topology = new_patch, new_topology
        steps += 1
    sample = _sample_bytes(topology, patch, in_channels, num_classes)
    need = fit_batch * sample / _GIB
    budget = budget_bytes / _GIB
    median_list = [int(v) for v in median_shape]
    if steps == 0:
        patch_why = (
            f"median shape {median_list} rounded up to the divisibility rule -> {patch}; "
            f"estimate for {fit_batch} samples {need:.2f} GiB fits the budget {budget:.2f} GiB"
        )
    else:
        patch_why = (
            f"median shape {median_list} -> {initial}, shrunk {steps} step(s) on the axis largest relative to the "
            f"median shape until the estimate for {fit_batch} samples, {need:.2f} GiB, fits the budget {budget:.2f} GiB"
        )
    if fit_batch * sample > budget_bytes:
        patch_why += f"; smallest patch still over budget ({need:.2f} GiB), kept at the minimum"
    patch_why += f"; edges multiples of {PATCH_MULTIPLE} and of 2^pools"
    network_why = describe_topology(topology, spacing) + (f" ({features_why})" if features_why else "")
    return PatchFit(patch, topology, sample, patch_why, network_why)
