"""segforge_find_best_configuration: the configuration (or ensemble) with the higher CV Dice is chosen,
written with its figures, and segforge_predict -d ID predicts with it (an ensemble across configurations)."""

from __future__ import annotations

import json

import numpy as np

from helpers.inference_fixtures import write_case, write_model_folder
from helpers.plans import tiny_configuration, tiny_plans
from segforge.cli.find_best_configuration import main as find_best_main
from segforge.cli.predict import main as predict_main
from segforge.inference.ensemble import BEST_CONFIGURATION_FILE
from segforge.inference.postprocessing import POSTPROCESSING_FILE
from segforge.io.geometry import Geometry
from segforge.io.image import read_image, write_image
from segforge.workflows.best_configuration import find_best_configuration

DATASET = "Dataset986_Pick"
SHAPE = (8, 16, 16)
GEOMETRY = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), SHAPE)
R = (slice(2, 6), slice(4, 12), slice(4, 12))  # the object: 256 voxels
Q = (slice(2, 6), slice(4, 12), slice(4, 6))  # a part of it that the 2d model misses (64 voxels)


def _plans():
    return tiny_plans(tiny_configuration("2d", (16, 16), median_shape=SHAPE),
                      tiny_configuration("3d_fullres", (8, 16, 16), median_shape=SHAPE),
                      labels={"background": 0, "blob": 1}, dataset=DATASET, default="3d_fullres")


def _validated(folder, fold_probabilities: dict, references: dict, with_probabilities=True):
    """Write fold_0's validation: label maps (argmax), probabilities, summary.json with per-case Dice."""
    validation = folder / "fold_0" / "validation"
    cases = []
    for case, p1 in fold_probabilities.items():
        probabilities = np.stack([1 - p1, p1]).astype(np.float16)
        labels = probabilities.astype(np.float32).argmax(0).astype(np.uint8)
        write_image(labels, GEOMETRY, validation / f"{case}.nii.gz")
        if with_probabilities:
            np.save(validation / f"{case}_probabilities.npy", probabilities)
        ref = references[case]
        dice = 2 * np.sum((ref == 1) & (labels == 1)) / (np.sum(ref == 1) + np.sum(labels == 1))
        cases.append({"case": case, "reference": str(references[f"{case}_file"]),
                      "prediction": str(validation / f"{case}.nii.gz"), "metrics": {"1": {"dice": float(dice)}}})
    (validation / "summary.json").write_text(json.dumps({"cases": cases}))


def _constructed(folders, fp_size=3, probabilities_2d=True):
    """Two cases of one object. 3d_fullres: sure inside the object (0.9) but with a false-positive blob
    (0.6) in a corner; 2d: unsure inside (0.6), misses the part Q (0.3), no false positive. Their mean
    is right everywhere."""
    results = folders / "results"
    plans = _plans()
    model_3d = write_model_folder(results, plans, config="3d_fullres")
    model_2d = write_model_folder(results, plans, config="2d")
    references, p3d, p2d = {}, {}, {}
    for case in ("a", "b"):
        ref = np.zeros(SHAPE, np.uint8)
        ref[R] = 1
        references[case] = ref
        references[f"{case}_file"] = folders / "raw" / f"{case}.nii.gz"
        write_image(ref, GEOMETRY, references[f"{case}_file"])
        p = np.zeros(SHAPE, np.float32)
        p[R] = 0.9
        p[0:2, 0:fp_size, 0:fp_size] = 0.6
        p3d[case] = p
        p = np.zeros(SHAPE, np.float32)
        p[R] = 0.6
        p[Q] = 0.3
        p2d[case] = p
    _validated(model_3d, p3d, references)
    _validated(model_2d, p2d, references, with_probabilities=probabilities_2d)
    return model_2d, model_3d


