"""Connected-component postprocessing: it removes a planted spurious blob, and the cross-validation
figures decide whether it is kept; segforge_predict applies the decision (or not, when told)."""

from __future__ import annotations

import json

import numpy as np

from helpers.inference_fixtures import write_case
from segforge.cli.predict import main as predict_main
from segforge.inference.postprocessing import POSTPROCESSING_FILE, Postprocessing, remove_all_but_largest_component
from segforge.io.geometry import Geometry
from segforge.io.image import write_image
from segforge.workflows.postprocessing import decide_postprocessing, determine_postprocessing

SHAPE = (16, 32, 32)
GEOMETRY = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), SHAPE)


def ball(centre, radius=4):
    grid = np.indices(SHAPE)
    return ((grid - np.asarray(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2


def test_the_planted_blob_is_removed_and_the_object_kept():
    labels = np.zeros(SHAPE, np.uint8)
    labels[ball((8, 10, 10))] = 1
    labels[12:14, 26:28, 26:28] = 1  # a spurious blob far away
    labels[ball((8, 10, 22), 3)] = 2  # touches nothing: another object
    out = remove_all_but_largest_component(labels, [1])
    assert out[12:14, 26:28, 26:28].max() == 0 and (out == 1).sum() == ball((8, 10, 10)).sum()
    assert (out == 2).sum() == (labels == 2).sum()
    everything = remove_all_but_largest_component(labels, None)
    assert (everything == 2).sum() == 0 and (everything == 1).sum() == ball((8, 10, 10)).sum()
    assert Postprocessing(False, [1]).apply(labels).tolist() == out.tolist()


def _pairs(folder, cases):
    """Write ``(reference, prediction)`` label maps; returns the (case, reference, prediction) triples."""
    pairs = []
    for i, (reference, prediction) in enumerate(cases):
        ref, pred = folder / "ref" / f"c{i}.nii.gz", folder / "pred" / f"c{i}.nii.gz"
        write_image(reference.astype(np.uint8), GEOMETRY, ref)
        write_image(prediction.astype(np.uint8), GEOMETRY, pred)
        pairs.append((f"c{i}", str(ref), str(pred)))
    return pairs


def _case(spurious: bool, rng):
    """Label 1: a ball; label 2: two separate balls (two kidneys). The prediction is the truth, with
    a few voxels of label 1 shaved and, when ``spurious``, a far-away blob of label 1."""
    reference = np.zeros(SHAPE, np.uint8)
    reference[ball((8, 10, 10))] = 1
    reference[ball((8, 24, 8), 3)] = 2
    reference[ball((8, 24, 24), 3)] = 2
    prediction = reference.copy()
    shave = np.argwhere(reference == 1)[rng.choice(int((reference == 1).sum()), 5, replace=False)]
    prediction[tuple(shave.T)] = 0
    if spurious:
        prediction[13:15, 4:7, 26:29] = 1
    return reference, prediction


def test_kept_where_the_dice_rises_and_dropped_where_it_falls(tmp_path):
    rng = np.random.default_rng(0)
    decision = decide_postprocessing(_pairs(tmp_path, [_case(True, rng), _case(True, rng), _case(False, rng)]),
                                     [1, 2], names={1: "liver", 2: "kidney"})
    # all foreground together would delete a kidney: label 2 gets worse, so it is dropped
    foreground, label_1, label_2 = decision.cross_validation["candidates"]
    assert not foreground["kept"] and "worse for label(s) [2]" in foreground["why"]
    assert foreground["mean_dice"]["2"] < decision.cross_validation["baseline"]["mean_dice"]["2"]
    # label 1 alone: the spurious blob goes, its Dice rises -> kept; label 2 alone loses a kidney -> dropped
    assert label_1["kept"] and label_1["dice_after"] > label_1["dice_before"]
    assert not label_2["kept"] and label_2["dice_after"] < label_2["dice_before"]
    assert not decision.foreground_largest_component and decision.largest_component_labels == [1]
    assert decision.cross_validation["final"]["mean_dice"]["1"] == label_1["dice_after"]
    assert decision.describe({1: "liver"}) == "largest component of liver"


def test_nothing_is_kept_without_a_gain(tmp_path):
    rng = np.random.default_rng(1)
    decision = decide_postprocessing(_pairs(tmp_path, [_case(False, rng) for _ in range(2)]), [1, 2])
    assert not decision.does_something
    assert [c["kept"] for c in decision.cross_validation["candidates"]] == [False, False, False]


def test_the_model_folder_gets_the_decision_and_the_predictor_applies_it(folders, model_folder, capsys):
    # fold 0's validation: one case whose prediction has a spurious blob that the truth lacks
    reference = np.zeros(SHAPE, np.uint8)
    reference[ball((8, 10, 10))] = 1
    prediction = reference.copy()
    prediction[13:15, 26:29, 26:29] = 1
    validation = model_folder / "fold_0" / "validation"
    ref_file = folders / "raw" / "ref.nii.gz"
    write_image(reference, GEOMETRY, ref_file)
    write_image(prediction, GEOMETRY, validation / "case_a.nii.gz")
    (validation / "summary.json").write_text(json.dumps(
        {"cases": [{"case": "case_a", "reference": str(ref_file), "prediction": "/moved/away/case_a.nii.gz"}]}))
    decision = determine_postprocessing(model_folder, log=lambda *_: None)
    assert decision.foreground_largest_component
    saved = json.loads((model_folder / POSTPROCESSING_FILE).read_text())
    assert saved["foreground_largest_component"] and saved["cross_validation"]["folds"] == ["0"]
    assert saved["cross_validation"]["baseline"]["foreground_mean_dice"] < saved["cross_validation"]["final"][
        "foreground_mean_dice"] == 1.0

    # the predictor applies it after argmax on the original grid: probabilities with two blobs of label 1
    from segforge.inference.registry import create_predictor

    image = np.random.default_rng(0).normal(0, 1, (10, 20, 18)).astype(np.float32)
    geometry = Geometry((2.5, 0.8, 1.1), (0.0, 0.0, 0.0), np.eye(3).ravel(), image.shape)
    with_pp = create_predictor(model_folder, device="cpu", tta=False)
    without = create_predictor(model_folder, device="cpu", tta=False, postprocessing=False)
    assert without.postprocessing is None and with_pp.postprocessing.foreground_largest_component
    data, properties = with_pp.preprocess(image, geometry)
    probabilities = np.zeros((2, *data.shape[1:]), np.float32)
    probabilities[0] = 1
    probabilities[:, 2:7, 3:11, 3:9] = [[[[0.0]]], [[[1.0]]]]  # the object
    probabilities[:, 7:9, 15:18, 12:15] = [[[[0.0]]], [[[1.0]]]]  # a spurious blob apart from it
    raw, _ = without.restore(probabilities, properties)
    done, _ = with_pp.restore(probabilities, properties)
    from scipy import ndimage

    assert ndimage.label(raw > 0, np.ones((3, 3, 3)))[1] == 2 and ndimage.label(done > 0, np.ones((3, 3, 3)))[1] == 1
    assert np.all(done[done > 0] == 1) and 0 < (done > 0).sum() < (raw > 0).sum()

    # and says so when predicting (or that it is off)
    inp = folders / "in"
    write_case(inp, "x", image=image)
    assert predict_main(["-i", str(inp), "-o", str(folders / "out"), "-d", "987", "--disable-tta"]) == 0
    assert "postprocessing largest component of all foreground" in capsys.readouterr().out
    assert predict_main(["-i", str(inp), "-o", str(folders / "out2"), "-d", "987", "--disable-tta",
                         "--no-postprocessing"]) == 0
    assert "postprocessing off (--no-postprocessing)" in capsys.readouterr().out
