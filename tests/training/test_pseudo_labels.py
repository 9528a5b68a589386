"""Self-distillation (--pseudo-labels): predicted cases join every fold's training batches, never its
validation; their probabilities become soft targets; the prediction folder's manifest is the contract."""

import json

import numpy as np
import pytest
import torch

from helpers.fake_preprocessed import make_case, write_fake_dataset

from segforge.errors import InputError
from segforge.inference.inputs import InputCase
from segforge.inference.outputs import write_prediction_manifest
from segforge.io.geometry import Geometry
from segforge.io.image import write_image
from segforge.planning.plans import Plans
from segforge.preprocessing.pseudo_labels import PSEUDO_PREFIX, read_prediction_manifest
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer

GEOMETRY = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), (20, 40, 40))


def write_predictions(folder, names, probabilities=False, seed=5):
    """What segforge_predict leaves: images elsewhere, label files (+ probabilities) and predictions.json."""
    rng = np.random.RandomState(seed)
    cases = []
    for name in names:
        image, labels = make_case(rng)
        image = image[0] + 5.0  # non-zero everywhere: the crop to non-zero keeps the whole image
        source = folder.parent / "unlabelled" / f"{name}_0000.nii.gz"
        write_image(image, GEOMETRY, source)
        write_image(labels.astype(np.uint8), GEOMETRY, folder / f"{name}.nii.gz")
        if probabilities:
            p = np.stack([(labels == k).astype(np.float32) for k in range(3)])
            p = 0.8 * p + 0.2 / 3  # softened: 0.8667 for the label, 0.0667 for the others
            np.save(folder / f"{name}_probabilities.npy", p.astype(np.float16))
        cases.append(InputCase(name, [source], ".nii.gz"))
    write_prediction_manifest(folder, folder.parent / "model", "3d_fullres", {"background": 0, "ball": 1, "cube": 2},
                              cases, names)
    return folder


def trainer(tmp_path, **kw):
    torch.set_num_threads(1)
    folder = write_fake_dataset(tmp_path / "pre")
    options = TrainingOptions(epochs=1, iters_per_epoch=2, val_iters=3, num_workers=0, cpu_threads=1,
                              progress_bar=False, plots=False, **kw)
    lines = []
    t = SegmentationTrainer(Plans.load(folder / "plans.json"), "3d_fullres", 0, output_folder=tmp_path / "out",
                            device="cpu", options=options, preprocessed_dir=folder, log=lines.append)
    t.lines = lines
    return t


def test_pseudo_labelled_cases_are_in_training_batches_and_never_in_validation(tmp_path):
    predictions = write_predictions(tmp_path / "preds", ["u1", "u2", "u3"])
    t = trainer(tmp_path, pseudo_labels=str(predictions), pseudo_weight=3.0)
    t.initialize()
    assert t.pseudo_cases == [f"{PSEUDO_PREFIX}u1", f"{PSEUDO_PREFIX}u2", f"{PSEUDO_PREFIX}u3"]
    assert not set(t.pseudo_cases) & set(t.val_cases + t.train_cases)
    sampler = t.build_training_sampler()
    # 4 labelled cases of weight 1, 3 pseudo-labelled of weight 3: 1/13 and 3/13 each
    assert len(t.train_cases) == 4
    np.testing.assert_allclose(sampler.case_probabilities, [1 / 13] * 4 + [3 / 13] * 3)
    t.train_loader = t.make_training_loader()
    keys = [k for _ in range(12) for k in next(t.train_loader)["keys"]]
    assert any(k.startswith(PSEUDO_PREFIX) for k in keys) and any(k in t.train_cases for k in keys)
    val_keys = {k for _ in range(3) for k in next(t.val_loader)["keys"]}
    assert val_keys <= set(t.val_cases)
    for loader in (t.train_loader, t.val_loader):
        loader.close()
    assert any("3 pseudo-labelled training case(s)" in line for line in t.lines)


