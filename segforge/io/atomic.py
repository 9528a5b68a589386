"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader (or a resumed run) never sees a half-written file: either the old file, or the
complete new one. Temporary names start with ``.tmp-`` so a folder's leftovers are easy to
recognise and remove.
"""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["TMP_PREFIX", "temporary_path", "write_text_atomic", "write_json_atomic", "save_npy_atomic"]

TMP_PREFIX = ".tmp-"


@contextmanager
def temporary_path(path: str | os.PathLike):
    """Yield a temporary sibling of ``path``; on success it replaces ``path``, on error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{target.name}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with temporary_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, data, indent: int = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Uncompressed ``.npy`` (memory-mappable), never pickled."""
    with temporary_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)
