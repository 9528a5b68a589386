"""Training faults of issue 18: re-planning under trained folds (item 3), a split frozen from an
interrupted preprocessing (item 4), a run that diverges (item 6), a one-case dataset."""

from __future__ import annotations

import hashlib
import json
import shutil

from harness import assert_refused, run, tree_hashes

TRAIN = ["--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--no-progress-bar",
         "--no-validation", "--device", "cpu"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dataset(folders, dataset_id=971, name="Folds", n=5):
    from segforge.synthetic import make_synthetic_dataset

    make_synthetic_dataset(dataset_id, name, num_train=n, num_test=1, shape=(12, 24, 24), raw_root=folders / "raw")
    return f"Dataset{dataset_id}_{name}"


def _plan(dataset_id, *extra):
    answer = run("plan", ["-d", dataset_id, "-np", "1", "--gpu-memory-gb", "0.2", *extra])
    assert answer.code == 0, answer.err
    return answer


def test_3_replanning_then_training_one_fold_never_silently_changes_the_others(folders, tmp_path):
    name = _dataset(folders)
    _plan(971)
    assert run("train", ["971", "2", *TRAIN]).code == 0
    model = next((folders / "results" / name).iterdir())
    kept = tree_hashes(model)
    out_before = tmp_path / "before"
    images = folders / "raw" / name / "imagesTs"
    assert run("predict", ["-i", images, "-o", out_before, "-m", model, "-f", "2", "--disable-tta"]).code == 0

    _plan(971, "--spacing", "3", "2", "2")  # re-planned: another spacing, so other preprocessing
    answer = run("train", ["971", "1", *TRAIN])
    assert_refused(answer, 2, model.name, r"fold\(s\) 2 in this model folder were trained with other plans .* "
                                          r"move or delete fold\(s\) 2")
    assert tree_hashes(model) == kept  # plans.json and fold 2 untouched, no fold 1 started
    out_after = tmp_path / "after"
    assert run("predict", ["-i", images, "-o", out_after, "-m", model, "-f", "2", "--disable-tta"]).code == 0
    assert {p.name: _digest(p) for p in out_after.iterdir()} == {p.name: _digest(p) for p in out_before.iterdir()}

    # had plans.json been replaced under fold 2 anyway (by hand, or by an older segforge), prediction refuses it
    shutil.copyfile(folders / "preprocessed" / name / "plans.json", model / "plans.json")
    assert_refused(run("predict", ["-i", images, "-o", tmp_path / "x", "-m", model, "-f", "2", "--disable-tta"]), 2,
                   "checkpoint_final.pt", r"trained with other plans")


def test_4_training_refuses_an_interrupted_preprocessing_and_splits_follow_all_cases(folders):
    name = _dataset(folders, 972, "Split", n=6)
    _plan(972)
    cases = folders / "preprocessed" / name / "3d_fullres"
    for victim in ("case_002", "case_003", "case_004", "case_005"):  # as a kill after 2 of 6 cases leaves it
        for p in cases.glob(f"{victim}*"):
            p.unlink()
    answer = run("train", ["972", "0", *TRAIN])
    assert_refused(answer, 2, "3d_fullres", r"preprocessing is incomplete: 4 of 6 cases are missing \(case_002, "
                                            r"case_003, case_004, case_005\); run segforge_plan_and_preprocess again")
    assert not (folders / "preprocessed" / name / "splits.json").exists()  # no split frozen from 2 cases
    _plan(972)  # the same command finishes the preprocessing
    assert run("train", ["972", "0", *TRAIN]).code == 0
    splits = json.loads((folders / "preprocessed" / name / "splits.json").read_text())
    assert sorted({c for f in splits["folds"] for c in f["train"] + f["val"]}) == [f"case_{i:03d}" for i in range(6)]


def test_6_a_diverging_run_stops_with_one_line_and_keeps_the_last_good_checkpoint(folders, monkeypatch):
    from helpers.fake_preprocessed import write_fake_dataset

    from segforge.training.segmentation_trainer import SegmentationTrainer

    write_fake_dataset(folders / "preprocessed", n_cases=4)
    fold = folders / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    argv = ["999", "0", "--epochs", "3", "--iters-per-epoch", "2", "--val-iters", "1", "--num-workers", "0",
            "--no-progress-bar", "--no-validation", "--device", "cpu"]
    real_before_epoch = SegmentationTrainer.before_epoch

    def poison_in_epoch_1(self, epoch):  # the weights go NaN in epoch 1, as a diverging run's do
        real_before_epoch(self, epoch)
        if epoch == 1:
            next(self.network.parameters()).data.fill_(float("nan"))

    monkeypatch.setattr(SegmentationTrainer, "before_epoch", poison_in_epoch_1)
    answer = run("train", argv)
    assert_refused(answer, 2, "fold_0", r"training diverged in epoch 1: the weights became NaN or infinite; stopped "
                                        r"without saving this epoch; checkpoint_latest.pt \(epoch 0\) is the last good")
    import torch

    latest = torch.load(fold / "checkpoint_latest.pt", weights_only=True)
    assert latest["epoch"] == 0 and all(torch.isfinite(t).all() for t in latest["network_state"].values()
                                        if t.is_floating_point())
    assert not (fold / "checkpoint_final.pt").exists()
    assert [r["epoch"] for r in __import__("csv").DictReader((fold / "log.csv").open())] == ["0"]


def test_6_a_learning_rate_that_diverges_at_once_stops_before_any_checkpoint(folders):
    from helpers.fake_preprocessed import write_fake_dataset

    write_fake_dataset(folders / "preprocessed", n_cases=4)
    fold = folders / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    answer = run("train", ["999", "0", "--lr", "1e30", "--epochs", "2", "--iters-per-epoch", "3", "--val-iters", "1",
                           "--num-workers", "0", "--no-progress-bar", "--no-validation", "--device", "cpu"])
    assert_refused(answer, 2, "fold_0", r"training diverged in epoch 0: .* no checkpoint had been written yet; "
                                        r"lower the learning rate \(--lr, now 1e\+30\)")
    assert not list(fold.glob("checkpoint_*.pt"))


def test_a_single_case_dataset_trains_fold_all_and_refuses_fold_0_saying_why(folders):
    from helpers.fake_preprocessed import write_fake_dataset

    write_fake_dataset(folders / "preprocessed", n_cases=1)
    argv = ["--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--no-progress-bar",
            "--no-validation", "--device", "cpu"]
    answer = run("train", ["999", "all", *argv])
    assert answer.code == 0, answer.err
    assert_refused(run("train", ["999", "0", *argv]), 2, None,
                   r"fold 0 does not exist: 1 training case: too few for cross-validation; only fold 'all' trains")


def test_training_refuses_a_patch_that_cannot_fit_before_building_the_network(folders):
    from helpers.fake_preprocessed import write_fake_dataset

    dataset = write_fake_dataset(folders / "preprocessed", n_cases=2)
    plans = json.loads((dataset / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["patch_size"] = [1024, 1024, 1024]
    (dataset / "plans.json").write_text(json.dumps(plans))
    answer = run("train", ["999", "all", *TRAIN])
    assert_refused(answer, 2, "plans.json", r"training 3d_fullres with patch 1024x1024x1024 at batch 2 needs about "
                                            r"[\d.]+ (GB|TB) \(estimate\), but the cpu has [\d.]+ GB available")
    assert not (folders / "results" / "Dataset999_Fake").exists()
