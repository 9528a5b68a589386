"""segforge_import: plain layouts, name/sorted matching, splits, DICOM, and every bad input as one line + exit 2."""

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from segforge.cli._runner import run_command
from segforge.errors import InputError
from segforge.cli.import_dataset import main
from segforge.io import Geometry, RawDataset, read_image, verify_dataset, verify_or_raise, write_image
from segforge.io.importer import assign_split, import_plain_dataset, parse_split_fractions
from segforge.io.plain_layout import match_key

from helpers.dicom_writer import write_dicom_series

SHAPE = (8, 10, 12)


def geom(k=0):
    """Anisotropic, flipped grid; ``k`` shifts the origin so each case has its own grid."""
    return Geometry((2.0, 0.9, 0.8), (float(k) * 7, -3.0, 11.0), np.diag([-1.0, 1.0, -1.0]).ravel(), SHAPE)


def image(k=0, low=-1024.0):
    rng = np.random.default_rng(k)
    return (low + rng.random(SHAPE) * 1500).astype(np.float32)


def label(k=0, values=(1,)):
    lbl = np.zeros(SHAPE, np.uint8)
    for i, v in enumerate(values):
        lbl[2 + i, 2:5, 3:3 + k % 4 + 2] = v
    return lbl


def add_case(root, image_name, label_name, k=0, values=(1,), low=-1024.0):
    write_image(image(k, low), geom(k), root / "images" / image_name)
    if label_name:
        write_image(label(k, values), geom(k), root / "labels" / label_name)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def raw(folders):
    return folders / "raw"  # SEGFORGE_RAW of the test (tests/conftest.py)


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_match_key_accepts_common_naming():
    keys = {match_key(s) for s in ("img_01", "img_01_seg", "img_01_label", "IMG_01_mask", "img-01-gt", "img_01_0000")}
    assert keys == {"01"}
    assert match_key("label0001") == match_key("img0001") == "0001"
    assert match_key("liver_ct") == match_key("liver_segmentation") == "liver"


def test_plain_layout_by_name(tmp_path, raw, capsys):
    src = tmp_path / "src"
    add_case(src, "img_01.nii.gz", "img_01_seg.nii.gz", 1, values=(1, 2))
    add_case(src, "img_02.nrrd", "img_02_label.nii.gz", 2)
    add_case(src, "img_03.mha", "img_03.mha", 3)
    add_case(src, "CT-04.nii", "label_04.nii.gz", 4)
    add_case(src, "case 5.nii.gz", "case 5_mask.nii.gz", 5)
    (src / "images" / "README.txt").write_text("notes")
    before = snapshot(src)
    code, out, err = run_cli(capsys, "-i", src, "-d", 901, "-n", "Plain", "-np", 2)
    assert code == 0, err
    assert "warning: no --modality given: lowest intensity of channel 0 is -1024" in err and "guessed CT" in err
    assert "imported 5 training cases" in out and "skipped" in out and "README.txt" in out
    assert snapshot(src) == before, "the source must not change"

    ds = RawDataset.open(901)
    assert ds.name == "Dataset901_Plain" and ds.file_ending == ".nii.gz" and ds.modality() == "CT"
    assert ds.labels == {"background": 0, "label_1": 1, "label_2": 2}
    assert [c.name for c in ds.training_cases()] == ["CT-04", "case_5", "img_01", "img_02", "img_03"]
    assert ds.dataset_json["numTraining"] == 5 and ds.predefined_split() is None
    assert ds.dataset_json["segforge_import"]["cases"]["img_02"] == {
        "subset": "train", "images": ["images/img_02.nrrd"], "label": "labels/img_02_label.nii.gz"}
    assert "why" in ds.dataset_json["segforge_import"]["decisions"]["modality"]
    assert verify_dataset(ds, num_processes=1, progress=False) == []
    case = {c.name: c for c in ds.training_cases()}["img_02"]
    array, g = read_image(case.image_files[0])
    assert g.same_grid(geom(2)) and np.allclose(array, image(2))
    lbl, _ = read_image(case.label_file)
    assert lbl.dtype == np.uint8 and np.array_equal(lbl, label(2))

    # the same import again changes nothing; different content is refused without --overwrite
    code, out, _ = run_cli(capsys, "-i", src, "-d", 901, "-n", "Plain", "-np", 1)
    assert code == 0 and "nothing changed" in out
    code, _, err = run_cli(capsys, "-i", src, "-d", 901, "-n", "Plain", "--modality", "MR", "-np", 1)
    assert code == 2 and "Dataset901_Plain: dataset folder exists with different content; pass --overwrite" in err
    assert RawDataset.open(901).modality() == "CT", "a refused import must not touch the dataset"
    code, _, _ = run_cli(capsys, "-i", src, "-d", 901, "-n", "Plain", "--modality", "MR", "--overwrite", "-np", 1)
    assert code == 0 and RawDataset.open(901).modality() == "MR"
    code, _, err = run_cli(capsys, "-i", src, "-d", 901, "-n", "Other", "-np", 1)
    assert code == 2 and "dataset id 901 is already used by Dataset901_Plain" in err
    assert not list(raw.glob(".importing-*")), "temporary folders left behind"


