"""The batched torch augmentation (``--augment-on gpu``), on CPU tensors: geometry worked out by hand,
and each transform's statistics against the batchgenerators pipeline it replaces."""

import dataclasses
import random

import numpy as np
import pytest
import torch
from batchgenerators.augmentations.spatial_transformations import augment_spatial
from scipy.ndimage import gaussian_filter

from segforge.data.augmentation import AugmentationSettings, sample_region_size, training_transforms
from segforge.data.batch_augmentation import AugmentationParameters, BatchAugmentation, intensity, source_box
from segforge.data.patch_sampler import read_region

NOTHING = AugmentationSettings(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0,
                               p_contrast=0, p_low_resolution=0, p_gamma=0, p_gamma_inverted=0, mirror=False)


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def _volume(shape, seed=0, channels=1):
    rng = np.random.RandomState(seed)
    return torch.tensor(rng.normal(size=(channels, *shape)), dtype=torch.float32)


def _labels(shape, seed=0, values=(0, 1, 2, 5)):
    rng = np.random.RandomState(seed)
    return torch.tensor(rng.choice(values, size=(1, *shape)).astype(np.uint8))


def test_identity_parameters_give_the_exact_crop_and_flips_equal_np_flip():
    patch = (6, 10, 12)
    box, labels = _volume(patch, channels=2), _labels(patch)
    aug = BatchAugmentation(patch, NOTHING)
    params = AugmentationParameters.identity(1, 2, 3)
    lower, size = source_box(params, 0, patch)
    assert lower.tolist() == [0, 0, 0] and size.tolist() == list(patch)  # the box is the patch itself
    data, target = aug([box], [labels], params)
    assert torch.equal(data[0], box) and torch.equal(target[0], labels) and target.dtype == torch.uint8
    for flips in ([True, False, False], [False, True, True], [True, True, True]):
        params.mirror[0] = flips
        data, target = aug([box], [labels], params)
        axes = tuple(a + 1 for a in np.flatnonzero(flips))
        assert np.array_equal(data[0].numpy(), np.flip(box.numpy(), axes))
        assert np.array_equal(target[0].numpy(), np.flip(labels.numpy(), axes))


@pytest.mark.parametrize("axis, np_axes", [(0, (1, 2)), (1, (2, 0)), (2, (0, 1))])
def test_a_right_angle_equals_np_rot90_and_batchgenerators(axis, np_axes):
    patch = (9, 9, 9)
    box, labels = _volume(patch, seed=axis), _labels(patch, seed=axis)
    params = AugmentationParameters.identity(1, 1, 3)
    params.angles[0, axis] = np.pi / 2
    assert source_box(params, 0, patch)[1].tolist() == [9, 9, 9]  # a cube turned by 90 degrees reads itself
    data, target = BatchAugmentation(patch, NOTHING)([box], [labels], params)
    expected = np.rot90(box.numpy()[0], axes=np_axes)
    np.testing.assert_allclose(data[0, 0].numpy(), expected, atol=1e-5)
    assert np.array_equal(target[0, 0].numpy(), np.rot90(labels.numpy()[0], axes=np_axes))
    angles = [(0.0, 0.0)] * 3
    angles[axis] = (np.pi / 2, np.pi / 2)
    bg, _ = augment_spatial(box.numpy()[None].astype(np.float64), None, patch, do_elastic_deform=False,
                            do_scale=False, random_crop=False, order_data=0, border_mode_data="constant",
                            angle_x=angles[0], angle_y=angles[1], angle_z=angles[2])
    np.testing.assert_allclose(bg[0, 0], expected, atol=1e-5)  # the same convention as batchgenerators
    params.mirror[0] = [True, False, False]  # mirroring is folded into the same grid, applied last as in batchgenerators
    data, _ = BatchAugmentation(patch, NOTHING)([box], [labels], params)
    np.testing.assert_allclose(data[0, 0].numpy(), np.flip(expected, 0), atol=1e-5)


def test_in_plane_rotation_of_2d_and_anisotropic_patches():
    params = AugmentationParameters.identity(1, 1, 2)
    params.angles[0, 0] = np.pi / 2
    box = _volume((7, 7))
    data, _ = BatchAugmentation((7, 7), NOTHING)([box], None, params)
    np.testing.assert_allclose(data[0, 0].numpy(), np.rot90(box.numpy()[0]), atol=1e-5)
    aniso = (4, 16, 16)
    params = AugmentationParameters.identity(1, 1, 3, angle_axes=1)
    params.angles[0, 0], params.scale[0] = np.pi / 2, 1.0
    box = _volume(aniso)
    lower, size = source_box(params, 0, aniso)
    assert size.tolist() == [4, 16, 16]  # z is never rotated or scaled
    data, _ = BatchAugmentation(aniso, NOTHING)([box], None, params)
    np.testing.assert_allclose(data[0, 0].numpy(), np.rot90(box.numpy()[0], axes=(1, 2)), atol=1e-5)


