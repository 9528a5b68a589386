"""Checkpoints that load with ``torch.load(weights_only=True)``, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts of those (see
docs/architecture.md, "Training results"). Random number generator states are stored as
plain lists and numbers so that no pickled object is needed to restore them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from segforge.errors import InputError
from segforge.io.atomic import temporary_path

__all__ = ["rng_states", "restore_rng_states", "save_checkpoint", "load_checkpoint", "CHECKPOINT_NAMES"]

CHECKPOINT_NAMES = ("latest", "best", "final")


def rng_states() -> dict:
    """Python, numpy and torch (CPU and CUDA) generator states as lists, ints and uint8 tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": {"version": int(version), "state": [int(v) for v in internal], "gauss": gauss},
        "numpy": {"kind": str(kind), "keys": [int(k) for k in keys], "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict) -> None:
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = states["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    with temporary_path(path) as tmp:
        torch.save(checkpoint, tmp)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load without unpickling code; a damaged or foreign file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for damaged or unsafe files
        raise InputError(f"cannot load checkpoint ({str(exc).splitlines()[0][:200]})", path) from None
    if not isinstance(checkpoint, dict) or "network_state" not in checkpoint:
        raise InputError("not a segforge checkpoint (no network_state)", path)
    return checkpoint
