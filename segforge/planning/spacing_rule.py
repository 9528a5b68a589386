"""Target spacing and how to resample to it.

* Target spacing: the median spacing of the cases. For strongly anisotropic data
  (max/min median spacing > ``ANISOTROPY_THRESHOLD``) the coarse axis takes the 10th
  percentile of its spacings instead (but never finer than the other axes' spacing), so
  thick-slice cases are not interpolated into many invented slices while the few
  thin-slice cases still lose little.
* Resampling: images with 3rd-order splines, labels by linear interpolation of their
  one-hot encoding; for anisotropic data the coarse axis is resampled on its own with
  order 0 (interpolating across thick slices invents anatomy).
"""

from __future__ import annotations

import numpy as np

from segforge.planning.dataset_stats import case_spacings, summary
from segforge.planning.plans import ResamplingSettings

__all__ = ["ANISOTROPY_THRESHOLD", "anisotropy", "target_spacing", "resampling_settings"]

ANISOTROPY_THRESHOLD = 3.0


def anisotropy(spacing) -> float:
    """max / min spacing."""
    s = np.asarray(spacing, dtype=float)
    return float(s.max() / s.min())


def target_spacing(fingerprint: dict) -> tuple[list[float], str]:
    """``(spacing (z, y, x) mm, why)``."""
    info = summary(fingerprint)
    median = np.asarray(info["median_spacing"], dtype=float)
    ratio = anisotropy(median)
    rounded = [round(float(s), 4) for s in median]
    if ratio <= ANISOTROPY_THRESHOLD:
        return rounded, f"median spacing {rounded} (anisotropy {ratio:.2f} <= {ANISOTROPY_THRESHOLD:g})"
    coarse = int(np.argmax(median))
    p10 = info.get("spacing_p10")
    if p10 is not None:
        coarse_p10 = float(p10[coarse])
    else:
        coarse_p10 = float(np.percentile(case_spacings(fingerprint)[:, coarse], 10))
    others = max(float(s) for i, s in enumerate(median) if i != coarse)
    chosen = max(coarse_p10, others)
    spacing = list(rounded)
    spacing[coarse] = round(chosen, 4)
    why = (
        f"median spacing {rounded}; anisotropy {ratio:.2f} > {ANISOTROPY_THRESHOLD:g} -> coarse axis {coarse} "
        f"takes its 10th percentile {coarse_p10:.4g} mm"
    )
    if chosen > coarse_p10:
        why += f", raised to the other axes' {others:.4g} mm"
    return spacing, why


def resampling_settings(source_spacing, spacing) -> ResamplingSettings:
    """Resampling from data at ``source_spacing`` (the dataset's median) to ``spacing``."""
    ratio = max(anisotropy(source_spacing), anisotropy(spacing))
    if ratio > ANISOTROPY_THRESHOLD:
        axis = int(np.argmax(np.asarray(spacing, dtype=float)))
        return ResamplingSettings(
            image_order=3,
            label_mode="linear_onehot",
            separate_axis=axis,
            separate_axis_order=0,
            why=(
                f"anisotropy {ratio:.2f} > {ANISOTROPY_THRESHOLD:g} -> axis {axis} resampled alone with order 0; "
                "in-plane: images order 3, labels linear on one-hot"
            ),
        )
    return ResamplingSettings(
        image_order=3,
        label_mode="linear_onehot",
        why=f"anisotropy {ratio:.2f} <= {ANISOTROPY_THRESHOLD:g} -> images order 3, labels linear on one-hot",
    )
