"""The training loop on a tiny hand-written preprocessed dataset (CPU)."""

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import pytest
import torch

from helpers.fake_preprocessed import make_plans, write_fake_dataset

from segforge.data.augmentation import AugmentationSettings
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer

NO_AUGMENTATION = AugmentationSettings(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0,
                                       p_contrast=0, p_low_resolution=0, p_gamma=0, p_gamma_inverted=0)


def options(**kw):
    base = dict(epochs=2, iters_per_epoch=3, val_iters=2, num_workers=0, cpu_threads=1, progress_bar=False)
    base.update(kw)
    return TrainingOptions(**base)


def trainer(tmp_path, opts, configuration="3d_fullres", plans=None, fold=0):
    torch.set_num_threads(1)
    folder = write_fake_dataset(tmp_path / "pre", plans=plans)
    from segforge.planning.plans import Plans

    plans = Plans.load(folder / "plans.json")
    out = tmp_path / "results" / f"SegmentationTrainer__{configuration}" / f"fold_{fold}"
    return SegmentationTrainer(plans, configuration, fold, output_folder=out, device="cpu", options=opts,
                               preprocessed_dir=folder, log=lambda *_: None)


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(path).ndim == 3


def test_short_run_writes_every_output(tmp_path):
    t = trainer(tmp_path, options())
    out = t.run()
    for name in ("checkpoint_latest.pt", "checkpoint_best.pt", "checkpoint_final.pt", "log.csv",
                 "training_options.json"):
        assert (out / name).is_file(), name
    for name in ("progress.png", "train_example.png", "val_pred.png", "val_truth.png"):
        assert is_png(out / name), name
    assert (out.parent / "plans.json").is_file() and (out.parent / "dataset.json").is_file()
    assert (tmp_path / "pre" / "Dataset999_Fake" / "splits.json").is_file()
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert set(rows[0]) >= {"train_loss", "val_loss", "dice_ball", "dice_cube", "mean_dice", "ema_dice", "lr",
                            "epoch_seconds", "iters_per_second"}
    ckpt = torch.load(out / "checkpoint_final.pt", weights_only=True)
    assert ckpt["trainer"] == "SegmentationTrainer" and ckpt["configuration"] == "3d_fullres" and ckpt["fold"] == "0"
    assert ckpt["epoch"] == 1 and [row["epoch"] for row in ckpt["log"]] == [0, 1]
    assert ckpt["best"] == max(row["ema_dice"] for row in ckpt["log"]) and ckpt["amp_dtype"] == "float32"
    assert set(ckpt["rng_states"]) >= {"python", "numpy", "torch"}
    for key in ("plans", "network_state", "optimizer_state", "scheduler_state", "grad_scaler_state"):
        assert key in ckpt
    assert not list(out.glob("*.tmp*"))


def test_2d_configuration_trains(tmp_path):
    out = trainer(tmp_path, options(epochs=1, val_plot_every=1), configuration="2d").run()
    assert torch.load(out / "checkpoint_final.pt", weights_only=True)["configuration"] == "2d"
    assert is_png(out / "val_pred.png")


@pytest.mark.slow
def test_learns_easy_blobs(tmp_path):
    """Forty iterations on bright balls: the loss falls and the pseudo-Dice is clearly non-trivial."""
    opts = options(epochs=4, iters_per_epoch=10, val_iters=4, augmentation=NO_AUGMENTATION)
    t = trainer(tmp_path, opts, plans=make_plans(with_cube=False))
    t.run()
    log = t.history
    assert log[-1]["train_loss"] < 0.8 * log[0]["train_loss"]
    assert log[-1]["val_loss"] < log[0]["val_loss"]
    assert log[-1]["dice"][0] > 0.5


@pytest.mark.slow
def test_deterministic_runs_repeat_exactly(tmp_path):
    losses = []
    for run in range(2):
        t = trainer(tmp_path / str(run), options(epochs=2, iters_per_epoch=3, deterministic=True, seed=3))
        t.run()
        losses.append([(r["train_loss"], r["val_loss"], r["dice"]) for r in t.history])
    assert losses[0] == losses[1]
    other = trainer(tmp_path / "other", options(epochs=2, iters_per_epoch=3, deterministic=True, seed=4))
    other.run()
    assert other.history.column("train_loss") != [r[0] for r in losses[0]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_run_and_resume(tmp_path):
    opts = options(epochs=2, num_workers=1)
    t = trainer(tmp_path, opts)
    t.device = torch.device("cuda")
    out = t.run()
    assert t.amp_dtype in (torch.bfloat16, torch.float16)
    ckpt = torch.load(out / "checkpoint_latest.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and all(math.isfinite(r["train_loss"]) for r in ckpt["log"])
    assert ckpt["amp_dtype"] == ("bfloat16" if torch.cuda.get_device_capability() >= (8, 0) else "float16")
    more = trainer(tmp_path / "more", options(epochs=3, num_workers=1))
    more.device, more.output_folder = torch.device("cuda"), out
    more.run(resume=True)
    assert more.history.column("epoch") == [0, 1, 2]


def test_augmentation_on_the_device_trains_and_resumes_in_step(tmp_path):
    """``--augment-on gpu`` with the torch module on the CPU: the example picture is the augmented batch, and
    with in-process loading a resumed run repeats the uninterrupted one's losses (the draws' stream is
    in the checkpoint)."""
    full = trainer(tmp_path / "full", options(augment_on="gpu", seed=9))
    out = full.run()
    assert is_png(out / "train_example.png")
    assert json.loads((out / "training_options.json").read_text())["augment_on"] == "gpu"
    half = trainer(tmp_path / "half", options(augment_on="gpu", seed=9))
    half.stop_reason = lambda epoch, iteration=None: "interrupted" if iteration is None else None
    half.run()
    assert half.history.column("epoch") == [0]
    resumed = trainer(tmp_path / "half", options(augment_on="gpu", seed=9))
    resumed.run(resume=True)
    timings = ("epoch_seconds", "iters_per_second")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timings} for r in rows]  # noqa: E731
    assert strip(resumed.history.to_list()) == strip(full.history.to_list())


def test_a_compiled_network_trains_and_checkpoints_its_plain_weights(tmp_path):
    """``--compile``: the steps call the compiled module (backend "eager" here: the wrapping without the
    compiler, which takes minutes on a CPU), the checkpoint holds the plain module's weights."""
    t = trainer(tmp_path, options(compile=True, epochs=1))
    t.compile_backend = "eager"
    out = t.run()
    assert t.compiled and t.network is not t.plain_network
    assert isinstance(t.network, torch._dynamo.eval_frame.OptimizedModule)
    state = torch.load(out / "checkpoint_final.pt", weights_only=True)["network_state"]
    assert state.keys() == t.plain_network.state_dict().keys()
    assert json.loads((out / "training_options.json").read_text())["compile"] is True
