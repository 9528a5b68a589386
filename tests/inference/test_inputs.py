"""Which cases an input holds."""

import pytest

from helpers.inference_fixtures import write_case
from segforge.errors import InputError
from segforge.inference.inputs import check_output_folder, discover_cases, output_file, read_case


def test_nnunet_names_group_channels(tmp_path):
    for case in ("a", "b"):
        for c in (1, 0):
            write_case(tmp_path, case).rename(tmp_path / f"{case}_{c:04d}.nii.gz")
    cases = discover_cases(tmp_path, num_channels=2)
    assert [c.name for c in cases] == ["a", "b"]
    assert [p.name for p in cases[0].sources] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    image, geometry = read_case(cases[0])
    assert image.shape == (2, *geometry.shape)


def test_missing_channel_is_a_case_problem_not_a_crash(tmp_path):
    write_case(tmp_path, "a")
    [case] = discover_cases(tmp_path, num_channels=2)
    assert "missing channel file(s) a_0001.nii.gz" in case.problem
    with pytest.raises(InputError, match="a_0001"):
        read_case(case)


def test_single_channel_files_without_suffix_are_cases(tmp_path):
    write_case(tmp_path, "p1").rename(tmp_path / "patient_0001.nii.gz")
    write_case(tmp_path, "p2").rename(tmp_path / "patient_0002.mha")
    cases = discover_cases(tmp_path, num_channels=1)
    assert [(c.name, c.ending) for c in cases] == [("patient_0001", ".nii.gz"), ("patient_0002", ".mha")]
    assert output_file(cases[1], tmp_path / "out").name == "patient_0002.mha"


def test_single_file_strips_the_channel_suffix(tmp_path):
    path = write_case(tmp_path, "scan")
    [case] = discover_cases(path, num_channels=1)
    assert case.name == "scan" and case.sources == [path]


def test_output_checks(tmp_path):
    path = write_case(tmp_path, "scan")
    cases = discover_cases(tmp_path)
    with pytest.raises(InputError, match="output folder is the input folder"):
        check_output_folder(tmp_path, tmp_path, cases)
    with pytest.raises(InputError, match="output folder is the input folder"):
        check_output_folder(path, tmp_path, cases)
    check_output_folder(tmp_path, tmp_path / "predictions", cases)


def test_nothing_to_predict(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no images found"):
        discover_cases(tmp_path)
    with pytest.raises(InputError, match="input not found"):
        discover_cases(tmp_path / "nope")
