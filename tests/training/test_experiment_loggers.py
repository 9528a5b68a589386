"""--logger tensorboard|wandb: the numbers of log.csv and the pictures really reach the logger's files,
and can be read back (TensorBoard's event reader; W&B's offline transaction log)."""

import csv
import sys

import pytest
import torch

from helpers.fake_preprocessed import write_fake_dataset

from segforge.errors import InputError
from segforge.planning.plans import Plans
from segforge.training.experiment_loggers import row_scalars
from segforge.training.options import TrainingOptions
from segforge.training.reporting import EpochReporter
from segforge.training.segmentation_trainer import SegmentationTrainer


def train(tmp_path, logger, epochs=2):
    torch.set_num_threads(1)
    folder = write_fake_dataset(tmp_path / "pre")
    plans = Plans.load(folder / "plans.json")
    options = TrainingOptions(epochs=epochs, iters_per_epoch=2, val_iters=1, num_workers=0, cpu_threads=1,
                              progress_bar=False, logger=logger, val_plot_every=1)
    out = tmp_path / "results" / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres" / "fold_0"
    trainer = SegmentationTrainer(plans, "3d_fullres", 0, output_folder=out, device="cpu", options=options,
                                  preprocessed_dir=folder, log=lambda *_: None)
    return trainer.run(), trainer


def csv_rows(fold):
    return list(csv.DictReader((fold / "log.csv").open()))


EXPECTED_TAGS = {"train_loss", "val_loss", "dice/ball", "dice/cube", "mean_dice", "ema_dice", "lr", "epoch_seconds",
                 "iters_per_second"}
PICTURES = {"train_example", "val_pred", "val_truth", "progress"}


def test_row_scalars_spreads_lists_and_drops_missing_values():
    row = {"epoch": 3, "train_loss": 0.5, "dice": [0.25, float("nan")], "lr": 1e-2, "note": None}
    assert row_scalars(row, ["epoch", "train_loss", "dice", "lr", "note"], {"dice": ["liver", "tumour"]}) == \
        {"train_loss": 0.5, "dice/liver": 0.25, "lr": 1e-2}


def test_tensorboard_events_hold_the_log_and_the_pictures(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fold, _ = train(tmp_path, "tensorboard")
    events = EventAccumulator(str(fold / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == EXPECTED_TAGS
    rows = csv_rows(fold)
    for tag, column in (("train_loss", "train_loss"), ("dice/ball", "dice_ball"), ("ema_dice", "ema_dice")):
        logged = events.Scalars(tag)
        assert [e.step for e in logged] == [0, 1]
        assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in rows], rel=1e-5)
    assert set(tags["images"]) == PICTURES
    assert [e.step for e in events.Images("val_pred")] == [0, 1]
    assert events.Images("train_example")[0].step == 0
    picture = events.Images("val_truth")[-1]
    assert picture.width > 100 and picture.height > 100 and picture.encoded_image_string[:4] == b"\x89PNG"


def test_wandb_offline_run_holds_the_log_and_the_pictures(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from helpers.wandb_records import history_rows

    for variable in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))  # no account, no settings of the user
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    fold, trainer = train(tmp_path, "wandb")
    runs = sorted((fold / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "offline by default: an offline-run-* folder to sync later"
    run_id = (fold / "wandb" / "run_id").read_text().strip()
    log_file = runs[0] / f"run-{run_id}.wandb"
    rows = history_rows(log_file)
    numbers = [r for r in rows if "train_loss" in r]
    assert [r["epoch"] for r in numbers] == [0, 1]
    assert set(numbers[0]) >= EXPECTED_TAGS
    expected = csv_rows(fold)
    assert [r["dice/ball"] for r in numbers] == pytest.approx([float(r["dice_ball"]) for r in expected], rel=1e-5)
    images = {key.split("/")[0]: r["epoch"] for r in rows for key in r if key.endswith("/_type")}
    assert set(images) == PICTURES
    assert len(list((runs[0] / "files" / "media" / "images").glob("*.png"))) >= len(PICTURES)

    # --continue goes on in the same run (same id, a new offline folder that wandb sync merges)
    more = TrainingOptions(epochs=3, iters_per_epoch=2, val_iters=1, num_workers=0, cpu_threads=1,
                           progress_bar=False, logger="wandb", plots=False)
    resumed = SegmentationTrainer(trainer.plans, "3d_fullres", 0, output_folder=fold, device="cpu", options=more,
                                  preprocessed_dir=trainer.preprocessed_dir, log=lambda *_: None)
    resumed.run(resume=True)
    assert (fold / "wandb" / "run_id").read_text().strip() == run_id
    later = [p for p in (fold / "wandb").glob(f"offline-run-*/run-{run_id}.wandb") if p != log_file]
    assert len(later) == 1 and [r["epoch"] for r in history_rows(later[0]) if "train_loss" in r] == [2]


def test_unknown_logger_is_refused_with_did_you_mean():
    with pytest.raises(InputError, match="did you mean 'tensorboard'"):
        TrainingOptions(logger="tensorbord")


@pytest.mark.parametrize("logger, module, package", [("tensorboard", "torch.utils.tensorboard", "tensorboard"),
                                                     ("wandb", "wandb", "wandb")])
def test_a_missing_logger_package_says_what_to_install(tmp_path, monkeypatch, logger, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(InputError, match=f"pip install {package}"):
        EpochReporter(tmp_path / "r" / "m" / "fold_0", TrainingOptions(logger=logger))


def test_no_logger_and_non_writing_processes_log_nothing(tmp_path):
    reporter = EpochReporter(tmp_path, TrainingOptions(logger="tensorboard"), writes_files=False)
    reporter.close()
    assert not (tmp_path / "tensorboard").exists()
    reporter = EpochReporter(tmp_path, TrainingOptions())
    reporter.close()
    assert list(tmp_path.iterdir()) == []
