"""Sliding window against answers worked out by hand (STYLE.md 10)."""

import numpy as np
import pytest
import torch

from segforge.inference.gaussian import gaussian_importance_map
from segforge.inference.sliding_window import (
    LogitAccumulator,
    iter_windows,
    mirror_combinations,
    network_forward,
    predict_batch,
    sliding_window_logits,
    sliding_window_predict,
    window_starts,
)

torch.set_num_threads(1)


class PlusOne(torch.nn.Module):
    """Logits = input + 1 (one class per input channel)."""

    def forward(self, x):
        return x + 1


class SymmetricBlur(torch.nn.Module):
    """A 3x3x3 mean filter with zero padding: commutes with every flip."""

    def __init__(self, dims=3):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(1, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0 / 27)
            self.conv.weight[1] *= -1

    def forward(self, x):
        return self.conv(x)


class Skewed(torch.nn.Module):
    """Not flip-equivariant: a one-sided kernel."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0, 0, 0] = 1.0

    def forward(self, x):
        return self.conv(x)


def test_window_starts_cover_the_image_evenly():
    assert window_starts(8, 8, 0.5) == [0]
    assert window_starts(16, 8, 0.5) == [0, 4, 8]
    assert window_starts(17, 8, 0.5) == [0, 3, 6, 9]  # ceil(9 / 4) + 1 = 4 windows, 3 apart
    with pytest.raises(ValueError):
        window_starts(4, 8, 0.5)


def test_windows_cover_every_voxel():
    shape, patch = (10, 13, 7), (4, 8, 7)
    covered = np.zeros(shape, int)
    for w in iter_windows(shape, patch, 0.5):
        covered[w] += 1
    assert covered.min() >= 1


def test_mirror_combinations_are_all_subsets():
    assert mirror_combinations((0, 1, 2)) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]


@pytest.mark.parametrize("shape", [(5, 6, 3), (8, 8, 8), (21, 17, 30)], ids=["smaller", "equal", "larger"])
def test_plus_one_returns_input_plus_one(shape):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, *shape)).astype(np.float32)
    out = sliding_window_logits(PlusOne(), data, (8, 8, 8), step=0.5, batch_size=3, device="cpu")
    assert out.shape == (2, *shape)
    torch.testing.assert_close(out, torch.from_numpy(data) + 1, rtol=1e-5, atol=1e-5)


def test_plus_one_2d_patch_predicts_slice_by_slice():
    data = np.arange(3 * 20 * 9, dtype=np.float32).reshape(1, 3, 20, 9) / 100
    out = sliding_window_logits(PlusOne(), data, (8, 8), batch_size=5, device="cpu")
    torch.testing.assert_close(out, torch.from_numpy(data) + 1, rtol=1e-5, atol=1e-5)


def test_gaussian_weights_normalise_to_one():
    importance = gaussian_importance_map((8, 8, 8))
    assert importance.min() > 0 and float(importance.max()) == 1.0
    assert torch.equal(importance, torch.flip(importance, (0, 1, 2)))  # symmetric
    shape = (20, 13, 17)
    windows = list(iter_windows(shape, (8, 8, 8), 0.5))
    acc = LogitAccumulator(1, shape, importance, "cpu")
    acc.add(torch.ones(len(windows), 1, 8, 8, 8), windows)
    expected = torch.zeros(shape)
    for w in windows:
        expected[w] += importance
    torch.testing.assert_close(acc.weights, expected)
    torch.testing.assert_close(acc.result(), torch.ones(1, *shape))


def test_tta_with_flip_equivariant_network_changes_nothing():
    data = np.random.default_rng(1).normal(size=(1, 12, 10, 14)).astype(np.float32)
    net = SymmetricBlur()
    plain = sliding_window_logits(net, data, (8, 8, 8), device="cpu")
    mirrored = sliding_window_logits(net, data, (8, 8, 8), mirror_axes=(0, 1, 2), device="cpu")
    torch.testing.assert_close(plain, mirrored, rtol=1e-5, atol=1e-5)
    skewed = Skewed()
    assert not torch.allclose(
        sliding_window_logits(skewed, data, (8, 8, 8), device="cpu"),
        sliding_window_logits(skewed, data, (8, 8, 8), mirror_axes=(0, 1, 2), device="cpu"),
    )


def test_predict_returns_probabilities():
    data = np.random.default_rng(2).normal(size=(1, 9, 9, 9)).astype(np.float32)
    probs = sliding_window_predict(SymmetricBlur(), data, (8, 8, 8), mirror_axes=(0,), device="cpu")
    assert probs.shape == (2, 9, 9, 9)
    torch.testing.assert_close(probs.sum(0), torch.ones(9, 9, 9))


def test_mirrored_batch_is_the_mean_of_the_flipped_predictions_whatever_the_pass_size():
    rng = np.random.default_rng(3)
    batch = torch.from_numpy(rng.normal(size=(3, 1, 6, 8, 7)).astype(np.float32))
    net = Skewed()
    with torch.no_grad():
        expected = torch.zeros(3, 2, 6, 8, 7)
        for flip in mirror_combinations((0, 1, 2)):
            dims = [a + 2 for a in flip]
            y = net(torch.flip(batch, dims) if dims else batch)
            expected += torch.flip(y, dims) if dims else y
        expected /= 8
        for max_inputs in (None, 1, 3, 4, 24):
            torch.testing.assert_close(predict_batch(net, batch, (0, 1, 2), max_inputs), expected,
                                       rtol=1e-5, atol=1e-6)


def test_pass_size_does_not_change_the_sliding_window_result():
    data = np.random.default_rng(4).normal(size=(1, 12, 19, 14)).astype(np.float32)
    net = Skewed()
    ref = sliding_window_logits(net, data, (8, 8, 8), mirror_axes=(0, 2), batch_size=1, device="cpu")
    for batch_size in (2, 3, 4, 9):
        torch.testing.assert_close(
            sliding_window_logits(net, data, (8, 8, 8), mirror_axes=(0, 2), batch_size=batch_size, device="cpu"),
            ref, rtol=1e-5, atol=1e-6)


def test_a_single_window_pass_on_the_cpu_runs_as_two_and_returns_one():
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x.shape[0])
            return x * 2

    x = torch.arange(8.0).reshape(1, 1, 2, 2, 2)
    out = network_forward(Recorder(), x)
    assert seen == [2] and out.shape == (1, 1, 2, 2, 2)
    torch.testing.assert_close(out, x * 2)


def test_float16_accumulation_keeps_every_voxel_weighed():
    """The GPU's float16 buffers: the Gaussian's far corners would underflow to a weight of 0 (a 0/0 at the
    image's corners); raised to float16's smallest normal number, the result is input + 1 to float16's
    precision everywhere, corners included."""
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 40, 36, 44)).astype(np.float32)
    assert gaussian_importance_map((32, 32, 32)).min() < 2.0**-24  # below float16's smallest subnormal
    out = sliding_window_logits(PlusOne(), data, (32, 32, 32), step=0.5, batch_size=2, device="cpu",
                                accumulate_dtype=torch.float16)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), torch.from_numpy(data) + 1, rtol=2e-3, atol=2e-3)
