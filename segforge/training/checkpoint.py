"""Random number generator states as plain values, for a training checkpoint.

Python, numpy and torch (CPU and CUDA) generator states are stored as lists, numbers and
uint8 tensors, so a ``weights_only`` checkpoint restores them without unpickling anything.
Saving and loading the file itself: :mod:`segforge.io.checkpoint` (re-exported here).
"""

from __future__ import annotations

import random

import numpy as np
import torch

from segforge.io.checkpoint import check_network_state, load_checkpoint, save_checkpoint

__all__ = ["rng_states", "restore_rng_states", "save_checkpoint", "load_checkpoint", "check_network_state"]


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
    """Put back what :func:`rng_states` returned (states loaded on the CPU, as they must be)."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = states["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        cuda = states["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