def test_pre_split_layout(tmp_path, raw):
    src = tmp_path / "src"
    for k, subset in enumerate(["train", "train", "train", "val", "test", "test"]):
        add_case(src / subset, f"p{k}.nii.gz", None if subset == "test" and k == 5 else f"p{k}.nii.gz", k, low=0.0)
    result = import_plain_dataset(src, 902, "Split", modality="T2", num_processes=1, progress=False)
    assert (result.num_train, result.num_val, result.num_test) == (3, 1, 2)
    ds = RawDataset.open("Dataset902_Split")
    assert ds.predefined_split() == {"train": ["p0", "p1", "p2"], "val": ["p3"], "test": ["p4", "p5"]}
    assert ds.dataset_json["numTraining"] == 4 and ds.modality() == "T2"
    tests = {c.name: c for c in ds.test_cases()}
    assert tests["p4"].label_file is not None and tests["p5"].label_file is None
    assert [c.name for c in ds.training_cases()] == ["p0", "p1", "p2", "p3"]
    verify_or_raise(ds, num_processes=1, progress=False)
    other = tmp_path / "other"
    add_case(other, "q.nii.gz", "q.nii.gz", 0)
    with pytest.raises(InputError, match="Dataset902_Split: dataset folder exists with different content"):
        import_plain_dataset(other, 902, "Split", modality="T2", num_processes=1, progress=False)
    assert [c.name for c in RawDataset.open(902).training_cases()] == ["p0", "p1", "p2", "p3"]


def test_split_percentages_are_deterministic(tmp_path, raw, capsys):
    src = tmp_path / "src"
    for k in range(10):
        add_case(src, f"c{k:02d}.nii.gz", f"c{k:02d}_seg.nii.gz", k)
    assert parse_split_fractions("70,20,10") == pytest.approx((0.7, 0.2, 0.1))
    assert assign_split([f"c{k:02d}" for k in range(10)], (0.7, 0.2, 0.1), 5) == \
        assign_split([f"c{k:02d}" for k in reversed(range(10))], (0.7, 0.2, 0.1), 5)
    for dataset_id in (903, 904):
        code, _, err = run_cli(capsys, "-i", src, "-d", dataset_id, "-n", "Pct", "--split", "70,20,10", "--seed", 5,
                               "--modality", "CT", "-np", 1)
        assert code == 0, err
    a, b = RawDataset.open(903).predefined_split(), RawDataset.open(904).predefined_split()
    assert a == b and [len(a[s]) for s in ("train", "val", "test")] == [7, 2, 1]
    ds = RawDataset.open(903)
    assert [c.name for c in ds.test_cases()] == a["test"] and ds.test_cases()[0].label_file is not None
    assert ds.dataset_json["numTraining"] == 9
    code, _, err = run_cli(capsys, "-i", src, "-d", 905, "-n", "Bad", "--split", "70,20", "-np", 1)
    assert code == 2 and "--split must be three non-negative numbers" in err


def test_sorted_matching(tmp_path, raw):
    src = tmp_path / "src"
    for k, (img, lbl) in enumerate([("scan2.nii.gz", "m_a.nii.gz"), ("scan10.nii.gz", "m_b.nii.gz"),
                                    ("scan3.nii.gz", "m_aa.nii.gz")]):
        write_image(image(k), geom(k), src / "images" / img)
    # natural order: scan2, scan3, scan10 <-> m_a, m_aa, m_b; each label on its image's grid
    for k, lbl in [(0, "m_a.nii.gz"), (2, "m_aa.nii.gz"), (1, "m_b.nii.gz")]:
        write_image(label(k), geom(k), src / "labels" / lbl)
    with pytest.raises(Exception, match="no label"):
        import_plain_dataset(src, 906, "Sorted", modality="CT", num_processes=1, progress=False)
    import_plain_dataset(src, 906, "Sorted", modality="CT", match="sorted", num_processes=1, progress=False)
    ds = RawDataset.open(906)
    assert ds.dataset_json["segforge_import"]["cases"]["scan10"]["label"] == "labels/m_b.nii.gz"
    assert verify_dataset(ds, num_processes=1, progress=False) == []
    (src / "labels" / "m_b.nii.gz").unlink()
    write_image(image(0), geom(0), src / "images" / "scan2.nrrd")
    with pytest.raises(InputError, match="scan2.nii.gz and scan2.nrrd give the same case name 'scan2'"):
        import_plain_dataset(src, 909, "Sorted", modality="CT", match="sorted", num_processes=1, progress=False)
    (src / "images" / "scan2.nrrd").unlink()
    with pytest.raises(InputError, match="3 images but 2 labels in .*--match sorted pairs them in order"):
        import_plain_dataset(src, 909, "Sorted", modality="CT", match="sorted", num_processes=1, progress=False)


