"""Reading a JSON file segforge or its user wrote: one clear line naming the file when it is not JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

from segforge.errors import InputError

__all__ = ["read_json"]


def read_json(path: str | os.PathLike, missing_ok: bool = False, what: str | None = None):
    """The JSON value in ``path``; None when the file does not exist and ``missing_ok``.

    A file that is not JSON (or not text) is an :class:`InputError` naming it:
    ``"<what> is not valid JSON (...)"``, ``what`` defaulting to the file's name."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what or path.name} is not valid JSON ({exc})", path) from None
