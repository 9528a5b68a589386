"""segforge_evaluate on folders of hand-made label maps."""

import json

import numpy as np
import pytest

from segforge.cli.evaluate import main
from segforge.io.geometry import Geometry
from segforge.io.image import write_image

GEOMETRY = Geometry((3.0, 1.0, 1.0), (5.0, -2.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (20, 20, 20))


def cube(start, size=10, value=1):
    m = np.zeros(GEOMETRY.shape, np.uint8)
    m[tuple(slice(s, s + size) for s in start)] = value
    return m


@pytest.fixture
def folders(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    write_image(cube((2, 5, 5)), GEOMETRY, ref / "c1.nii.gz")
    write_image(cube((4, 5, 5)), GEOMETRY, pred / "c1.nii.gz")  # shifted 2 slices: Dice 0.8
    write_image(cube((2, 5, 5)), GEOMETRY, ref / "c2.nii.gz")
    write_image(cube((2, 5, 5)), GEOMETRY, pred / "c2.nii.gz")  # perfect
    return ref, pred


def test_scores_and_means(folders, capsys):
    ref, pred = folders
    assert main(["-ref", str(ref), "-pred", str(pred), "-np", "1"]) == 0
    summary = json.loads((pred / "summary.json").read_text())
    by_case = {c["case"]: c["metrics"]["1"] for c in summary["cases"]}
    assert by_case["c1"]["dice"] == pytest.approx(0.8)
    assert by_case["c2"]["dice"] == 1.0 and by_case["c2"]["hd95"] == 0.0
    assert summary["mean"]["1"]["dice"] == pytest.approx(0.9)
    assert summary["foreground_mean"]["dice"] == pytest.approx(0.9)
    table = capsys.readouterr().out
    assert "foreground" in table and "0.9000" in table


def test_absent_label_is_null_and_left_out(folders):
    ref, pred = folders
    out = ref.parent / "s.json"
    assert main(["-ref", str(ref), "-pred", str(pred), "-l", "1", "2", "-o", str(out), "-np", "1"]) == 0
    summary = json.loads(out.read_text())
    assert summary["cases"][0]["metrics"]["2"]["dice"] is None
    assert summary["mean"]["2"]["n_cases"]["dice"] == 0


def test_missing_and_mismatched_predictions_are_listed(folders, capsys):
    ref, pred = folders
    write_image(cube((1, 1, 1)), GEOMETRY, ref / "c3.nii.gz")
    moved = Geometry(GEOMETRY.spacing, (9.0, -2.0, 1.0), GEOMETRY.direction, GEOMETRY.shape)
    write_image(cube((2, 5, 5)), moved, pred / "c2.nii.gz")
    assert main(["-ref", str(ref), "-pred", str(pred), "-np", "2"]) == 1
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["missing_predictions"] == ["c3"]
    assert summary["geometry_mismatches"][0]["case"] == "c2"
    assert "origin" in summary["geometry_mismatches"][0]["difference"]
    out = capsys.readouterr().out
    assert "not scored: c3: prediction missing" in out and "not scored: c2: prediction grid differs" in out


def test_nothing_evaluated_exits_2(tmp_path, capsys):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    write_image(cube((1, 1, 1)), GEOMETRY, ref / "a.nii.gz")
    pred.mkdir()
    assert main(["-ref", str(ref), "-pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "nothing could be evaluated among 1 reference case(s): case a: prediction missing" in err
    assert len(err.strip().splitlines()) == 1
