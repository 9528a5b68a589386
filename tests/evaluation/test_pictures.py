"""Test-set pictures: the slices through the largest structures, the title's Dice, and both ways to ask
for them (segforge_evaluate --pictures, segforge_predict --reference)."""

import json

import matplotlib.image
import numpy as np
import pytest

from helpers.inference_fixtures import odd_geometry, write_case
from segforge.cli.evaluate import main as evaluate_main
from segforge.cli.predict import main as predict_main
from segforge.evaluation.evaluate import evaluate_folders
from segforge.evaluation.pictures import case_title, choose_structure_slices, draw_test_pictures, images_in_folder
from segforge.io.geometry import Geometry
from segforge.io.image import write_image

GEOMETRY = Geometry((3.0, 1.0, 1.0), (5.0, -2.0, 1.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (12, 20, 20))


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).ndim == 3


def labelled_case():
    """Label 1: 4 slices, widest (8x8) at z 5; label 2: 2x2 at z 2 and 3x3 at z 9 (its largest slice 9);
    the prediction adds label 3 (only there) at z 10 and misses label 2 at z 9."""
    reference = np.zeros(GEOMETRY.shape, np.uint8)
    reference[4:8, 2:8, 2:8] = 1
    reference[5, 2:10, 2:10] = 1
    reference[2, 12:14, 12:14] = 2
    reference[9, 12:15, 12:15] = 2
    prediction = reference.copy()
    prediction[9] = 0
    prediction[10, 0:2, 0:2] = 3
    return reference, prediction


def test_slices_through_the_largest_structures_by_hand():
    reference, prediction = labelled_case()
    # label 1 (172 voxels) widest at z 5, label 2 (13) widest at z 9, label 3 only predicted, at z 10
    assert choose_structure_slices(reference, prediction) == [(5, 1), (9, 2), (10, 3)]
    assert choose_structure_slices(reference, prediction, max_structures=1) == [(5, 1)]
    shared = reference.copy()
    shared[5, 15:18, 15:18] = 2  # label 2 now widest at z 5 too: the slice is kept once, for label 1
    shared[9] = 0
    assert choose_structure_slices(shared, shared) == [(5, 1)]
    empty = np.zeros((7, 4, 4), np.uint8)
    assert choose_structure_slices(empty, empty) == [(3, 0)]


def test_title_holds_the_dice_of_each_label_and_their_mean():
    metrics = {"1": {"dice": 0.9}, "2": {"dice": 0.5}, "3": {"dice": float("nan")}}
    assert case_title("case_7", metrics, {1: "liver", 2: "lesion"}) == "case_7: Dice liver 0.900, lesion 0.500 (mean 0.700)"
    assert case_title("c", {"1": {"dice": None}}) == "c: no structure in truth or prediction"


def test_evaluate_draws_one_picture_per_scored_case(tmp_path, capsys):
    reference, prediction = labelled_case()
    ref, pred, images, pictures = (tmp_path / n for n in ("ref", "pred", "images", "pictures"))
    for case in ("c1", "c2"):
        write_image(reference, GEOMETRY, ref / f"{case}.nii.gz")
        write_image(prediction, GEOMETRY, pred / f"{case}.nii.gz")
    write_image(np.random.default_rng(0).normal(size=GEOMETRY.shape).astype(np.float32), GEOMETRY,
                images / "c1_0000.nii.gz")
    code = evaluate_main(["-ref", str(ref), "-pred", str(pred), "-np", "1", "--pictures", str(pictures),
                          "--images", str(images)])
    assert code == 0
    assert sorted(p.name for p in pictures.iterdir()) == ["c1.png", "c2.png"]  # c2 has no image: labels on black
    assert all(is_png(p) for p in pictures.iterdir())
    assert "2 picture(s) of prediction vs truth written" in capsys.readouterr().out
    summary = json.loads((pred / "summary.json").read_text())
    metrics = summary["cases"][0]["metrics"]
    # label 2: 4 of 13 voxels found -> Dice 2 * 4 / (13 + 4); label 3: only predicted -> 0
    assert metrics["2"]["dice"] == pytest.approx(8 / 17) and metrics["3"]["dice"] == 0.0


def test_images_only_with_pictures(tmp_path, capsys):
    assert evaluate_main(["-ref", str(tmp_path), "-pred", str(tmp_path), "--images", str(tmp_path)]) == 2
    assert "--images goes with --pictures" in capsys.readouterr().err


def test_an_image_on_another_grid_is_left_out(tmp_path):
    reference, prediction = labelled_case()
    write_image(reference, GEOMETRY, tmp_path / "ref" / "c.nii.gz")
    write_image(prediction, GEOMETRY, tmp_path / "pred" / "c.nii.gz")
    lines = []
    written = draw_test_pictures(evaluate_folders(tmp_path / "ref", tmp_path / "pred"), tmp_path / "pics",
                                 lambda case: np.zeros((3, 3, 3)), log=lines.append)
    assert [p.name for p in written] == ["c.png"] and is_png(written[0])
    assert lines == ["c: image shape (3, 3, 3) differs from its labels' (12, 20, 20); drawn without it"]
    assert images_in_folder(tmp_path / "pred")("nothing") is None


def test_predict_with_reference_scores_and_draws(folders, model_folder, capsys):
    inp, out, truth = folders / "in", folders / "out", folders / "truth"
    geometry = odd_geometry()
    write_case(inp, "case_a", geometry=geometry)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[3:7, 5:14, 4:12] = 1
    write_image(labels, geometry, truth / "case_a.nii.gz")
    assert predict_main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta", "--reference", str(truth)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [c["case"] for c in summary["cases"]] == ["case_a"] and summary["labels"] == [1]
    assert is_png(out / "pictures" / "case_a.png")
    assert "picture(s) of prediction vs truth" in capsys.readouterr().out
    assert predict_main(["-i", str(inp), "-o", str(out), "-d", "987", "--reference", str(folders / "nope")]) == 2