def test_pseudo_labelled_case_preprocessed_like_the_others(tmp_path):
    predictions = write_predictions(tmp_path / "preds", ["u1"], probabilities=True)
    t = trainer(tmp_path, pseudo_labels=str(predictions))
    t.initialize()
    key = f"{PSEUDO_PREFIX}u1"
    props = t.store.properties(key)
    assert props["pseudo_label_source"]["labels"].endswith("u1.nii.gz") and props["crop_box"] == [[0, 20], [0, 40],
                                                                                                   [0, 40]]
    seg = np.asarray(t.store.seg(key))
    soft = np.asarray(t.store.soft(key), dtype=np.float32)
    assert soft.shape == (3, 20, 40, 40)
    # spacing 1 -> 1 and no crop: the probabilities come through unchanged (float16)
    expected = np.stack([(seg == k) * 0.8 + 0.2 / 3 for k in range(3)])
    np.testing.assert_allclose(soft, expected, atol=2e-3)
    assert t.soft_classes == 3


def test_soft_targets_reach_the_loss_and_labelled_cases_stay_one_hot(tmp_path):
    predictions = write_predictions(tmp_path / "preds", ["u1", "u2"], probabilities=True)
    t = trainer(tmp_path, pseudo_labels=str(predictions), pseudo_weight=2.0)
    t.initialize()
    t.train_loader = t.make_training_loader()
    seen = set()
    for _ in range(8):
        batch = next(t.train_loader)
        soft, target = batch["soft"].float(), batch["target"][:, 0].long()
        assert soft.shape == (len(target), 3, *target.shape[1:])
        torch.testing.assert_close(soft.sum(1), torch.ones_like(soft[:, 0]), atol=3e-3, rtol=0)
        for i, key in enumerate(batch["keys"]):
            onehot = torch.nn.functional.one_hot(target[i], 3).permute(3, 0, 1, 2).float()
            if key.startswith(PSEUDO_PREFIX):
                seen.add("pseudo")
                # the softened probabilities (outside the image, where the patch was padded: background 1)
                assert ((soft[i] - 0.8667).abs() < 2e-3).any() and not torch.equal(soft[i], onehot)
            else:
                seen.add("labelled")
                torch.testing.assert_close(soft[i], onehot)
        assert torch.isfinite(t.training_loss(t.prepare_batch(batch)))
    assert seen == {"pseudo", "labelled"}
    t.train_loader.close()
    t.val_loader.close()


def test_soft_targets_through_the_device_augmentation(tmp_path):
    """--augment-on gpu: the label boxes carry the probabilities (1 + K channels) through the same spatial
    transform; labelled cases stay one-hot, pseudo-labelled ones keep their probabilities."""
    predictions = write_predictions(tmp_path / "preds", ["u1", "u2"], probabilities=True)
    t = trainer(tmp_path, pseudo_labels=str(predictions), pseudo_weight=2.0, augment_on="gpu")
    t.initialize()
    t.train_loader = t.make_training_loader()
    seen = set()
    for _ in range(6):
        batch = t.prepare_batch(next(t.train_loader))
        soft, target = batch["soft"], batch["target"][:, 0].long()
        assert soft.shape == (len(target), 3, *target.shape[1:]) and batch["data"].shape[2:] == target.shape[1:]
        torch.testing.assert_close(soft.sum(1), torch.ones_like(soft[:, 0]), atol=3e-3, rtol=0)
        for i, key in enumerate(batch["keys"]):
            onehot = torch.nn.functional.one_hot(target[i], 3).permute(3, 0, 1, 2).float()
            if key.startswith(PSEUDO_PREFIX):
                seen.add("pseudo")
                assert ((soft[i] - 0.8667).abs() < 2e-3).any()
                # the probabilities moved with the labels: the predicted label is the likeliest class
                assert torch.equal(soft[i].argmax(0), target[i])
            else:
                seen.add("labelled")
                torch.testing.assert_close(soft[i], onehot)
        assert torch.isfinite(t.training_loss(batch))
    assert seen == {"pseudo", "labelled"}
    t.train_loader.close()
    t.val_loader.close()


