"""Losses checked against answers worked out by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from segforge.planning.plans import NetworkTopology
from segforge.training.losses import (DeepSupervisionLoss, DiceCELoss, deep_supervision_scales,
                                      deep_supervision_weights, downsample_target, heatmap_kl_loss,
                                      heatmap_mse_loss)


def confident_logits(labels: torch.Tensor, num_classes: int, margin: float = 40.0) -> torch.Tensor:
    """(B, *s) labels -> (B, K, *s) logits that put ~all probability on ``labels``."""
    return F.one_hot(labels, num_classes).movedim(-1, 1).float() * margin - margin / 2


@pytest.fixture
def labels():
    torch.manual_seed(0)
    return torch.randint(0, 3, (2, 6, 8, 8))


@pytest.mark.parametrize("with_channel", [True, False])
def test_dice_ce_is_zero_for_a_perfect_prediction(labels, with_channel):
    target = labels[:, None] if with_channel else labels
    assert DiceCELoss()(confident_logits(labels, 3), target).item() == pytest.approx(0.0, abs=1e-5)


def test_dice_ce_is_large_for_a_wrong_prediction(labels):
    wrong = (labels + 1) % 3
    loss = DiceCELoss()(confident_logits(wrong, 3), labels).item()
    # Dice of every foreground class ~0 (1) plus cross-entropy ~ margin (40)
    assert loss == pytest.approx(1 + 40, rel=1e-3)


def test_dice_part_matches_a_hand_computed_value():
    # one foreground class, uniform probabilities 0.5: Dice = 2 * 0.5 * 2 / (0.5 * 4 + 2) = 0.5
    logits = torch.zeros(1, 2, 4)
    target = torch.tensor([[0, 0, 1, 1]])
    dice = DiceCELoss(smooth=0.0).soft_dice(logits, target)
    assert dice.tolist() == pytest.approx([0.5])
    loss = DiceCELoss(smooth=0.0)(logits, target).item()
    assert loss == pytest.approx(0.5 + math.log(2), rel=1e-6)


def test_dice_ce_rejects_mismatched_target(labels):
    with pytest.raises(ValueError, match="does not match logits"):
        DiceCELoss()(confident_logits(labels, 3), labels[:, :3])


def test_dice_ce_backward_gives_finite_gradients(labels):
    logits = torch.randn(2, 3, 6, 8, 8, requires_grad=True)
    DiceCELoss()(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_deep_supervision_weights_halve_sum_to_one_and_zero_the_lowest(n):
    w = deep_supervision_weights(n)
    assert sum(w) == pytest.approx(1.0) and len(w) == n
    if n == 1:
        assert w == [1.0]
    else:
        assert w[-1] == 0.0
        for a, b in zip(w[:-2], w[1:-1]):
            assert b == pytest.approx(a / 2)


def test_deep_supervision_loss_weights_each_scale():
    outputs = [torch.full((1,), 1.0), torch.full((1,), 2.0), torch.full((1,), 4.0)]
    targets = [torch.zeros(1)] * 3
    loss = DeepSupervisionLoss(lambda o, t: (o - t).sum())(outputs, targets)
    # weights (1, 0.5, 0) / 1.5
    assert loss.item() == pytest.approx((1 * 1 + 0.5 * 2) / 1.5)
    assert DeepSupervisionLoss(lambda o, t: (o - t).sum())(outputs[0], targets[0]).item() == 1.0


def test_downsampled_targets_match_the_network_outputs_and_keep_small_structures():
    topology = NetworkTopology([4, 8, 16, 32], [[3, 3, 3]] * 4, [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]])
    scales = deep_supervision_scales(topology)
    target = torch.zeros(2, 1, 8, 16, 16, dtype=torch.int16)
    target[1, 0, 5, 9, 3] = 2  # a single voxel
    down = downsample_target(target, scales)
    assert [list(t.shape) for t in down] == [[2, 1, 8, 16, 16], [2, 1, 8, 8, 8], [2, 1, 4, 4, 4]]
    assert all(t.dtype == torch.int16 for t in down)
    assert [int(t[1].max()) for t in down] == [2, 2, 2] and int(down[2][0].max()) == 0
    assert down[2][1, 0, 2, 2, 0] == 2
    no_channel = downsample_target(target[:, 0], scales)
    assert [list(t.shape) for t in no_channel] == [[2, 8, 16, 16], [2, 8, 8, 8], [2, 4, 4, 4]]


def test_downsample_target_rejects_indivisible_shape():
    with pytest.raises(ValueError, match="not divisible"):
        downsample_target(torch.zeros(1, 1, 5, 8), [[1, 1], [2, 2]])


def gaussian(shape, centre, sigma):
    grids = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return torch.exp(-r2 / (2 * sigma**2))[None, None]


def test_heatmap_mse_is_zero_for_equal_and_positive_otherwise():
    a, b = gaussian((8, 8, 8), (4, 4, 4), 2.0), gaussian((8, 8, 8), (2, 4, 4), 2.0)
    assert heatmap_mse_loss(a, a).item() == 0.0
    assert heatmap_mse_loss(a, b).item() == pytest.approx(((a - b) ** 2).mean().item())


def test_heatmap_kl_is_zero_when_the_softmax_matches_and_grows_with_distance():
    target = gaussian((8, 8, 8), (4, 4, 4), 1.5)
    assert heatmap_kl_loss(torch.log(target), target).item() == pytest.approx(0.0, abs=1e-5)
    # scaling the target changes nothing (it is normalised); adding a constant to the logits neither
    assert heatmap_kl_loss(torch.log(target) + 3.0, 5 * target).item() == pytest.approx(0.0, abs=1e-5)
    near = heatmap_kl_loss(torch.log(gaussian((8, 8, 8), (4, 4, 5), 1.5)), target).item()
    far = heatmap_kl_loss(torch.log(gaussian((8, 8, 8), (4, 4, 7), 1.5)), target).item()
    assert 0 < near < far
    # two Gaussians of equal sigma far from the border: KL = d^2 / (2 sigma^2)
    wide = gaussian((2, 2, 32), (1, 1, 16), 2.0)
    shifted = heatmap_kl_loss(torch.log(gaussian((2, 2, 32), (1, 1, 17), 2.0)), wide).item()
    assert shifted == pytest.approx(1 / (2 * 2.0**2), rel=1e-3)


def test_heatmap_losses_reject_shape_mismatch():
    with pytest.raises(ValueError, match="heatmap shapes differ"):
        heatmap_kl_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


def test_unet_with_deep_supervised_dice_ce_learns_one_case():
    """Network + targets + loss fit together: 40 Adam steps segment a noisy ball."""
    from segforge.networks import build_network
    from segforge.planning.plans import ChannelNormalization, Configuration, ResamplingSettings

    torch.set_num_threads(1)
    torch.manual_seed(0)
    topology = NetworkTopology([4, 8, 16], [[3, 3, 3]] * 3, [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                               block="residual", attention_gates=True)
    conf = Configuration(name="t", kind="segmentation", spacing=[1.0] * 3, patch_size=[8, 8, 8], batch_size=1,
                         network=topology, normalization=[ChannelNormalization("zscore")],
                         resampling=ResamplingSettings(), median_shape=[8, 8, 8])
    net = build_network(conf, 1, 2)
    z, y, x = torch.meshgrid(*[torch.arange(8.0)] * 3, indexing="ij")
    labels = (((z - 4) ** 2 + (y - 3) ** 2 + (x - 4) ** 2) < 5).long()[None, None]
    image = 2 * labels.float() + 0.3 * torch.randn(1, 1, 8, 8, 8)
    loss_fn = DeepSupervisionLoss(DiceCELoss())
    targets = downsample_target(labels, deep_supervision_scales(topology))
    optimiser = torch.optim.Adam(net.parameters(), 1e-2)
    first = None
    for _ in range(40):
        optimiser.zero_grad()
        loss = loss_fn(net(image), targets)
        loss.backward()
        optimiser.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 2
    with torch.no_grad():
        predicted = net.eval()(image).argmax(1) == 1
    truth = labels[:, 0] == 1
    dice = 2 * (predicted & truth).sum() / (predicted.sum() + truth.sum())
    assert dice > 0.9
