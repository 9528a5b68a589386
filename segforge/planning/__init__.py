"""Plans (typed, JSON round trip) and the planner's rules."""

from segforge.planning.plans import (
    CascadeSettings,
    ChannelNormalization,
    Configuration,
    LocatorSettings,
    NetworkTopology,
    Plans,
    ResamplingSettings,
)

__all__ = [
    "CascadeSettings",
    "ChannelNormalization",
    "Configuration",
    "LocatorSettings",
    "NetworkTopology",
    "Plans",
    "ResamplingSettings",
]
