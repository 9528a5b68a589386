"""read_json: a missing optional file is None; a file that is not JSON is one line naming it."""

import pytest

from segforge.errors import InputError
from segforge.io.json_file import read_json


def test_reads_the_value_and_a_missing_optional_file_is_none(tmp_path):
    (tmp_path / "a.json").write_text('{"x": [1, 2]}')
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}
    assert read_json(tmp_path / "gone.json", missing_ok=True) is None
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "gone.json")


@pytest.mark.parametrize("content", [b'{"x": ', b"\xff\xfe\x00binary"])
def test_a_file_that_is_not_json_names_itself(tmp_path, content):
    path = tmp_path / "splits.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_json(path)
    assert str(caught.value).startswith(f"{path}: splits.json is not valid JSON (")
    with pytest.raises(InputError) as caught:
        read_json(path, what="splits file")
    assert str(caught.value).startswith(f"{path}: splits file is not valid JSON (")
