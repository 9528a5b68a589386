"""Intensity normalisation per input channel.

* CT (Hounsfield units mean the same in every scan): clip to the 0.5/99.5 percentiles of
  the foreground voxels pooled over the dataset, then z-score with their mean and std.
* Anything else (MR, ...; arbitrary units per scan): z-score per image, and only inside
  the non-zero mask when cropping to non-zero removed more than 25 % of the median image
  (the zero background is then large and would dominate the statistics).
"""

from __future__ import annotations

from segforge.errors import InputError
from segforge.planning.dataset_stats import summary
from segforge.planning.plans import ChannelNormalization

__all__ = ["NONZERO_FRACTION_THRESHOLD", "channel_normalizations"]

NONZERO_FRACTION_THRESHOLD = 0.25


def channel_normalizations(fingerprint: dict) -> list[ChannelNormalization]:
    """One :class:`ChannelNormalization` per channel of ``fingerprint["channel_names"]``."""
    removed = float(summary(fingerprint).get("median_nonzero_fraction_removed", 0.0))
    pooled = fingerprint.get("intensity") or []
    result = []
    for key in sorted(fingerprint["channel_names"], key=int):
        modality = str(fingerprint["channel_names"][key])
        channel = int(key)
        if modality.strip().upper() == "CT":
            if channel >= len(pooled):
                raise InputError(f"fingerprint has no pooled intensity statistics for CT channel {channel}; re-extract it")
            st = pooled[channel]
            lower, upper = float(st["p00_5"]), float(st["p99_5"])
            mean, std = float(st["mean"]), max(float(st["std"]), 1e-8)
            result.append(
                ChannelNormalization(
                    scheme="ct",
                    mean=mean,
                    std=std,
                    lower=lower,
                    upper=upper,
                    why=(
                        f"channel {channel} is CT -> clip to dataset foreground p0.5/p99.5 [{lower:.1f}, {upper:.1f}], "
                        f"z-score with foreground mean {mean:.1f} / std {std:.1f}"
                    ),
                )
            )
        elif removed > NONZERO_FRACTION_THRESHOLD:
            result.append(
                ChannelNormalization(
                    scheme="zscore_nonzero",
                    why=(
                        f"channel {channel} is {modality} (not CT) -> per-image z-score; cropping removed "
                        f"{removed:.0%} > {NONZERO_FRACTION_THRESHOLD:.0%} of the median image -> inside the non-zero mask"
                    ),
                )
            )
        else:
            result.append(
                ChannelNormalization(
                    scheme="zscore",
                    why=(
                        f"channel {channel} is {modality} (not CT) -> per-image z-score; cropping removed "
                        f"{removed:.0%} <= {NONZERO_FRACTION_THRESHOLD:.0%} -> over the whole image"
                    ),
                )
            )
    return result
