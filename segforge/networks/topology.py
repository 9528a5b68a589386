"""The shape of a U-Net as plans store it: features, kernels and strides per stage.

It lives with the networks (not the plans) because the network is built from it and reports
its own memory cost from it (:mod:`segforge.networks.memory`), which the planner asks for;
the planner puts it into a :class:`~segforge.planning.plans.Configuration`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetworkTopology", "NETWORK_FAMILIES", "network_family_options"]

# The networks a plan can name (``segforge_plan_and_preprocess --network NAME``): the topology
# fields each one implies (the planner sizes the patch with them, so the memory estimate counts
# attention gates and residual sums) and what it is. The registry builds each by name.
NETWORK_FAMILIES: dict[str, dict] = {
    "unet": {"options": {"block": "plain", "attention_gates": False},
             "what": "the plain U-Net of nnU-Net (two convolutions per stage)"},
    "attention_unet": {"options": {"block": "plain", "attention_gates": True},
                       "what": "U-Net with additive attention gates on the skip connections (Oktay et al. 2018)"},
    "residual_unet": {"options": {"block": "residual", "attention_gates": False},
                      "what": "U-Net with a residual encoder (nnU-Net ResEnc-style blocks)"},
}


@dataclass
class NetworkTopology:
    """A network's shape. ``strides[0]`` is all ones; one kernel and stride per stage and axis.

    ``name`` is the registered network built from it (:data:`segforge.networks.registry.NETWORKS`).
    """

    features_per_stage: list[int]
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    n_conv_per_stage: int = 2
    norm: str = "instance"
    nonlin: str = "leaky_relu"
    block: str = "plain"  # "plain" or "residual" (residual encoder blocks)
    attention_gates: bool = False
    deep_supervision: bool = True
    name: str = "unet"

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)

    def __post_init__(self):
        n = len(self.features_per_stage)
        if len(self.kernel_sizes) != n or len(self.strides) != n:
            raise ValueError(
                f"NetworkTopology needs one kernel size and one stride per stage: {n} stages, "
                f"{len(self.kernel_sizes)} kernel sizes, {len(self.strides)} strides"
            )


def network_family_options(name: str) -> dict:
    """The :class:`NetworkTopology` fields network ``name`` implies, ``name`` included
    (an unknown name answers "did you mean")."""
    from segforge.registry import look_up

    return {**look_up(name, NETWORK_FAMILIES, "network")["options"], "name": name}
