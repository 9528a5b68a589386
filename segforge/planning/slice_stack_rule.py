"""How many adjacent slices the ``2.5d`` configuration stacks as input channels.

A ``2.5d`` network is the ``2d`` one fed, for the slice it predicts, that slice and its
neighbours (``k`` slices, ``k`` odd, the predicted slice in the middle) as input channels: the
in-plane network sees some depth at the cost of a wider first convolution only. ``k`` is 3 (one
neighbour on each side, the common choice and that of the seed script's ``--channel_3d``),
raised for thin slices so that the stack is as deep, in mm, as the ``3 x 3`` in-plane kernel is
wide: the smallest odd ``k >= 3 * s_inplane / s_z``, at most ``MAX_SLICES``, and never more
slices than the median image has.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_SLICES", "MAX_SLICES", "adjacent_slices"]

DEFAULT_SLICES = 3
MAX_SLICES = 7


def adjacent_slices(spacing, median_slices: int) -> tuple[int, str]:
    """``(k, why)`` for a grid of ``spacing`` ``(z, y, x)`` mm whose median image has ``median_slices`` slices."""
    z, inplane = float(spacing[0]), float(min(spacing[1], spacing[2]))
    needed = 3 * inplane / z
    k = max(DEFAULT_SLICES, 2 * math.ceil((needed - 1) / 2) + 1)
    why = (f"{DEFAULT_SLICES} slices (the predicted one and a neighbour on each side)" if k == DEFAULT_SLICES else
           f"{k} slices: the smallest odd stack as deep as the 3x3 in-plane kernel is wide "
           f"(3 x {inplane:g} mm / {z:g} mm slices = {needed:.2f})")
    if k > MAX_SLICES:
        k, why = MAX_SLICES, why + f", capped at {MAX_SLICES}"
    fits = max(1, median_slices if median_slices % 2 else median_slices - 1)
    if k > fits:
        k, why = fits, why + f"; {fits} (the median image has only {median_slices} slices)"
    return k, why
