"""segforge_predict end to end with a tiny untrained network in the real checkpoint format."""

import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from helpers.inference_fixtures import blob_image, odd_geometry, write_case
from segforge.cli.predict import main
from segforge.io.image import read_image


def test_prediction_lies_on_the_input_grid(folders, model_folder, capsys):
    inp, out = folders / "in", folders / "out"
    geometry = odd_geometry()
    write_case(inp, "case_a", geometry=geometry)
    assert main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta"]) == 0
    labels, written = read_image(out / "case_a.nii.gz")
    assert labels.shape == geometry.shape
    assert written.same_grid(geometry)
    np.testing.assert_allclose(written.spacing, geometry.spacing, rtol=1e-6)
    np.testing.assert_allclose(written.origin, geometry.origin, atol=1e-5)
    np.testing.assert_allclose(written.direction, geometry.direction, atol=1e-6)
    assert set(np.unique(labels)) <= {0, 1}
    assert "case_a:" in capsys.readouterr().out  # per-case time


def test_dataset_may_be_left_out_with_one_trained_dataset(folders, model_folder):
    inp, out = folders / "in", folders / "out"
    write_case(inp, "only")
    assert main(["-i", str(inp / "only_0000.nii.gz"), "-o", str(out), "--disable-tta", "-f", "0"]) == 0
    assert (out / "only.nii.gz").is_file()


def test_save_probabilities(folders, model_folder):
    inp, out = folders / "in", folders / "out"
    write_case(inp, "p")
    assert main(["-i", str(inp), "-o", str(out), "-m", str(model_folder), "--save-probabilities", "--disable-tta"]) == 0
    probabilities = np.load(out / "p_probabilities.npy", allow_pickle=False)
    info = json.loads((out / "p_probabilities.json").read_text())
    assert probabilities.dtype == np.float16 and probabilities.shape == (2, *blob_image().shape)
    np.testing.assert_allclose(probabilities.astype(np.float32).sum(0), 1.0, atol=2e-3)
    assert info["geometry"]["shape"] == list(blob_image().shape)
    labels, _ = read_image(out / "p.nii.gz")
    p32 = probabilities.astype(np.float32)
    clear = np.abs(p32[1] - p32[0]) > 2e-3  # float16 rounding can tie near 0.5
    np.testing.assert_array_equal(labels[clear], p32.argmax(0)[clear])


def test_continue_skips_finished_cases(folders, model_folder, capsys):
    inp, out = folders / "in", folders / "out"
    write_case(inp, "a")
    write_case(inp, "b")
    assert main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta"]) == 0
    before = os.stat(out / "a.nii.gz").st_mtime_ns
    (out / "b.nii.gz").unlink()
    capsys.readouterr()
    assert main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta", "--continue"]) == 0
    printed = capsys.readouterr().out
    assert "a: skipped" in printed and "1 predicted, 1 skipped" in printed
    assert os.stat(out / "a.nii.gz").st_mtime_ns == before
    assert (out / "b.nii.gz").is_file()


def test_corrupt_case_is_reported_and_others_predicted(folders, model_folder, capsys):
    inp, out = folders / "in", folders / "out"
    write_case(inp, "good")
    (inp / "bad_0000.nii.gz").write_bytes(b"this is not a nifti file at all" * 10)
    assert main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta"]) == 1
    err = capsys.readouterr().err
    assert "failed: bad:" in err and "bad_0000.nii.gz" in err
    assert (out / "good.nii.gz").is_file() and not (out / "bad.nii.gz").exists()


def test_output_folder_equal_to_input_is_refused(folders, model_folder, capsys):
    inp = folders / "in"
    write_case(inp, "a")
    assert main(["-i", str(inp), "-o", str(inp), "-d", "987"]) == 2
    assert "output folder is the input folder" in capsys.readouterr().err
    assert sorted(p.name for p in inp.iterdir()) == ["a_0000.nii.gz"]


def test_missing_model_is_one_line(folders, capsys):
    inp = folders / "in"
    write_case(inp, "a")
    assert main(["-i", str(inp), "-o", str(folders / "out")]) == 2
    err = capsys.readouterr().err
    assert "name the model with -d DATASET or -m MODEL_FOLDER" in err and "Traceback" not in err


def write_dicom_series(folder, image: np.ndarray, spacing_zyx, origin):
    """One file per slice with the position/orientation tags GDCM sorts by."""
    folder.mkdir(parents=True)
    series = "1.2.826.0.1.3680043.2.1125.1.4242"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    volume = sitk.GetImageFromArray(image.astype(np.int16))
    volume.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    volume.SetOrigin(origin)
    for z in range(image.shape[0]):
        s = volume[:, :, z]
        position = volume.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in {
            "0008|0060": "MR", "0020|000d": series + ".0", "0020|000e": series,
            "0020|0013": str(z + 1), "0020|0032": "\\".join(f"{v:.4f}" for v in position),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0028|0030": f"{spacing_zyx[1]}\\{spacing_zyx[2]}",
            "0018|0050": str(spacing_zyx[0]), "0008|0018": f"{series}.{z + 1}",
        }.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{z:03d}.dcm"))
        writer.Execute(s)


def test_dicom_series_folder_is_predicted(folders, model_folder):
    image = (blob_image() * 100).astype(np.int16)
    series = folders / "dicom" / "patient_7"
    write_dicom_series(series, image, (2.5, 0.8, 1.1), (3.0, -4.0, 12.0))
    out = folders / "out"
    assert main(["-i", str(folders / "dicom"), "-o", str(out), "-d", "987", "--disable-tta"]) == 0
    labels, geometry = read_image(out / "patient_7.nii.gz")
    _, source = read_image(series)
    assert geometry.same_grid(source) and labels.shape == image.shape


def test_a_single_dicom_series_folder_is_one_case(tmp_path):
    from segforge.errors import InputError
    from segforge.inference.inputs import check_output_folder, discover_cases

    series = tmp_path / "scans" / "patient_9"
    write_dicom_series(series, (blob_image() * 100).astype("int16"), (2.5, 0.8, 1.1), (0.0, 0.0, 0.0))
    [case] = discover_cases(series)
    assert (case.name, case.ending, case.is_dicom) == ("patient_9", ".nii.gz", True)
    with pytest.raises(InputError, match="would replace or enter an input"):
        check_output_folder(series, series / "out", [case])
