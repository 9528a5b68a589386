"""U-Net topology from a spacing and a patch size.

Pooling follows the voxel spacing: an axis is pooled (stride 2) at a stage while

* its feature map stays at least ``MIN_FEATURE_MAP`` voxels after pooling,
* its current spacing is at most ``2x`` the finest current spacing among the axes that
  can still be pooled (a coarse axis of anisotropic data starts pooling later, once the
  fine axes have caught up), and
* it has been pooled fewer than ``MAX_POOLS_PER_AXIS`` times.

Convolution kernels are 3 on an axis whose current spacing is at most ``2x`` the finest
(1 otherwise: a 3-voxel kernel across thick slices mixes unrelated anatomy); once 3, an
axis keeps 3. Features start at ``base_features`` (32 by default; the patch-size rule
narrows it for small memory budgets) and double per stage up to 320.

Every patch edge must be divisible by ``2 ** pools`` on that axis so the decoder's shapes
match the encoder's, and is kept a multiple of 16 (:func:`patch_divisor`).
"""

from __future__ import annotations

import math

from segforge.networks.topology import NetworkTopology

__all__ = [
    "MIN_FEATURE_MAP",
    "MAX_POOLS_PER_AXIS",
    "BASE_FEATURES",
    "MAX_FEATURES",
    "PATCH_MULTIPLE",
    "pool_plan",
    "pools_per_axis",
    "build_topology",
    "patch_divisor",
    "round_up_patch",
    "fit_topology",
    "describe_topology",
]

MIN_FEATURE_MAP = 4
MAX_POOLS_PER_AXIS = 5
BASE_FEATURES = 32
MAX_FEATURES = 320
PATCH_MULTIPLE = 16
_SPACING_RATIO = 2.0


def pool_plan(spacing, patch_size, max_pools=None) -> tuple[list[list[int]], list[list[int]]]:
    """Kernels and strides per stage for ``patch_size`` at ``spacing`` (same axis order).

    ``max_pools`` (one per axis) lowers the per-axis pooling limit. Returns
    ``(kernel_sizes, strides)``, one entry per stage, ``strides[0]`` all ones.
    """
    dims = len(patch_size)
    if len(spacing) != dims:
        raise ValueError(f"spacing has {len(spacing)} axes but the patch size has {dims}")
    limit = [MAX_POOLS_PER_AXIS] * dims if max_pools is None else [min(MAX_POOLS_PER_AXIS, m) for m in max_pools]
    current_spacing = [float(s) for s in spacing]
    size = [int(p) for p in patch_size]
    pools = [0] * dims
    kernel_is_3 = [False] * dims
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * dims]
    while True:
        finest = min(current_spacing)
        for i in range(dims):
            kernel_is_3[i] = kernel_is_3[i] or current_spacing[i] <= _SPACING_RATIO * finest
        kernels.append([3 if k else 1 for k in kernel_is_3])
        can_pool = [size[i] // 2 >= MIN_FEATURE_MAP and pools[i] < limit[i] for i in range(dims)]
        if not any(can_pool):
            break
        finest_poolable = min(current_spacing[i] for i in range(dims) if can_pool[i])
        pool_now = [can_pool[i] and current_spacing[i] <= _SPACING_RATIO * finest_poolable for i in range(dims)]
        stride = [2 if p else 1 for p in pool_now]
        for i in range(dims):
            if pool_now[i]:
                pools[i] += 1
                size[i] //= 2
                current_spacing[i] *= 2
        strides.append(stride)
    return kernels, strides


def build_topology(
    spacing, patch_size, max_pools=None, base_features: int = BASE_FEATURES, **network_options
) -> NetworkTopology:
    """:class:`NetworkTopology` for the patch; ``network_options`` go to the dataclass."""
    kernels, strides = pool_plan(spacing, patch_size, max_pools)
    features = [min(base_features * 2**i, MAX_FEATURES) for i in range(len(strides))]
    return NetworkTopology(features_per_stage=features, kernel_sizes=kernels, strides=strides, **network_options)


def pools_per_axis(topology: NetworkTopology) -> list[int]:
    dims = len(topology.strides[0])
    return [sum(1 for s in topology.strides if s[i] == 2) for i in range(dims)]


def patch_divisor(pools: int) -> int:
    """An edge pooled ``pools`` times must be a multiple of this: ``max(16, 2 ** pools)``."""
    return max(PATCH_MULTIPLE, 2**pools)


def round_up_patch(patch_size, divisors=None) -> list[int]:
    """Round each edge up to its divisor (16 when not given)."""
    divisors = divisors or [PATCH_MULTIPLE] * len(patch_size)
    return [int(math.ceil(p / d) * d) for p, d in zip(patch_size, divisors)]


def _two_adic(n: int) -> int:
    """How many times 2 divides ``n`` (``n > 0``)."""
    return (n & -n).bit_length() - 1


def fit_topology(
    spacing, patch_size, round_up: bool = True, base_features: int = BASE_FEATURES, **network_options
) -> tuple[list[int], NetworkTopology]:
    """Patch and topology that obey the divisibility rule.

    ``round_up=True`` (planning): edges are rounded up until each is a multiple of
    ``max(16, 2 ** pools)`` for the pools that patch then gets (rounding up can add a
    pool, so this repeats until stable). ``round_up=False`` (a user's patch, kept as
    given): each axis pools at most as often as 2 divides its edge.
    """
    patch = [int(p) for p in patch_size]
    if not round_up:
        topology = build_topology(
            spacing, patch, max_pools=[_two_adic(p) for p in patch], base_features=base_features, **network_options
        )
        return patch, topology
    patch = round_up_patch(patch)
    for _ in range(8):
        topology = build_topology(spacing, patch, base_features=base_features, **network_options)
        rounded = round_up_patch(patch, [patch_divisor(p) for p in pools_per_axis(topology)])
        if rounded == patch:
            return patch, topology
        patch = rounded
    raise RuntimeError(f"patch size did not settle: {patch}")  # cannot happen: pools are bounded


def describe_topology(topology: NetworkTopology, spacing) -> str:
    """One line: stages, pools per axis, and which axes start with kernel 1."""
    pools = pools_per_axis(topology)
    first = topology.kernel_sizes[0]
    flat = [i for i, k in enumerate(first) if k == 1]
    text = (
        f"{topology.n_stages} stages, pools per axis {pools} (feature map >= {MIN_FEATURE_MAP}, "
        f"<= {MAX_POOLS_PER_AXIS} pools, axis pooled while its spacing <= {_SPACING_RATIO:g}x the finest), "
        f"features {topology.features_per_stage[0]}->{topology.features_per_stage[-1]}"
    )
    if flat:
        text += f"; kernel 1 on axis {flat} at first (spacing {[round(float(s), 3) for s in spacing]})"
    return text
