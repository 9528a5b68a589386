"""The one place where a command turns errors into a line and an exit code.

Exit codes (docs/reliability.md): 0 done; 1 the command ran, but some cases failed (each
named with its reason on stderr, the others done); 2 refused or stopped: bad arguments, bad
input, or a fault that stops the command (a full disk, a diverged training run) -- one line
per problem, ``prog: error: <file>: <what is wrong>``, never a traceback; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from segforge.errors import DatasetProblems, InputError

__all__ = ["CommandParser", "run_command", "not_implemented"]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ... (see prog -h)``) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


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
    except MemoryError:
        print(f"{prog}: error: out of memory (the machine has less free memory than this step needs)", file=sys.stderr)
        return 2
    except OSError as exc:  # a fault of the machine, not of segforge: the disk filled up, a folder vanished
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{prog}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


def not_implemented(prog: str) -> int:
    print(f"{prog}: error: not implemented yet", file=sys.stderr)
    return 2
