"""The one way segforge writes a file: temporary name, flush + fsync, check, rename.

1. the content goes to ``.tmp-<pid>-<random>-<name>`` in the target's folder;
2. it is flushed to the disk (``fsync``);
3. it is read back and checked (``check``: the writer's own test that the file holds what
   was meant: the same text, an array of the right shape, an image with the same voxels);
4. only then it is renamed over the target (``os.replace``, atomic on one file system), and
   the folder is synced so the rename itself survives a power cut.

A reader (or a resumed run) therefore sees either the old file or the complete new one,
never a half-written or zero-byte file. Any failure (disk full, read-only folder, a writer
that silently wrote less than it was given) raises :class:`WriteError` naming the target
and what went wrong, removes the temporary file and leaves the target as it was.

Temporary names carry the writing process's id, so :func:`remove_stale_temporaries` can
clear what a killed run left without touching the files of a run still going. Inside a run
of :mod:`segforge.execution` (whose workers may sit on other machines, where a process id
says nothing) they carry the run's id too, ``.tmp-<pid>-<run>.<random>-<name>``: those are
the run's own, cleared by the run's folder claim (``segforge.execution.claims``), never by
process id.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from segforge.errors import InputError

__all__ = [
    "TMP_PREFIX",
    "RUN_ID_ENV",
    "WriteError",
    "temporary_name",
    "temporary_run_id",
    "temporary_path",
    "write_text_atomic",
    "write_json_atomic",
    "save_npy_atomic",
    "copy_file_atomic",
    "check_writable_folder",
    "remove_stale_temporaries",
    "describe_os_error",
    "process_alive",
]

TMP_PREFIX = ".tmp-"
LOW_SPACE_BYTES = 1 << 20  # below this, a file that does not read back is blamed on a full disk
RUN_ID_ENV = "SEGFORGE_RUN_ID"  # set by segforge.execution in the processes of a run


def temporary_name(path: str | os.PathLike) -> Path:
    """A fresh temporary sibling of ``path``: ``.tmp-<pid>-[<run>.]<random>-NAME`` (same ending)."""
    target = Path(path)
    run = os.environ.get(RUN_ID_ENV, "")
    return target.with_name(f"{TMP_PREFIX}{os.getpid()}-{run + '.' if run else ''}{uuid.uuid4().hex[:8]}-{target.name}")


def temporary_run_id(name: str) -> str | None:
    """The run id in a temporary file's name; None when it has none (or is not a temporary)."""
    if not name.startswith(TMP_PREFIX):
        return None
    parts = name[len(TMP_PREFIX):].split("-", 2)
    if len(parts) < 3 or "." not in parts[1]:
        return None
    return parts[1].split(".", 1)[0]


class WriteError(InputError):
    """A file could not be written completely; the file under the final name is unchanged."""


def describe_os_error(exc: OSError, folder: Path | None = None) -> str:
    """``"no space left on device (12 KB free)"``, ``"read-only file system"``... for a message."""
    text = exc.strerror or str(exc)
    text = text[:1].lower() + text[1:]
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) and folder is not None:
        text += f" ({_free_text(folder)})"
    return text


