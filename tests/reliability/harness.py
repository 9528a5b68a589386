"""Helpers of the reliability tests: run a command in process, check its answer, hash folders.

Every refusal is checked the same way: the exit code, exactly one ``prog: error:`` (or
``prog: failed:``) line on stderr naming the file and the problem, no traceback anywhere,
and (with :func:`tree_hashes` before and after) no earlier output changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "plan": ("segforge_plan_and_preprocess", "segforge.cli.plan_and_preprocess"),
    "train": ("segforge_train", "segforge.cli.train"),
    "predict": ("segforge_predict", "segforge.cli.predict"),
    "evaluate": ("segforge_evaluate", "segforge.cli.evaluate"),
    "import": ("segforge_import", "segforge.cli.import_dataset"),
}


@dataclass
class Answer:
    prog: str
    code: int
    out: str
    err: str

    def lines(self, kind: str = "error") -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith(f"{self.prog}: {kind}:")]


def run(command: str, argv: list[str]) -> Answer:
    """``main(argv)`` of a command in this process; stdout/stderr captured, SystemExit turned into a code."""
    import importlib

    prog, module = COMMANDS[command]
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
    return Answer(prog, int(code), out.getvalue(), err.getvalue())


def assert_refused(answer: Answer, code: int, names: str | Path | None, problem: str, kind: str = "error") -> str:
    """Exit ``code``; exactly one ``prog: <kind>:`` line, naming ``names`` (a file's name) and matching
    ``problem`` (a regular expression); no traceback. Returns the line."""
    text = answer.out + answer.err
    assert "Traceback" not in text, text
    assert answer.code == code, f"exit {answer.code}, expected {code}\n{text}"
    lines = answer.lines(kind)
    assert len(lines) == 1, f"expected one '{answer.prog}: {kind}:' line, got {len(lines)}:\n{text}"
    line = lines[0]
    if names is not None:
        assert Path(names).name in line, f"{Path(names).name!r} not named in: {line}"
    assert re.search(problem, line), f"{problem!r} not in: {line}"
    return line


def tree_hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (what must not change when a command is refused)."""
    hashes = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            hashes[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for p in sorted(root.rglob("*")) if root.is_dir() else []:
            if p.is_file():
                hashes[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return hashes


# ------------------------------------------------------------------------------ tiny disks
_MOUNT_OK: bool | None = None


def can_mount_tmpfs() -> bool:
    """Whether this machine lets us make a private mount namespace with a tmpfs (root, unshare)."""
    global _MOUNT_OK
    if _MOUNT_OK is None:
        if shutil.which("unshare") is None or shutil.which("mount") is None:
            _MOUNT_OK = False
        else:
            probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=16k tmpfs /mnt && umount /mnt"],
                                   capture_output=True)
            _MOUNT_OK = probe.returncode == 0
    return _MOUNT_OK


def run_on_small_disk(mount_point: Path, size: str, script: str, env: dict | None = None,
                      read_only: bool = False, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``script`` (Python source) in a private mount namespace where ``mount_point`` is a tmpfs
    of ``size`` (``"12k"``) -- a real full disk, invisible to the rest of the machine."""
    mount_point.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    shell = f'mount -t tmpfs -o {options} tmpfs "{mount_point}" && exec "{sys.executable}" -c "$SEGFORGE_TEST_SCRIPT"'
    full_env = {**os.environ, **(env or {}), "SEGFORGE_TEST_SCRIPT": script,
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run(["unshare", "-m", "sh", "-c", shell], capture_output=True, encoding="utf-8",
                          errors="replace", env=full_env, timeout=timeout)
