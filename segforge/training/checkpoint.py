"""Checkpoints that load with ``torch.load(weights_only=True)``, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts of those (see
docs/architecture.md, "Training results"). Random number generator states are stored as
plain lists and numbers so that no pickled object is needed to restore them.
"""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path

import numpy as np
import torch

from segforge.errors import InputError
from segforge.io.atomic import temporary_path

__all__ = [
    "rng_states", "restore_rng_states", "save_checkpoint", "load_checkpoint", "check_network_state", "CHECKPOINT_NAMES",
]

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
    """``torch.save`` to a temporary name in the same folder, fsync, check the archive, rename over ``path``."""
    with temporary_path(path, _check_archive) as tmp:
        torch.save(checkpoint, tmp)


def _check_archive(path: Path) -> None:
    """A ``torch.save`` file is a zip archive: every member's CRC is read back."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"checkpoint archive does not read back ({exc})") from None
    if bad is not None:
        raise InputError(f"checkpoint archive member {bad} does not read back")


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
    check_network_state(checkpoint["network_state"], path)
    return checkpoint


def check_network_state(state, path) -> None:
    """Refuse a ``network_state`` that is not a mapping of names to tensors, or holds NaN/inf weights."""
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        kind = type(state).__name__ if not isinstance(state, dict) else "a mapping with non-tensor values"
        raise InputError(f"checkpoint is damaged: network_state is {kind}, not a mapping of weight names to "
                         "tensors", path)
    bad = [(name, int((~torch.isfinite(t)).sum())) for name, t in state.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        total = sum(n for _, n in bad)
        raise InputError(f"checkpoint holds {total} NaN/infinite weights in {len(bad)} tensor(s) (first: {bad[0][0]}): "
                         "the model is damaged (a diverged training run or a corrupted file); use another checkpoint "
                         "or train again", path)