def test_multichannel_and_dicom_series(tmp_path, raw):
    src = tmp_path / "src"
    hu = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 300 - 1000).astype(np.int16)
    write_dicom_series(src / "images" / "patient A", hu, (2.0, 0.9, 0.8), (5.0, 6.0, 7.0), (-1, 0, 0), (0, 1, 0))
    _, g = read_image(src / "images" / "patient A")
    write_image((hu > -900).astype(np.uint8), g, src / "labels" / "patient A_seg.nii.gz")
    result = import_plain_dataset(src, 907, "Dicom", labels="bone=1", num_processes=1, progress=False, log=print)
    assert result.labels == {"background": 0, "bone": 1}
    ds = RawDataset.open(907)
    case = ds.training_cases()[0]
    assert case.name == "patient_A" and case.image_files[0].name == "patient_A_0000.nii.gz"
    array, g2 = read_image(case.image_files[0])
    assert np.array_equal(array, hu) and g2.same_grid(g) and ds.modality() == "CT"

    src2 = tmp_path / "src2"
    for k in range(2):
        for c in range(2):
            write_image(image(k + c), geom(k), src2 / "images" / f"case{k}_{c:04d}.nii.gz")
        write_image(label(k), geom(k), src2 / "labels" / f"case{k}.nii.gz")
    import_plain_dataset(src2, 908, "Multi", modality="T1,T2", num_processes=1, progress=False)
    ds = RawDataset.open(908)
    assert ds.channel_names == {"0": "T1", "1": "T2"} and [len(c.image_files) for c in ds.training_cases()] == [2, 2]
    assert verify_dataset(ds, num_processes=1, progress=False) == []



