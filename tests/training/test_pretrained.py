"""Fine-tuning (`--pretrained-weights`): matching weights loaded, the head replaced, other families refused,
and a start from a checkpoint trained on other classes beats a start from scratch."""

from __future__ import annotations

import json

import pytest
import torch

from helpers.fake_preprocessed import make_plans, write_fake_dataset
from segforge.cli import train as train_cli
from segforge.errors import InputError
from segforge.networks import build_network
from segforge.planning.plans import Plans
from segforge.training.options import TrainingOptions
from segforge.training.pretrained import load_pretrained_weights
from segforge.training.segmentation_trainer import SegmentationTrainer

NO_AUGMENTATION = dict(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                       p_low_resolution=0, p_gamma=0, p_gamma_inverted=0)


def _train(root, plans, epochs, iters, pretrained=None, seed=0, lines=None):
    torch.set_num_threads(1)
    folder = write_fake_dataset(root / "pre", plans=plans, n_cases=4, seed=seed)
    options = TrainingOptions(epochs=epochs, iters_per_epoch=iters, val_iters=1, num_workers=0, cpu_threads=1,
                              progress_bar=False, plots=False, initial_lr=1e-2, pretrained_weights=pretrained,
                              augmentation=NO_AUGMENTATION)
    out = root / "results" / "SegmentationTrainer__3d_fullres" / "fold_0"
    trainer = SegmentationTrainer(Plans.load(folder / "plans.json"), "3d_fullres", 0, output_folder=out,
                                  device="cpu", options=options, preprocessed_dir=folder,
                                  log=(lines.append if lines is not None else (lambda *_: None)))
    trainer.run()
    return trainer, out


@pytest.fixture(scope="module")
def source_checkpoint(tmp_path_factory):
    """A network trained on ball + cube (3 classes) for 60 iterations."""
    root = tmp_path_factory.mktemp("source")
    _, out = _train(root, make_plans(with_cube=True), epochs=3, iters=20, seed=1)
    return out / "checkpoint_final.pt"


def test_other_classes_load_everything_but_the_head(source_checkpoint, tmp_path):
    plans = make_plans(with_cube=False)  # ball only: 2 classes
    configuration = plans.configuration("3d_fullres")
    torch.manual_seed(0)
    network = build_network(configuration, 1, 2)
    fresh_heads = {k: v.clone() for k, v in network.state_dict().items() if k.startswith("heads.")}
    report = load_pretrained_weights(network, source_checkpoint, configuration)
    source = torch.load(source_checkpoint, weights_only=True)["network_state"]
    state = network.state_dict()
    assert report.loaded and all(torch.equal(state[k], source[k]) for k in report.loaded)
    assert set(report.fresh) == set(fresh_heads)  # only the heads differ (3 outputs there, 2 here)
    assert all(torch.equal(state[k], fresh_heads[k]) for k in fresh_heads)
    assert all("output head replaced: 3 outputs in the checkpoint, 2 here" in why for why in report.fresh.values())
    lines = report.lines()
    assert lines[0].startswith(f"pretrained weights {source_checkpoint}: loaded {len(report.loaded)} of ")
    assert any("heads.0.weight" in line for line in lines[1:])


def test_another_family_is_refused_in_one_line(source_checkpoint):
    plans = make_plans(with_cube=False)
    configuration = plans.configuration("3d_fullres")
    configuration.network.name = "residual_unet"
    network = build_network(configuration, 1, 2)
    with pytest.raises(InputError, match=r"holds a unet network; this plan trains residual_unet: fine-tuning needs "
                                         r"the same network family \(plan with --network unet"):
        load_pretrained_weights(network, source_checkpoint, configuration)
    flat = plans.configuration("2d")
    with pytest.raises(InputError, match="holds a 3D network .* trains a 2D one"):
        load_pretrained_weights(build_network(flat, 1, 2), source_checkpoint, flat)


def test_the_cli_refuses_a_missing_checkpoint(folders, capsys):
    write_fake_dataset(folders / "preprocessed", plans=make_plans(with_cube=False), n_cases=4)
    code = train_cli.main(["999", "0", "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1",
                           "--num-workers", "0", "--device", "cpu", "--no-validation",
                           "--pretrained-weights", str(folders / "nothing.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err


def test_fine_tuning_from_other_classes_starts_from_a_lower_loss(source_checkpoint, tmp_path):
    """Same seed, same data, same iterations: only the starting weights differ."""
    plans = make_plans(with_cube=False)
    lines: list[str] = []
    tuned, out = _train(tmp_path / "tuned", plans, epochs=1, iters=8, pretrained=str(source_checkpoint), lines=lines)
    scratch, _ = _train(tmp_path / "scratch", plans, epochs=1, iters=8)
    tuned_loss, scratch_loss = tuned.history[0]["train_loss"], scratch.history[0]["train_loss"]
    assert tuned_loss < scratch_loss, (tuned_loss, scratch_loss)
    assert tuned.history[0]["val_loss"] < scratch.history[0]["val_loss"]
    assert any(line.startswith("pretrained weights ") for line in lines)
    recorded = json.loads((out / "training_options.json").read_text())
    assert recorded["pretrained_weights"] == str(source_checkpoint)
    assert recorded["pretrained"]["loaded"] > 0 and "heads.0.weight" in recorded["pretrained"]["not_loaded"]
