"""Who is writing into a folder: run claims, so concurrent runs cannot corrupt each other.

A run that writes per-case outputs into a folder first *claims* it: an empty file
``FOLDER/.segforge-runs/<run>~<pid>~<host>~<part>~<what>.claim`` whose name says who holds it
(empty, so a claim costs no space even on a full disk), locked with ``flock`` for as long as
the run lives (the lock goes when the process dies, however it dies). Rules, checked under a short lock so two runs starting together see
each other:

* a whole run (no ``--part``) needs the folder to itself;
* runs with ``--part I --num-parts N`` share the folder when they have the same ``N`` and
  different ``I``: their cases are disjoint (they share the work);
* anything else is refused with one line naming the holder.

Temporary files written during a run carry its id (``segforge.io.atomic``); a run removes
its own at the end, and when it starts those of runs that died (claims nobody holds any
more). Temporaries written outside a run (``.tmp-<pid>-...``) are removed when their
process is gone (``remove_stale_temporaries``), only by a run that finds the folder
otherwise unclaimed.

``flock`` works on local disks and on NFSv4/Lustre mounts with locking enabled; on
platforms without ``fcntl`` the claim is written but not checked for liveness.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from segforge.errors import InputError

from segforge.io.atomic import TMP_PREFIX, remove_stale_temporaries, temporary_run_id

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["FolderClaim", "RUNS_DIR", "remove_temporaries", "LockFile"]

RUNS_DIR = ".segforge-runs"
CLAIM_SUFFIX = ".claim"


class FolderClaim:
    """``with FolderClaim(folder, run_id, part=(i, n) | None, what="preprocessing"):`` ..."""

    def __init__(self, folder: str | os.PathLike, run_id: str, part: tuple[int, int] | None = None,
                 what: str = ""):
        self.folder = Path(folder)
        self.run_id = run_id
        self.part = part
        self.what = what
        self._handle = None

    @property
    def runs_dir(self) -> Path:
        return self.folder / RUNS_DIR

    def __enter__(self) -> "FolderClaim":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        with _Mutex(self.runs_dir / ".mutex"):
            live = []
            for claim in sorted(self.runs_dir.glob(f"*{CLAIM_SUFFIX}")):
                holder = _live_holder(claim)
                if holder is None:  # its run died
                    claim.unlink(missing_ok=True)
                else:
                    live.append(holder)
            for holder in live:
                if not _compatible(self.part, holder.get("part")):
                    raise InputError(f"in use by another run ({_describe(holder)}); wait for it to end or stop it "
                                     "(runs share a folder only as --part I --num-parts N with the same N)",
                                     self.folder)
            _remove_leftovers(self.folder, {h.get("run") for h in live})
            handle = open(self.path, "w")
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._handle = handle

    @property
    def path(self) -> Path:
        part = f"{self.part[0]}of{self.part[1]}" if self.part else "all"
        fields = [self.run_id, str(os.getpid()), socket.gethostname(), part, self.what or "a run"]
        return self.runs_dir / ("~".join(_safe(f) for f in fields) + CLAIM_SUFFIX)

    def release(self) -> None:
        """Remove this run's temporaries and claim; the last run out removes ``.segforge-runs``."""
        if self._handle is None:
            return
        remove_temporaries(self.folder, self.run_id)
        with _Mutex(self.runs_dir / ".mutex") as mutex:
            self.path.unlink(missing_ok=True)
            self._handle.close()  # drops the lock
            self._handle = None
            if not any(self.runs_dir.glob(f"*{CLAIM_SUFFIX}")):
                mutex.remove()


def remove_temporaries(folder: Path, run_id: str) -> int:
    """Remove the temporary files (and folders) of run ``run_id`` in ``folder``; returns how many."""
    return _remove(folder, lambda run: run == run_id)


def _remove_leftovers(folder: Path, live_runs: set) -> None:
    """Temporaries of runs not alive; with no live run, also those of processes that are gone."""
    _remove(folder, lambda run: run is not None and run not in live_runs)
    if not live_runs:
        remove_stale_temporaries(folder)


def _remove(folder: Path, which) -> int:
    removed = 0
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if p.name.startswith(TMP_PREFIX) and which(temporary_run_id(p.name)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed += 1
    return removed


def _compatible(mine: tuple[int, int] | None, theirs) -> bool:
    if mine is None or theirs is None:
        return False
    return mine[1] == theirs[1] and mine[0] != theirs[0]


def _live_holder(claim: Path) -> dict | None:
    """The claim's holder (from its name) when its lock is still held, else None (its run is gone)."""
    try:
        handle = open(claim, "r")
    except OSError:
        return None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pass  # held: the run lives
            else:
                return None
    fields = claim.name[:-len(CLAIM_SUFFIX)].split("~")
    fields += ["?"] * (5 - len(fields))
    run, pid, host, part, what = fields[:5]
    numbers = part.split("of")
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(claim.stat().st_mtime))
    except OSError:
        started = "?"
    return {"run": run, "pid": pid, "host": host, "what": what.replace("+", " "), "started": started,
            "part": [int(n) for n in numbers] if len(numbers) == 2 and all(n.isdigit() for n in numbers) else None}


def _safe(text: str) -> str:
    """A name field: no ``~``, no path, spaces as ``+``."""
    return "".join(c if c.isalnum() or c in "._-" else "+" if c == " " else "_" for c in str(text))[:60]


def _describe(holder: dict) -> str:
    part = holder.get("part")
    parts = f", part {part[0]}/{part[1]}" if part else ""
    return f"{holder['what']} by pid {holder['pid']} on {holder['host']} since {holder['started']}{parts}"


class _Mutex:
    """A blocking ``flock`` held for a few milliseconds while claims are checked and written.

    The lock file may be removed by the last run leaving (``remove``, under the lock), so
    after locking, the file must still be the one at the path; otherwise try again.
    """

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> "_Mutex":
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.handle = open(self.path, "a")
            except FileNotFoundError:  # the folder went between mkdir and open
                continue
            if fcntl is None:
                return self
            fcntl.flock(self.handle, fcntl.LOCK_EX)
            try:
                if os.fstat(self.handle.fileno()).st_ino == os.stat(self.path).st_ino:
                    return self
            except FileNotFoundError:
                pass
            self.handle.close()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        try:
            self.path.parent.rmdir()
        except OSError:
            pass

    def __exit__(self, *exc):
        self.handle.close()


LockFile = _Mutex  # a short blocking lock on a file (also: concurrent --part runs updating OUT/predictions.json)
