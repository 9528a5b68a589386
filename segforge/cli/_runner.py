"""The one place where a command turns library errors into a line and an exit code."""

from __future__ import annotations

import sys
from typing import Callable

from segforge.errors import DatasetProblems, InputError

__all__ = ["run_command", "not_implemented"]


def run_command(prog: str, body: Callable[[], int | None]) -> int:
    """Run ``body``; user errors print ``prog: error: ...`` (one line each) and give 2."""
    try:
        code = body()
    except DatasetProblems as exc:
        for line in exc.problems:
            print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


def not_implemented(prog: str) -> int:
    print(f"{prog}: error: not implemented yet", file=sys.stderr)
    return 2
