"""DICOM round trip: --series-uid picks a series; --output-format dicom-seg writes a DICOM-SEG on the input's grid."""

from pathlib import Path

import numpy as np
import pytest

from helpers.dicom_writer import write_dicom_series
from helpers.inference_fixtures import blob_image
from segforge.cli.predict import main as predict_main
from segforge.io.image import dicom_series_files, read_image

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

from segforge.inference.dicom_seg import read_dicom_seg_labels, write_dicom_seg  # noqa: E402

SPACING = (2.5, 0.8, 1.1)
ORIGIN = (3.0, -4.0, 12.0)
ROW, COL = (1.0, 0.0, 0.0), (0.0, 0.0, -1.0)  # a coronal series: slices stack along +y


def _two_series(folder: Path):
    image = (blob_image() * 100).astype(np.int16)
    uid_a = write_dicom_series(folder, image, SPACING, ORIGIN, ROW, COL, prefix="a")
    uid_b = write_dicom_series(folder, image[:, ::-1], SPACING, ORIGIN, ROW, COL, prefix="b")
    return uid_a, uid_b


def test_hand_made_labels_round_trip_with_names_references_and_positions(tmp_path):
    folder = tmp_path / "patient"
    uid, _ = _two_series(folder)
    _, geometry = read_image(folder, series_uid=uid)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[2:5, 3:9, 4:10] = 1
    labels[6:8, 10:15, 2:6] = 2
    out = write_dicom_seg(labels, geometry, tmp_path / "seg.dcm", folder, uid,
                          {"background": 0, "liver": 1, "tumour": 2})
    assert np.array_equal(read_dicom_seg_labels(out, folder, uid), labels)

    seg = hd.seg.segread(str(out))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [1, 2]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_series_files(folder, uid)]
    assert seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    # every frame lies on its source slice: same position, the series' orientation and pixel spacing
    by_uid = {s.SOPInstanceUID: s for s in sources}
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose([float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                               [*ROW, *COL], atol=1e-6)
    np.testing.assert_allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing], SPACING[1:])
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in by_uid[source_uid].ImagePositionPatient], atol=1e-3)


def test_predict_series_uid_and_dicom_seg_match_the_nifti_output(folders, model_folder, capsys):
    source = folders / "dicom"
    uid_a, uid_b = _two_series(source / "patient_3")
    assert predict_main(["-i", str(source), "-o", str(folders / "none"), "-d", "987", "--disable-tta"]) == 1
    assert "--series-uid UID" in capsys.readouterr().err

    nifti, seg = folders / "nifti", folders / "seg"
    common = ["-i", str(source), "-d", "987", "--disable-tta", "--series-uid", uid_b]
    assert predict_main([*common, "-o", str(nifti)]) == 0
    assert predict_main([*common, "-o", str(seg), "--output-format", "dicom-seg"]) == 0
    expected, geometry = read_image(nifti / "patient_3.nii.gz")
    _, series_geometry = read_image(source / "patient_3", series_uid=uid_b)
    assert geometry.same_grid(series_geometry)
    labels = read_dicom_seg_labels(seg / "patient_3.dcm", source / "patient_3", uid_b)
    assert np.array_equal(labels, expected)
    assert hd.seg.segread(str(seg / "patient_3.dcm")).ReferencedSeriesSequence[0].SeriesInstanceUID == uid_b
    # --continue finds the DICOM-SEG and skips the case
    assert predict_main([*common, "-o", str(seg), "--output-format", "dicom-seg", "--continue"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_dicom_seg_of_a_nifti_input_is_refused_by_name(folders, model_folder, capsys):
    from helpers.inference_fixtures import write_case

    images = folders / "images"
    images.mkdir()
    write_case(images, "case_1")
    assert predict_main(["-i", str(images), "-o", str(folders / "out"), "-d", "987", "--disable-tta",
                         "--output-format", "dicom-seg"]) == 1
    assert "needs a DICOM series as input" in capsys.readouterr().err


def test_a_truncated_dicom_seg_is_predicted_again_with_continue(folders, model_folder, capsys):
    source = folders / "dicom"
    _, uid_b = _two_series(source / "patient_4")
    seg = folders / "seg"
    common = ["-i", str(source), "-d", "987", "--disable-tta", "--series-uid", uid_b, "-o", str(seg),
              "--output-format", "dicom-seg"]
    assert predict_main(common) == 0
    target = seg / "patient_4.dcm"
    whole = target.read_bytes()
    target.write_bytes(whole[: len(whole) // 2])
    capsys.readouterr()
    assert predict_main([*common, "--continue"]) == 0
    out = capsys.readouterr()
    assert "not a whole DICOM Segmentation" in out.out + out.err
    assert target.read_bytes() != whole[: len(whole) // 2] and len(target.read_bytes()) > len(whole) // 2
