"""The readable line of a SimpleITK/ITK error, for the one-line messages of the image and DICOM readers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["first_line"]


def first_line(exc: Exception, path: Path | None = None) -> str:
    """The line of a (multi-line) SimpleITK/ITK error that says what went wrong, with the path shortened."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with a file/line location; the last line says what went wrong
    text = lines[-1][:200] if lines else type(exc).__name__
    # the message is prefixed with the path already; inside it the file name is enough
    return text.replace(str(path), Path(path).name) if path is not None else text