def test_the_ensemble_wins_when_it_has_the_higher_cv_dice(folders):
    model_2d, model_3d = _constructed(folders)
    result = find_best_configuration(986, log=lambda *_: None)
    figures = {c["name"]: c["foreground_mean_dice"] for c in result["candidates"]}
    # by hand: 3d 2*256/(2*256+18) = 0.9660, 2d 2*192/(256+192) = 0.8571, the mean of both 1.0
    assert figures == {"2d": round(384 / 448, 6), "3d_fullres": round(512 / 530, 6), "2d + 3d_fullres": 1.0}
    assert result["best"]["name"] == "2d + 3d_fullres"
    assert result["best"]["model_folders"] == [model_2d.name, model_3d.name]
    assert result["best"]["ensemble_folder"] == "ensembles/SegmentationTrainer__2d+SegmentationTrainer__3d_fullres"
    written = json.loads((folders / "results" / DATASET / BEST_CONFIGURATION_FILE).read_text())
    assert written["best"] == result["best"] and "highest foreground mean Dice" in written["why"]
    # postprocessing was decided for each configuration: 3d's corner blob goes, 2d has nothing to remove
    pp_3d = json.loads((model_3d / POSTPROCESSING_FILE).read_text())
    assert pp_3d["foreground_largest_component"] and pp_3d["cross_validation"]["final"]["foreground_mean_dice"] == 1.0
    assert not json.loads((model_2d / POSTPROCESSING_FILE).read_text())["foreground_largest_component"]
    ensemble = folders / "results" / DATASET / result["best"]["ensemble_folder"]
    assert (ensemble / POSTPROCESSING_FILE).is_file()
    assert sorted(p.name for p in (ensemble / "validation").iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_the_single_configuration_with_the_higher_dice_is_chosen(folders, capsys):
    _constructed(folders, fp_size=8)  # a larger false positive: 3d 2*256/(512+128) = 0.80 < 2d 0.857
    assert find_best_main(["986", "--no-ensembles"]) == 0
    out = capsys.readouterr().out
    result = json.loads((folders / "results" / DATASET / BEST_CONFIGURATION_FILE).read_text())
    assert result["best"]["name"] == "2d" and [c["name"] for c in result["candidates"]] == ["2d", "3d_fullres"]
    assert "* 2d" in out and "best: 2d" in out


def test_an_ensemble_without_probabilities_is_skipped_saying_how_to_get_them(folders):
    _constructed(folders, probabilities_2d=False)
    result = find_best_configuration(986, log=lambda *_: None)
    assert result["best"]["name"] == "3d_fullres"
    (skipped,) = result["skipped"]
    assert skipped["name"] == "2d + 3d_fullres"
    assert "--validation-only --save-probabilities" in skipped["why"]


def test_predict_uses_the_chosen_ensemble(folders, capsys):
    _constructed(folders)
    find_best_configuration(986, log=lambda *_: None)
    inp = folders / "in"
    write_case(inp, "x", image=np.random.default_rng(0).normal(0, 1, SHAPE).astype(np.float32), geometry=GEOMETRY)
    outputs = {}
    for name, extra in (("ensemble", []), ("2d", ["-c", "2d"]), ("3d", ["-c", "3d_fullres"])):
        assert predict_main(["-i", str(inp), "-o", str(folders / name), "-d", "986", "--disable-tta",
                             "--save-probabilities", *extra]) == 0
        outputs[name] = (read_image(folders / name / "x.nii.gz")[0],
                         np.load(folders / name / "x_probabilities.npy").astype(np.float32))
        if name == "ensemble":
            assert "(best_configuration.json)" in capsys.readouterr().out
    mean = (outputs["2d"][1] + outputs["3d"][1]) / 2
    np.testing.assert_allclose(outputs["ensemble"][1], mean, atol=2e-3)
    clear = np.abs(mean[1] - mean[0]) > 1e-2
    np.testing.assert_array_equal(outputs["ensemble"][0][clear], mean.argmax(0)[clear])


def test_worker_processes_build_the_chosen_ensemble_and_keep_no_postprocessing(folders):
    """What travels to worker processes (PredictorSpec) rebuilds the ensemble with its members and its
    postprocessing folder, and --no-postprocessing stays off there."""
    from segforge.inference.ensemble import EnsemblePredictor, chosen_model, create_chosen_predictor
    from segforge.inference.pipeline import PredictorSpec

    model_2d, model_3d = _constructed(folders)
    find_best_configuration(986, log=lambda *_: None)
    ensemble = create_chosen_predictor(*chosen_model(986), device="cpu", tta=False)
    rebuilt = PredictorSpec.of(ensemble).load()
    assert isinstance(rebuilt, EnsemblePredictor)
    assert [m.model.path for m in rebuilt.members] == [model_2d, model_3d]
    assert rebuilt.folder == ensemble.folder and rebuilt.postprocessing is not None
    assert all(m.postprocessing is None for m in rebuilt.members)  # only the ensemble's decision applies

    single = create_chosen_predictor([model_3d], None, device="cpu", tta=False, postprocessing=False)
    assert PredictorSpec.of(single).load().postprocessing is None  # 3d has a postprocessing.json: not applied
    assert PredictorSpec.of(create_chosen_predictor([model_3d], None, device="cpu", tta=False)
                            ).load().postprocessing.foreground_largest_component
