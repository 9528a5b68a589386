"""Errors a user can act on.

Library code raises :class:`InputError` (one problem) or :class:`DatasetProblems` (a list,
one line each naming the file); the CLI prints them as one line each and exits with 2,
never with a traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "DatasetProblems"]


class InputError(Exception):
    """Bad input from the user: a message that names the file and says what is wrong."""

    def __init__(self, message: str, path: object | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class DatasetProblems(InputError):
    """Several problems found at once (for example by dataset verification)."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
