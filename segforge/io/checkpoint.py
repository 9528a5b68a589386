"""Checkpoint files: written atomically and checked, read without running code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts of those
(docs/architecture.md "Training results"). :func:`save_checkpoint` writes a temporary file,
reads the archive back, then renames it; :func:`load_checkpoint` reads it on the CPU with
``torch.load(weights_only=True)``, so a file from a stranger can hold no code, random number
generator states (CPU ``ByteTensor``\\ s) come back as CPU tensors whatever device the run
uses, and a damaged ``network_state`` (not tensors, or NaN/inf weights) is refused. Where the
files are and what they are called: :mod:`segforge.paths`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from segforge.errors import InputError
from segforge.io.atomic import temporary_path

__all__ = ["save_checkpoint", "load_checkpoint", "check_network_state", "plain_state_dict", "fold_plans_versions"]


def save_checkpoint(path: str | os.PathLike, checkpoint: dict) -> None:
    """``torch.save`` to a temporary name in the same folder, fsync, check the archive, rename over ``path``."""
    with temporary_path(path, _check_archive) as tmp:
        try:
            torch.save(checkpoint, tmp)
        except RuntimeError as exc:  # a full disk reads "basic_ios::clear: iostream error"
            raise OSError(None, f"torch.save: {str(exc).splitlines()[0][:200]}") from None


def _check_archive(path: Path) -> None:
    """A ``torch.save`` file is a zip archive: every member's CRC is read back."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"checkpoint archive does not read back ({exc})") from None
    if bad is not None:
        raise InputError(f"checkpoint archive member {bad} does not read back")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, on the CPU; a missing, damaged or foreign file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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


def plain_state_dict(state: dict) -> dict:
    """Keys without the prefixes ``torch.compile`` (``_orig_mod.``) and DDP (``module.``) add."""
    out = {}
    for key, value in state.items():
        while key.startswith(("_orig_mod.", "module.")):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def fold_plans_versions(model_folder: str | os.PathLike) -> dict[str, str | None]:
    """``{fold: plans_version}`` of the checkpoints in a model folder's ``fold_*`` folders (the
    newest of latest/final/best per fold; None where a checkpoint records no version or cannot
    be read). Tensors are memory-mapped, not read: only the version string is looked at."""
    versions: dict[str, str | None] = {}
    for fold_folder in sorted(Path(model_folder).glob("fold_*")):
        files = [p for p in (fold_folder / f"checkpoint_{w}.pt" for w in ("latest", "final", "best")) if p.is_file()]
        if not files:
            continue
        newest = max(files, key=lambda p: p.stat().st_mtime_ns)
        try:
            checkpoint = torch.load(newest, map_location="cpu", weights_only=True, mmap=True)
            version = checkpoint.get("plans_version") if isinstance(checkpoint, dict) else None
        except Exception:  # a damaged file is refused where it is loaded; here it records no version
            version = None
        versions[fold_folder.name[len("fold_"):]] = None if version is None else str(version)
    return versions
