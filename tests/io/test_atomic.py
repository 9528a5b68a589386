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
