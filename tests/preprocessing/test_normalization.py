import numpy as np
import pytest

from segforge.planning.plans import ChannelNormalization
from segforge.preprocessing.normalization import normalize_channel, normalize_image


def test_ct_clips_then_uses_dataset_statistics():
    x = np.array([-2000.0, -100.0, 0.0, 100.0, 3000.0], np.float32).reshape(1, 1, 5)
    s = ChannelNormalization("ct", mean=50.0, std=25.0, lower=-100.0, upper=200.0)
    out = normalize_channel(x.copy(), s)
    np.testing.assert_allclose(out.ravel(), [(-100 - 50) / 25, -6, -2, 2, (200 - 50) / 25])


def test_ct_without_statistics_is_refused():
    with pytest.raises(ValueError, match="missing: mean, std"):
        normalize_channel(np.zeros((1, 1, 2), np.float32), ChannelNormalization("ct", lower=0, upper=1))


def test_zscore_gives_zero_mean_unit_std():
    x = np.random.default_rng(0).normal(7.0, 3.0, (4, 5, 6)).astype(np.float32)
    out = normalize_channel(x, ChannelNormalization("zscore"))
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-4


def test_zscore_nonzero_uses_only_the_mask_and_zeroes_outside():
    x = np.zeros((2, 4, 4), np.float32)
    x[:, 1:3, 1:3] = np.array([1.0, 3.0, 1.0, 3.0] * 2).reshape(2, 2, 2)  # mean 2, std 1 inside
    out = normalize_channel(x.copy(), ChannelNormalization("zscore_nonzero"))
    inside = out[:, 1:3, 1:3]
    np.testing.assert_allclose(np.sort(np.unique(inside)), [-1.0, 1.0], atol=1e-6)
    assert (out[:, 0] == 0).all() and (out[:, :, 3] == 0).all()
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2] = True  # an explicit mask overrides x != 0
    out2 = normalize_channel(x.copy(), ChannelNormalization("zscore_nonzero"), mask)
    assert (out2[:, 2:] == 0).all()


def test_constant_image_does_not_divide_by_zero():
    out = normalize_channel(np.full((2, 2, 2), 5.0, np.float32), ChannelNormalization("zscore"))
    assert np.isfinite(out).all() and (out == 0).all()


def test_normalize_image_checks_channel_count_and_scheme():
    data = np.ones((2, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="normalise 1 channel"):
        normalize_image(data, [ChannelNormalization("zscore")])
    with pytest.raises(ValueError, match="unknown normalisation scheme 'minmax'"):
        normalize_image(data[:1], [ChannelNormalization("minmax")])

