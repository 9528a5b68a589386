"""Mixup: the draw, the mixed images and targets worked out by hand, the soft-target loss, manifold
mixing inside the U-Net, and the trainer's wiring (--mixup input|manifold)."""

import numpy as np
import pytest
import scipy.stats
import torch

from helpers.fake_preprocessed import write_fake_dataset
from helpers.plans import tiny_topology

from segforge.errors import InputError
from segforge.networks.unet import UNet
from segforge.planning.plans import Plans
from segforge.training.losses import DiceCELoss, downsample_target
from segforge.training.mixup import MixupDraw, draw_mixup, mix, mixed_targets
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer


class FixedDraws:
    """An rng whose beta, permutation and randint answers are fixed."""

    def beta(self, a, b):
        return 0.3

    def permutation(self, n):
        return np.array([2, 0, 1])

    def randint(self, n):
        return 1


def test_draw_pairs_every_sample_with_another_and_picks_a_stage():
    draw = draw_mixup(3, alpha=0.2, n_stages=4, rng=FixedDraws())
    # shuffled order 2, 0, 1: 2 is mixed with 0, 0 with 1, 1 with 2
    assert draw == MixupDraw(lam=0.3, partner=(1, 2, 0), stage=1)
    rng = np.random.RandomState(0)
    for b in (2, 3, 5):
        for _ in range(20):
            partner = draw_mixup(b, 0.2, rng=rng).partner
            assert sorted(partner) == list(range(b)) and all(p != i for i, p in enumerate(partner))
    assert draw_mixup(1, 0.2, rng=rng).partner == (0,)  # a batch of one has nothing to mix with


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_lam_follows_beta_alpha_alpha(alpha):
    rng = np.random.RandomState(1)
    lams = np.array([draw_mixup(2, alpha, rng=rng).lam for _ in range(20000)])
    assert lams.min() >= 0 and lams.max() <= 1 and abs(lams.mean() - 0.5) < 0.01
    for q in (0.1, 0.5, 0.9):  # the empirical distribution function matches Beta(alpha, alpha)'s
        assert np.mean(lams <= q) == pytest.approx(scipy.stats.beta.cdf(q, alpha, alpha), abs=0.01)


def test_mixed_images_and_targets_by_hand():
    draw = MixupDraw(lam=0.3, partner=(1, 2, 0))
    x = torch.tensor([1.0, 10.0, 100.0]).view(3, 1, 1)
    assert mix(x, draw).flatten().tolist() == pytest.approx([0.3 * 1 + 0.7 * 10, 0.3 * 10 + 0.7 * 100,
                                                             0.3 * 100 + 0.7 * 1])
    labels = torch.tensor([[[0, 1]], [[1, 1]], [[2, 0]]])  # (B=3, 1, 2 voxels), K = 3
    soft = mixed_targets(labels, 3, draw)
    assert soft.shape == (3, 3, 2)
    # sample 0 takes 0.3 of its own labels (0, 1) and 0.7 of sample 1's (1, 1)
    assert np.allclose(soft[0].T, [[0.3, 0.7, 0], [0, 1, 0]])
    # sample 1: own (1, 1), partner 2 (2, 0)
    assert np.allclose(soft[1].T, [[0, 0.3, 0.7], [0.7, 0.3, 0]])
    assert np.allclose(soft.sum(1), 1.0)