def test_series_uid_picks_one_series_in_each_folder(tmp_path, raw, capsys):
    """Two patients whose folders hold two series each: --series-uid names one per folder."""
    src = tmp_path / "src"
    hu = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 300 - 1000).astype(np.int16)
    wanted = []
    for k, name in enumerate(("p1", "p2")):
        folder = src / "images" / name
        uid = write_dicom_series(folder, hu + k, (2.0, 0.9, 0.8), (5.0, 6.0, 7.0), (-1, 0, 0), (0, 1, 0), prefix="ct")
        write_dicom_series(folder, hu[:, ::-1], (2.0, 0.9, 0.8), (5.0, 6.0, 7.0), (-1, 0, 0), (0, 1, 0), prefix="loc")
        wanted.append(uid)
        _, g = read_image(folder, series_uid=uid)
        write_image((hu > -900).astype(np.uint8), g, src / "labels" / f"{name}.nii.gz")
    argv = ["-i", str(src), "-d", "911", "-n", "Series", "--modality", "CT", "-np", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "holds 2 DICOM series" in err and "--series-uid UID" in err
    assert main([*argv, "--series-uid", *wanted]) == 0
    for k, case in enumerate(RawDataset.open(911).training_cases()):
        array, _ = read_image(case.image_files[0])
        assert np.array_equal(array, hu + k)  # the named series, not its mirrored neighbour

def _expect(err, file_part, text):
    lines = [ln for ln in err.splitlines() if ln.startswith("segforge_import: error: ")]
    assert any(file_part in ln and text in ln for ln in lines), f"{file_part!r} / {text!r} not in:\n{err}"


def test_bad_inputs_each_give_one_clear_line(tmp_path, raw, capsys):
    src = tmp_path / "src"
    add_case(src, "good.nii.gz", "good.nii.gz", 0)
    write_image(image(1), geom(1), src / "images" / "shape.nii.gz")
    write_image(np.zeros((8, 10, 11), np.uint8), Geometry.identity((8, 10, 11)), src / "labels" / "shape.nii.gz")
    add_case(src, "origin.nii.gz", None, 2)
    write_image(label(3), geom(3), src / "labels" / "origin.nii.gz")
    nan = image(4)
    nan[3, 3, 3] = np.nan
    write_image(nan, geom(4), src / "images" / "nan.nii.gz")
    write_image(label(4), geom(4), src / "labels" / "nan.nii.gz")
    (src / "images" / "empty.nii.gz").write_bytes(b"")
    write_image(label(5), geom(5), src / "labels" / "empty.nii.gz")
    (src / "images" / "corrupt.nrrd").write_bytes(b"NRRD0004\ntype: nonsense\n\n\x00\x01")
    write_image(label(6), geom(6), src / "labels" / "corrupt.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((10, 12), np.float32)), str(src / "images" / "flat.nii.gz"))
    write_image(label(7), geom(7), src / "labels" / "flat.nii.gz")
    sitk.WriteImage(sitk.JoinSeries([sitk.GetImageFromArray(np.zeros(SHAPE, np.float32))] * 3),
                    str(src / "images" / "fourd.nii.gz"))
    write_image(label(8), geom(8), src / "labels" / "fourd.nii.gz")
    write_image(label(9).astype(np.float32) * 0.5, geom(9), src / "labels" / "frac.nii.gz")
    write_image(image(9), geom(9), src / "images" / "frac.nii.gz")
    add_case(src, "nolabel.nii.gz", None, 10)
    write_image(label(11), geom(11), src / "labels" / "orphan.nii.gz")
    before = snapshot(src)
    code, out, err = run_cli(capsys, "-i", src, "-d", 910, "-n", "Bad", "-np", 1)
    assert code == 2
    _expect(err, "nolabel.nii.gz", "no label in")
    _expect(err, "orphan.nii.gz", "no image in")
    assert snapshot(src) == before, "a failed import must not touch the source"
    for p in ("nolabel.nii.gz", "orphan.nii.gz"):
        (src / ("images" if p.startswith("no") else "labels") / p).unlink()
    code, out, err = run_cli(capsys, "-i", src, "-d", 910, "-n", "Bad", "-np", 1)
    assert code == 2
    _expect(err, "labels/shape.nii.gz", "label grid differs from image shape.nii.gz (image vs label: shape")
    _expect(err, "labels/origin.nii.gz", "label grid differs from image origin.nii.gz (image vs label: origin")
    _expect(err, "images/nan.nii.gz", "1 NaN and 0 infinite voxels")
    _expect(err, "images/empty.nii.gz", "empty file")
    _expect(err, "images/corrupt.nrrd", "cannot read image")
    _expect(err, "images/flat.nii.gz", "2D image")
    _expect(err, "images/fourd.nii.gz", "4D image")
    _expect(err, "labels/frac.nii.gz", "non-integer values")
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 8, err
    assert not (raw / "Dataset910_Bad").exists() and not list(raw.glob(".importing-*"))


def test_undeclared_labels_missing_channel_and_places(tmp_path, raw, capsys):
    src = tmp_path / "src"
    add_case(src, "a.nii.gz", "a.nii.gz", 0, values=(1, 2))
    code, _, err = run_cli(capsys, "-i", src, "-d", 911, "-n", "Lbl", "--labels", "organ=1", "-np", 1)
    assert code == 2
    _expect(err, "labels/a.nii.gz", "label values [2] are not declared in dataset.json labels")

    src2 = tmp_path / "src2"
    for c in range(2):
        write_image(image(c), geom(0), src2 / "images" / f"x_{c:04d}.nii.gz")
    write_image(image(0), geom(1), src2 / "images" / "y_0000.nii.gz")
    for name in ("x", "y"):
        write_image(label(0), geom(0), src2 / "labels" / f"{name}.nii.gz")
    code, _, err = run_cli(capsys, "-i", src2, "-d", 912, "-n", "Chan", "-np", 1)
    assert code == 2
    _expect(err, "images/y_0001.nii.gz", "channel 1 file missing for case y")

    code, _, err = run_cli(capsys, "-i", tmp_path / "nowhere", "-d", 913, "-n", "X")
    assert code == 2 and "nowhere: source folder not found" in err
    (tmp_path / "flat").mkdir()
    code, _, err = run_cli(capsys, "-i", tmp_path / "flat", "-d", 913, "-n", "X")
    assert code == 2 and "expected images/ and labels/" in err
    (tmp_path / "flat" / "imagesTr").mkdir()
    code, _, err = run_cli(capsys, "-i", tmp_path / "flat", "-d", 913, "-n", "X")
    assert code == 2 and "this is already a raw dataset (imagesTr/)" in err
    code, _, err = run_cli(capsys, "-i", raw, "-d", 913, "-n", "X")
    assert code == 2 and "overlap" in err


def test_verification_problems_reach_the_cli_runner(tmp_path, raw, capsys):
    src = tmp_path / "src"
    add_case(src, "a.nii.gz", "a.nii.gz", 0)
    import_plain_dataset(src, 914, "Num", modality="CT", num_processes=1, progress=False)
    path = raw / "Dataset914_Num" / "dataset.json"
    data = json.loads(path.read_text())
    data["numTraining"] = 3
    path.write_text(json.dumps(data))
    code = run_command("segforge_check", lambda: verify_or_raise(RawDataset.open(914), num_processes=1,
                                                                 progress=False))
    err = capsys.readouterr().err
    assert code == 2 and "dataset.json: numTraining is 3 but imagesTr holds 1 cases" in err