def test_scaling_reads_a_box_that_fits_and_labels_stay_a_subset():
    patch = (8, 12, 12)
    settings = dataclasses.replace(AugmentationSettings(), p_rotation=1, p_scale=1, p_elastic=1, p_noise=1,
                                   p_blur=1, p_brightness=1, p_contrast=1, p_low_resolution=1, p_gamma=1)
    aug = BatchAugmentation(patch, settings)
    region = np.prod(sample_region_size(patch, settings))
    volume = _volume((40, 50, 50))
    labels = _labels((40, 50, 50), values=(0, 3, 7))
    params = aug.draw(np.random.RandomState(1), 6, 1)
    boxes, label_boxes = [], []
    for b in range(6):
        lower, size = source_box(params, b, patch)
        corner = np.array([16, 19, 19]) + lower
        boxes.append(torch.as_tensor(read_region(volume.numpy(), corner, size)))
        label_boxes.append(torch.as_tensor(read_region(labels.numpy(), corner, size)))
        assert np.prod(size) <= region  # never more than the worst case the CPU pipeline always reads
    data, target = aug(boxes, label_boxes, params)
    assert data.shape == (6, 1, *patch) and target.shape == (6, 1, *patch) and torch.isfinite(data).all()
    assert set(torch.unique(target).tolist()) <= {0, 3, 7}


def test_a_seeded_draw_replays_exactly():
    patch = (8, 12, 12)
    settings = dataclasses.replace(AugmentationSettings(), p_noise=1, p_elastic=0.5, p_low_resolution=0.5)
    aug = BatchAugmentation(patch, settings)
    first, second = aug.draw(np.random.RandomState(7), 4, 2), aug.draw(np.random.RandomState(7), 4, 2)
    assert first.sample(2) == second.sample(2)
    assert not np.array_equal(first.noise_seed, aug.draw(np.random.RandomState(8), 4, 2).noise_seed)
    boxes = [_volume(tuple(source_box(first, b, patch)[1]), seed=b, channels=2) for b in range(4)]
    a, _ = aug(boxes, None, first)
    b, _ = aug(boxes, None, second)
    assert torch.equal(a, b)


def test_static_shapes_and_selected_rows_agree():
    settings = dataclasses.replace(AugmentationSettings(), p_noise=0.3, p_blur=0.3, p_brightness=0.3, p_contrast=0.3,
                                   p_low_resolution=0.3, p_gamma=0.3, p_gamma_inverted=0.3)
    params = BatchAugmentation((6, 8, 10), settings).draw(np.random.RandomState(3), 12, 2)
    x = torch.randn(12, 2, 6, 8, 10)
    static = BatchAugmentation((6, 8, 10), settings, static_shapes=True).intensity(x, params)
    rows = BatchAugmentation((6, 8, 10), settings, static_shapes=False).intensity(x, params)
    torch.testing.assert_close(static, rows, rtol=0, atol=1e-6)
    untouched = ~(params.noise_std > 0)[:, None] & (params.blur_sigma == 0) & (params.brightness == 1) \
        & ~params.contrast_mask[:, None] & (params.low_res_zoom == 1) & ~params.gamma_mask[:, None] \
        & ~params.gamma_inverted_mask[:, None]
    assert untouched.any()
    for b, c in zip(*np.nonzero(untouched)):
        assert torch.equal(static[b, c], x[b, c])  # rows no transform was drawn for are exactly unchanged


def test_blur_equals_scipy_and_low_resolution_of_zoom_one_is_the_identity():
    x = _volume((7, 9, 11), channels=3)[:, None][:, 0]
    sigma = torch.tensor([0.5, 0.77, 1.0])
    blurred = intensity.gaussian_blur(x, sigma, 1.0)
    for i in range(3):
        expected = gaussian_filter(x[i].numpy().astype(np.float64), float(sigma[i]))
        np.testing.assert_allclose(blurred[i].numpy(), expected, atol=1e-5)
    matrices = intensity.low_resolution_matrices(torch.tensor([1.0, 0.5]), 10)
    assert torch.equal(matrices[0], torch.eye(10))
    torch.testing.assert_close(matrices[1].sum(1), torch.ones(10))  # an interpolation: rows sum to one
    step = torch.zeros(1, 10)
    step[0, 5:] = 1.0
    half = intensity.simulate_low_resolution(step.view(1, 1, 10), torch.tensor([0.5]), axes=(1,))[0, 0]
    assert half[0] == 0 and half[-1] == 1 and 0 < half[4] < 1  # a blurred edge, the ends kept


# --- statistics against batchgenerators --------------------------------------------------------------
def _ramp(shape):
    z, y, x = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    return (0.3 * z + 0.5 * y + 0.7 * x)[None]


def _smooth(shape, seed=0):
    rng = np.random.RandomState(seed)
    return (gaussian_filter(rng.normal(size=shape), 1.5) * 4 + 0.5).astype(np.float32)[None]


