"""What a user may impose on the planner; each imposed value is recorded with why "user override".

* ``spacing`` ``(z, y, x)`` mm: the target spacing of ``3d_fullres``, ``2d`` (its slice
  grid) and ``cascade_fullres`` (the locator keeps its own coarse spacing).
* ``patch_size``: 3 edges for the 3D segmentation configurations (``3d_fullres``,
  ``cascade_fullres``), 2 for ``2d`` and ``2.5d``; each a multiple of 16; the topology pools an axis at
  most as often as 2 divides its edge.
* ``batch_size``: every segmentation configuration (not the locator).
* ``default_configuration``: what ``segforge_train ID FOLD`` trains; naming
  ``cascade_fullres`` or ``locator`` plans the cascade even where the planner would not.
* ``network``: the network of the segmentation configurations, a name of
  :data:`segforge.networks.topology.NETWORK_FAMILIES` (``unet``, ``attention_unet``,
  ``residual_unet``); the locator keeps the plain U-Net.
* ``labels``: names of the labels (or regions) to train on; the others become background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from segforge.errors import InputError
from segforge.planning.topology_rule import PATCH_MULTIPLE

__all__ = ["PlanOverrides", "USER_OVERRIDE", "CONFIGURATION_NAMES"]

USER_OVERRIDE = "user override"
CONFIGURATION_NAMES = ("2d", "2.5d", "3d_fullres", "locator", "cascade_fullres")


@dataclass
class PlanOverrides:
    spacing: tuple[float, float, float] | None = None
    patch_size: tuple[int, ...] | None = None
    batch_size: int | None = None
    default_configuration: str | None = None
    network: str | None = None
    labels: tuple[str, ...] | None = None  # train on these labels (names); the others become background

    def __post_init__(self):
        if self.spacing is not None:
            if len(self.spacing) != 3 or not all(math.isfinite(float(s)) and float(s) > 0 for s in self.spacing):
                raise InputError(f"spacing override must be 3 positive numbers (z y x mm), got {list(self.spacing)}")
            self.spacing = tuple(float(s) for s in self.spacing)
        if self.patch_size is not None:
            if len(self.patch_size) not in (2, 3):
                raise InputError(
                    f"patch size override needs 3 edges (z y x) or 2 for 2d (y x), got {list(self.patch_size)}"
                )
            for edge in self.patch_size:
                if int(edge) != edge or edge <= 0 or int(edge) % PATCH_MULTIPLE:
                    up = max(PATCH_MULTIPLE, -(-int(edge) // PATCH_MULTIPLE) * PATCH_MULTIPLE)
                    raise InputError(
                        f"patch size edge {edge} is not a positive multiple of {PATCH_MULTIPLE}; use e.g. {up}"
                    )
            self.patch_size = tuple(int(e) for e in self.patch_size)
        if self.batch_size is not None and (int(self.batch_size) != self.batch_size or self.batch_size < 1):
            raise InputError(f"batch size override must be a positive integer, got {self.batch_size}")
        if self.default_configuration is not None and self.default_configuration not in CONFIGURATION_NAMES:
            raise InputError(
                f"default configuration {self.default_configuration!r} is unknown; "
                f"choose one of {', '.join(CONFIGURATION_NAMES)}{_did_you_mean(self.default_configuration)}"
            )

        if self.labels is not None:
            self.labels = tuple(str(n) for n in self.labels)
        if self.network is not None:
            from segforge.networks.topology import network_family_options

            network_family_options(self.network)  # "did you mean" for an unknown name

    @property
    def forces_cascade(self) -> bool:
        return self.default_configuration in ("locator", "cascade_fullres")


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, CONFIGURATION_NAMES, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
