"""Looking a registered name up, with "did you mean" for a near miss.

Pluggable parts (networks, normalisations, optimisers, training steps, predictors) live in
plain ``dict`` registries keyed by name; plans and checkpoints store those names, never
import paths, so a model folder from elsewhere can only select code segforge registered.
"""

from __future__ import annotations

import difflib
from typing import Mapping, TypeVar

from segforge.errors import InputError

__all__ = ["look_up"]

T = TypeVar("T")


def look_up(name: str, options: Mapping[str, T], what: str) -> T:
    """``options[name]``, or an :class:`InputError` naming the closest options ("did you mean ...")."""
    if name in options:
        return options[name]
    close = difflib.get_close_matches(str(name), list(options), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise InputError(f"unknown {what} {name!r}; {hint}known: {', '.join(sorted(options))}")