def test_soft_target_loss_by_hand():
    loss = DiceCELoss()
    logits = torch.randn(2, 3, 4, 5)
    labels = torch.randint(0, 3, (2, 4, 5))
    onehot = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    assert loss(logits, onehot).item() == pytest.approx(loss(logits, labels).item(), abs=1e-6)
    # cross-entropy is linear in the target: soft CE = lam CE(a) + (1 - lam) CE(b)
    ce = DiceCELoss(dice_weight=0.0)
    other = torch.roll(labels, 1, dims=0)
    soft = mixed_targets(labels[:, None], 3, MixupDraw(0.3, (1, 0)))
    assert soft.allclose(0.3 * onehot + 0.7 * onehot[[1, 0]])
    expected = 0.3 * ce(logits, labels) + 0.7 * ce(logits, other)
    assert ce(logits, soft).item() == pytest.approx(expected.item(), abs=1e-6)
    # Dice of a soft target: logits 0 -> p = 0.5 everywhere; target foreground 0.3 and 1.0
    dice = DiceCELoss(ce_weight=0.0, smooth=0.0)
    target = torch.tensor([[[0.7, 0.0], [0.3, 1.0]]])  # (B=1, K=2, 2 voxels)
    # 2 * (0.5 * 0.3 + 0.5 * 1.0) / ((0.5 + 0.5) + (0.3 + 1.0)) = 1.3 / 2.3
    assert dice(torch.zeros(1, 2, 2), target).item() == pytest.approx(1 - 1.3 / 2.3, abs=1e-6)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_manifold_mixing_reaches_every_skip(stage):
    """lam 0 at any stage: sample 0 becomes sample 1 everywhere downstream, skips included (an
    unmixed skip would leak sample 0 into its output); lam 1 changes nothing."""
    torch.manual_seed(0)
    network = UNet(tiny_topology(2, features=(4, 8, 16), deep_supervision=False), 2, 1, 3).eval()
    x = torch.randn(2, 1, 16, 16)
    plain = network(x)
    swapped = network(x, mix_stage=stage, mix=lambda t: mix(t, MixupDraw(0.0, (1, 0))))
    assert torch.allclose(swapped[0], plain[1], atol=1e-5) and torch.allclose(swapped[1], plain[0], atol=1e-5)
    same = network(x, mix_stage=stage, mix=lambda t: mix(t, MixupDraw(1.0, (1, 0))))
    assert torch.allclose(same, plain, atol=1e-6)
    with pytest.raises(ValueError, match="mix_stage must be an encoder stage, 0..2"):
        network(x, mix_stage=3, mix=lambda t: t)


def trainer(tmp_path, **kw):
    torch.set_num_threads(1)
    folder = write_fake_dataset(tmp_path / "pre")
    options = TrainingOptions(epochs=1, iters_per_epoch=2, val_iters=1, num_workers=0, cpu_threads=1,
                              progress_bar=False, plots=False, **kw)
    return SegmentationTrainer(Plans.load(folder / "plans.json"), "3d_fullres", 0, output_folder=tmp_path / "out",
                               device="cpu", options=options, preprocessed_dir=folder, log=lambda *_: None)


@pytest.mark.parametrize("mode", ["input", "manifold"])
def test_trainer_trains_on_the_mixed_batch(tmp_path, mode):
    t = trainer(tmp_path, mixup=mode, mixup_alpha=0.4)
    t.initialize()
    batch = {"data": torch.randn(2, 1, 16, 32, 32), "target": torch.randint(0, 3, (2, 1, 16, 32, 32))}
    np.random.seed(7)
    loss = t.training_loss(batch)
    np.random.seed(7)
    draw = draw_mixup(2, 0.4, 3 if mode == "manifold" else None)
    assert t.last_mixup == draw
    if mode == "input":
        outputs = t.network(mix(batch["data"], draw))
    else:
        outputs = t.network(batch["data"], mix_stage=draw.stage, mix=lambda f: mix(f, draw))
    targets = [mixed_targets(y, 3, draw) for y in downsample_target(batch["target"], t.scales)]
    assert loss.item() == pytest.approx(t.train_loss_fn(outputs, targets).item(), rel=1e-5)
    t.run()  # and a whole run works
    assert t.history[-1]["train_loss"] > 0


def test_bad_mixup_options_are_refused_in_one_line():
    with pytest.raises(InputError, match="--mixup must be one of none, input, manifold"):
        TrainingOptions(mixup="inputs")
    with pytest.raises(InputError, match="--mixup-alpha must be a positive number"):
        TrainingOptions(mixup="input", mixup_alpha=0)
