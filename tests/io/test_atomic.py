import json

import numpy as np
import pytest

from segforge.io.atomic import TMP_PREFIX, save_npy_atomic, temporary_path, write_json_atomic, write_text_atomic


def test_writes_land_whole_and_leave_no_temporary_files(tmp_path):
    write_text_atomic(tmp_path / "a" / "t.txt", "hello")
    write_json_atomic(tmp_path / "j.json", {"x": [1, 2]})
    save_npy_atomic(tmp_path / "n.npy", np.arange(6, dtype=np.int16).reshape(2, 3))
    assert (tmp_path / "a" / "t.txt").read_text() == "hello"
    assert json.loads((tmp_path / "j.json").read_text()) == {"x": [1, 2]}
    loaded = np.load(tmp_path / "n.npy", mmap_mode="r", allow_pickle=False)
    assert loaded.dtype == np.int16 and loaded.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(TMP_PREFIX)]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with temporary_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_a_writer_that_writes_less_than_asked_is_caught_and_the_old_file_kept(tmp_path, monkeypatch):
    """SimpleITK leaves a cut-off file on a full disk without an error: the read-back finds it."""
    import SimpleITK as sitk

    from segforge.io import Geometry, read_image, write_image
    from segforge.io import image as image_module
    from segforge.io.atomic import WriteError

    shape = (6, 7, 8)
    target = tmp_path / "label.nii.gz"
    old = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    write_image(old, Geometry.identity(shape), target)
    real_write = sitk.WriteImage

    def short_write(image, path, useCompression=True):
        real_write(image, path, useCompression=useCompression)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])

    monkeypatch.setattr(image_module.sitk, "WriteImage", short_write)
    with pytest.raises(WriteError, match=r"label.nii.gz: .*(truncated|read back)"):
        write_image(np.zeros(shape, np.int16), Geometry.identity(shape), target)
    assert np.array_equal(read_image(target)[0], old)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_write_errors_name_the_target_and_the_os_reason(tmp_path):
    from segforge.io.atomic import WriteError

    (tmp_path / "blocker").write_text("a file")
    with pytest.raises(WriteError, match=r"blocker/sub/x.txt: cannot create the folder: .*blocker is a file"):
        write_text_atomic(tmp_path / "blocker" / "sub" / "x.txt", "hello")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(WriteError, match=r"dir.json: cannot write: is a directory"):
        write_json_atomic(tmp_path / "dir.json", {})


def test_check_writable_folder(tmp_path):
    from segforge.errors import InputError
    from segforge.io.atomic import check_writable_folder

    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"f: output folder is a file, not a folder"):
        check_writable_folder(tmp_path / "f")
    with pytest.raises(InputError, match=r"f/out: cannot create the folder: .*/f is a file"):
        check_writable_folder(tmp_path / "f" / "out")
    assert check_writable_folder(tmp_path / "new" / "out").is_dir()
    assert [p.name for p in (tmp_path / "new" / "out").iterdir()] == []  # the probe is gone


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    import os

    from segforge.io.atomic import remove_stale_temporaries

    dead = _dead_pid()
    (tmp_path / f"{TMP_PREFIX}{dead}-abcd1234-a.npy").write_bytes(b"half")
    (tmp_path / f"{TMP_PREFIX}{os.getpid()}-abcd1234-b.npy").write_bytes(b"mine")
    (tmp_path / f"{TMP_PREFIX}{dead}-abcd1234-c.nii.gz.d").mkdir()
    (tmp_path / "keep.npy").write_bytes(b"done")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f"{TMP_PREFIX}{dead}-abcd1234-a.npy",
                                                      f"{TMP_PREFIX}{dead}-abcd1234-c.nii.gz.d"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{TMP_PREFIX}{os.getpid()}-abcd1234-b.npy",
                                                                 "keep.npy"])


def _dead_pid() -> int:
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