def test_a_whole_run_with_pseudo_labels(tmp_path):
    predictions = write_predictions(tmp_path / "preds", ["u1"], probabilities=True)
    t = trainer(tmp_path, pseudo_labels=str(predictions))
    t.run()
    options = json.loads((tmp_path / "out" / "training_options.json").read_text())
    assert options["pseudo_labels"] == str(predictions) and np.isfinite(t.history[-1]["train_loss"])


def test_the_manifest_is_checked(tmp_path):
    folder = tmp_path / "preds"
    folder.mkdir()
    with pytest.raises(InputError, match="folder written by segforge_predict"):
        read_prediction_manifest(folder)
    write_predictions(folder, ["u1"])
    (folder / "u1.nii.gz").unlink()
    with pytest.raises(InputError, match="case u1: u1.nii.gz is missing"):
        read_prediction_manifest(folder)


def test_labels_the_dataset_does_not_have_are_refused(tmp_path):
    predictions = write_predictions(tmp_path / "preds", ["u1"])
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[2:4, 2:4, 2:4] = 7
    write_image(labels, GEOMETRY, predictions / "u1.nii.gz")
    t = trainer(tmp_path, pseudo_labels=str(predictions))
    with pytest.raises(InputError, match=r"predicted label values \[7\] are not labels of this dataset"):
        t.initialize()


def test_bad_pseudo_weight_is_refused():
    with pytest.raises(InputError, match="--pseudo-weight must be a positive number"):
        TrainingOptions(pseudo_weight=0)


def test_segforge_predict_writes_the_manifest(folders, model_folder):
    from helpers.inference_fixtures import write_case

    from segforge.cli.predict import main as predict_main

    inp, out = folders / "in", folders / "out"
    write_case(inp, "a")
    assert predict_main(["-i", str(inp), "-o", str(out), "-d", "987", "--disable-tta", "--save-probabilities"]) == 0
    write_case(inp, "b")
    assert predict_main(["-i", str(inp / "b_0000.nii.gz"), "-o", str(out), "-d", "987", "--disable-tta"]) == 0
    manifest = json.loads((out / "predictions.json").read_text())
    assert manifest["model_folder"] == str(model_folder.absolute()) and manifest["configuration"] == "3d_fullres"
    assert manifest["cases"] == [  # an earlier run's case is kept
        {"case": "a", "images": [str((inp / "a_0000.nii.gz").absolute())], "is_dicom": False, "series_uids": [],
         "labels": "a.nii.gz", "probabilities": "a_probabilities.npy"},
        {"case": "b", "images": [str((inp / "b_0000.nii.gz").absolute())], "is_dicom": False, "series_uids": [],
         "labels": "b.nii.gz", "probabilities": None}]
    assert [c.name for c in read_prediction_manifest(out)] == ["a", "b"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_round_trip_train_predict_unlabelled_train_with_them(folders, monkeypatch, capsys):
    """segforge_train -> segforge_predict (unlabelled scans, --save-probabilities) -> segforge_train --pseudo-labels."""
    from segforge.cli.predict import main as predict_main
    from segforge.cli.train import main as train_main
    from segforge.synthetic import make_synthetic_dataset
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    raw = make_synthetic_dataset(993, "Distil", kind="organs", num_train=3, num_test=2, shape=(16, 32, 32))
    plan_and_preprocess(993, num_processes=1, gpu_memory_gb=0.1, configurations=["3d_fullres"], progress=False,
                        log=lambda *_: None)
    common = ["--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
              "--no-progress-bar", "--no-plots", "-c", "3d_fullres", "--no-validation"]
    assert train_main(["993", "all", *common]) == 0
    predictions = folders / "unlabelled_predictions"
    assert predict_main(["-i", str(raw / "imagesTs"), "-o", str(predictions), "-d", "993", "-c", "3d_fullres",
                         "-f", "all", "--disable-tta", "--save-probabilities"]) == 0
    capsys.readouterr()
    assert train_main(["993", "0", *common, "--pseudo-labels", str(predictions), "--pseudo-weight", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "2 pseudo-labelled training case(s)" in out and "soft targets" in out
    stored = list((folders / "preprocessed" / "Dataset993_Distil" / "pseudo_labels").glob("*/3d_fullres/*_soft.npy"))
    assert len(stored) == 2