def _patches_both_ways(settings, volume, patch, draws):
    """(batchgenerators patches, torch patches) of the centre patch of ``volume`` over ``draws`` seeds."""
    patch = np.asarray(patch)
    corner = (np.asarray(volume.shape[1:]) - patch) // 2
    region = np.asarray(sample_region_size(patch, settings))
    region += (region - patch) % 2  # centred exactly on the patch
    cpu = training_transforms(patch.tolist(), settings)
    aug = BatchAugmentation(patch.tolist(), settings)
    seg = np.zeros((1, 1, *region), np.int16)
    bg, ours = [], []
    for i in range(draws):
        np.random.seed(i)
        random.seed(i)  # batchgenerators draws some parameters (the noise's std) from Python's random
        data = read_region(volume, corner - (region - patch) // 2, region)[None].astype(np.float32)
        bg.append(cpu(data=data, seg=seg.copy())["data"][0, 0])
        params = aug.draw(np.random.RandomState(10_000 + i), 1, 1)
        lower, size = source_box(params, 0, patch)
        box = torch.as_tensor(read_region(volume, corner + lower, size))
        ours.append(aug([box], None, params)[0][0, 0].numpy())
    reference = volume[0][tuple(slice(c, c + p) for c, p in zip(corner, patch))]
    return np.array(bg), np.array(ours), reference


def _p1(**probabilities):
    return dataclasses.replace(NOTHING, **probabilities)


STATISTICS = {
    # name: (settings with that transform at p = 1, image, statistic of (outputs, reference), tolerance)
    "rotation": (_p1(p_rotation=1), "ramp", lambda out, ref: np.abs(out - ref)[:, 3:-3, 3:-3, 3:-3].mean(), 0.12),
    "scale": (_p1(p_scale=1), "ramp", lambda out, ref: np.abs(out - ref)[:, 3:-3, 3:-3, 3:-3].mean(), 0.12),
    "noise": (_p1(p_noise=1), "smooth", lambda out, ref: (out - ref).std(axis=(1, 2, 3)).mean(), 0.1),
    "blur": (_p1(p_blur=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.15),
    "brightness": (_p1(p_brightness=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.12),
    "contrast": (_p1(p_contrast=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.12),
    "low_resolution": (_p1(p_low_resolution=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.15),
    "gamma": (_p1(p_gamma=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.12),
    "gamma_inverted": (_p1(p_gamma_inverted=1), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.12),
    "mirror": (_p1(mirror=True), "smooth", lambda out, ref: np.abs(out - ref).mean(), 0.12),
}


@pytest.mark.parametrize("name", sorted(STATISTICS))
def test_each_transform_at_p1_matches_batchgenerators_statistics(name):
    settings, image, statistic, tolerance = STATISTICS[name]
    patch = (12, 14, 16)
    volume = _ramp((40, 44, 48)) if image == "ramp" else _smooth((40, 44, 48))
    bg, ours, reference = _patches_both_ways(settings, volume, patch, draws=150)
    expected, got = statistic(bg, reference), statistic(ours, reference)
    assert expected > 1e-3, "the transform must change something for the comparison to mean anything"
    assert got == pytest.approx(expected, rel=tolerance), f"{name}: batchgenerators {expected:.4f}, torch {got:.4f}"


def test_elastic_displacement_matches_batchgenerators_statistics():
    """On a ramp along x (linear interpolation of any order reproduces it), output - input is the
    x displacement; its mean size in the patch's middle matches batchgenerators' (2D, 96 x 96)."""
    patch = (96, 96)
    settings = _p1(p_elastic=1)
    ramp = np.broadcast_to(np.arange(160, dtype=np.float32), (1, 160, 160)).copy()
    rng_draws = 120
    bg_sizes, our_sizes = [], []
    transform = training_transforms(list(patch), settings)
    aug = BatchAugmentation(list(patch), settings)
    corner = np.array([32, 32])
    middle = (slice(32, 64), slice(32, 64))
    for i in range(rng_draws):
        np.random.seed(i)
        random.seed(i)
        out = transform(data=ramp[None, :, 32:128, 32:128].copy(), seg=np.zeros((1, 1, 96, 96), np.int16))["data"]
        bg_sizes.append(np.abs(out[0, 0] - ramp[0, 32:128, 32:128])[middle].mean())
        params = aug.draw(np.random.RandomState(500 + i), 1, 1)
        lower, size = source_box(params, 0, patch)
        box = torch.as_tensor(read_region(ramp, corner + lower, size))
        ours = aug([box], None, params)[0][0, 0].numpy()
        our_sizes.append(np.abs(ours - ramp[0, 32:128, 32:128])[middle].mean())
    assert np.mean(bg_sizes) > 0.5
    assert np.mean(our_sizes) == pytest.approx(np.mean(bg_sizes), rel=0.25)