@contextmanager
def temporary_path(path: str | os.PathLike, check: Callable[[Path], None] | None = None):
    """Yield a temporary sibling of ``path``; on success it is synced, checked and renamed onto ``path``.

    ``check(tmp)`` raises when the written file is not what was meant. On any error the
    temporary file is removed, ``path`` is untouched, and OS errors become :class:`WriteError`.
    """
    target = Path(path)
    _make_folder(target.parent, target)
    tmp = temporary_name(target)
    try:
        try:
            yield tmp
            _fsync_file(tmp)
            if check is not None:
                check(tmp)
            os.replace(tmp, target)
            _fsync_folder(target.parent)
        except OSError as exc:
            raise WriteError(f"cannot write: {_write_failure(exc, target.parent)}", target) from None
        except WriteError:
            raise
        except InputError as exc:  # the check refused what was written
            raise WriteError(_damaged_text(_reason(exc), target.parent), target) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8); the bytes are read back and compared before the rename."""
    data = text.encode()

    def check(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise InputError(f"read back {tmp.stat().st_size} of {len(data)} bytes")

    with temporary_path(path, check) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_json_atomic(path: str | os.PathLike, data, indent: int = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def save_npy_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Uncompressed ``.npy`` (memory-mappable), never pickled; shape and dtype are read back."""
    array = np.asarray(array)

    def check(tmp: Path) -> None:
        try:
            back = np.load(tmp, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read it back: {exc}") from None
        if back.shape != array.shape or back.dtype != array.dtype:
            raise InputError(f"read back {back.dtype}{back.shape}, wrote {array.dtype}{array.shape}")

    with temporary_path(path, check) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array, allow_pickle=False)


def copy_file_atomic(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target``; the copy's bytes are compared with the source's."""
    source = Path(source)
    if not source.is_file():
        raise InputError("file not found", source)

    def check(tmp: Path) -> None:
        if tmp.read_bytes() != source.read_bytes():
            raise InputError("the copy differs from its source")

    with temporary_path(target, check) as tmp:
        shutil.copyfile(source, tmp)


def check_writable_folder(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove it takes a file; :class:`InputError` naming it otherwise.

    Run before expensive work, so a read-only or misplaced output is refused at once.
    """
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{what} is a file, not a folder", folder)
    _make_folder(folder, folder, what)
    probe = folder / f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-probe"
    try:
        with open(probe, "wb") as f:
            f.write(b"segforge")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise InputError(f"{what} is not writable ({describe_os_error(exc, folder)})", folder) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
    return folder


def remove_stale_temporaries(folder: str | os.PathLike, prefix: str = TMP_PREFIX) -> list[Path]:
    """Remove ``prefix<pid>-...`` files and folders in ``folder`` whose process is gone (a killed run's).

    Files of a run (with a run id) are left to that run's folder claim: their writer may live
    on another machine.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if not p.name.startswith(prefix) or temporary_run_id(p.name) is not None:
            continue
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


# ----------------------------------------------------------------------------- helpers
def _make_folder(folder: Path, target: Path, what: str | None = None) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise (InputError(f"{what} is a file, not a folder", folder) if what else
               WriteError(f"cannot write: {folder} is a file, not a folder", target)) from None
    except NotADirectoryError:
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        message = f"cannot create the folder: {blocker} is a file"
        raise (InputError(message, folder) if what else WriteError(message, target)) from None
    except OSError as exc:
        message = f"cannot create the folder ({describe_os_error(exc, folder.parent)})"
        raise (InputError(message, folder) if what else WriteError(message, target)) from None


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _free_text(folder: Path) -> str:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if free >= size:
            return f"{free / size:.1f} {unit} free on its disk"
    return f"{free} bytes free on its disk"


def _write_failure(exc: Exception, folder: Path) -> str:
    """What went wrong, blaming a full disk when a writer gave no reason (numpy: "4800 requested and 992
    written", torch: "iostream error") and the disk is in fact (nearly) full."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return describe_os_error(exc, folder)
    text = (getattr(exc, "strerror", None) or str(exc)).strip()
    detail = text.splitlines()[0][:200] if text else type(exc).__name__
    if _low_space(folder):
        return f"no space left on device ({_free_text(folder)}; {detail})"
    return detail


def _low_space(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < LOW_SPACE_BYTES
    except OSError:
        return False


def _damaged_text(reason: str, folder: Path) -> str:
    if _low_space(folder):  # some writers (SimpleITK) do not report a full disk; the read-back finds it
        return f"cannot write: no space left on device ({_free_text(folder)}; the file read back: {reason})"
    return f"written file does not read back whole ({reason})"


def _reason(exc: InputError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if exc.path and text.startswith(exc.path + ": ") else text


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
