import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from segforge.preprocessing.resampling import (
    interpolation_matrix,
    resample_image,
    resample_label,
    resample_probabilities,
    resampled_shape,
    source_positions,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_resampled_shape_keeps_field_of_view():
    assert resampled_shape((10, 100, 100), (5.0, 0.7, 0.7), (5.0, 1.0, 1.0)) == (10, 70, 70)
    assert resampled_shape((3, 4, 5), (1, 1, 1), (100, 100, 100)) == (1, 1, 1)


@pytest.mark.parametrize("n_new", [7, 20, 33])
def test_cubic_operator_is_the_interpolating_bspline(n_new):
    f = np.random.default_rng(0).normal(size=20)
    ours = interpolation_matrix(20, n_new, 3) @ f
    ref = ndi.map_coordinates(f, [source_positions(20, n_new)], order=3, mode="mirror")
    np.testing.assert_allclose(ours, ref, atol=1e-10)


@pytest.mark.parametrize("order", [1, 3])
def test_operators_keep_constants_and_identity(order):
    m = interpolation_matrix(9, 23, order)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(interpolation_matrix(9, 9, order), np.eye(9), atol=1e-12)


def test_cubic_reproduces_a_smooth_function_on_a_finer_grid():
    # f(z, y, x) = sin along x on a 32-voxel axis, upsampled to 64: the spline is close to the truth
    n_old, n_new = 32, 64
    x_old = np.arange(n_old)
    f = np.sin(2 * np.pi * x_old / 16.0)
    data = np.broadcast_to(f, (1, 2, 3, n_old)).astype(np.float32)
    out = resample_image(data, (2, 3, n_new), order=3)
    truth = np.sin(2 * np.pi * source_positions(n_old, n_new) / 16.0)
    inner = slice(16, -16)  # the mirrored edges are not the sine
    np.testing.assert_allclose(out[0, 0, 0, inner], truth[inner], atol=2e-3)


def test_linear_matches_torch_trilinear_and_order0_copies():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)
    out = resample_image(data, (9, 4, 11), order=1)
    ref = torch.nn.functional.interpolate(torch.from_numpy(data)[None], size=(9, 4, 11), mode="trilinear",
                                          align_corners=False)[0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-5)
    nearest = resample_image(data, (10, 12, 14), order=0)
    assert set(np.unique(nearest)) <= set(np.unique(data))


def test_separate_axis_order0_copies_slices_instead_of_blending():
    # z slices hold distinct constants; upsampling z (separate axis, order 0) must copy them
    z_values = np.array([0.0, 10.0, 20.0, 30.0], dtype=np.float32)
    data = np.broadcast_to(z_values[:, None, None], (4, 8, 8))[None].astype(np.float32)
    data = data + np.random.default_rng(2).normal(scale=0.01, size=data.shape).astype(np.float32)
    out = resample_image(data, (10, 12, 12), order=3, separate_axis=0, separate_axis_order=0)
    slice_means = out[0].mean(axis=(1, 2))
    nearest_z = np.round(slice_means / 10.0) * 10.0
    np.testing.assert_allclose(slice_means, nearest_z, atol=0.05)  # no value between two slices
    # in-plane, the cubic still interpolates: a smooth in-plane ramp stays a ramp
    ramp = np.broadcast_to(np.arange(8, dtype=np.float32), (1, 4, 8, 8))
    out_ramp = resample_image(ramp, (10, 8, 16), order=3, separate_axis=0)
    assert len(np.unique(np.round(out_ramp[0, 0, 0], 4))) > 8


def test_labels_never_invent_classes_between_0_and_2():
    seg = np.zeros((6, 10, 10), np.int16)
    seg[:, :, 5:] = 2
    for shape in [(6, 17, 23), (11, 7, 9), (6, 4, 4)]:
        out = resample_label(seg, shape)
        assert set(np.unique(out)) <= {0, 2}
        out_sep = resample_label(seg, shape, separate_axis=0, separate_axis_order=0)
        assert set(np.unique(out_sep)) <= {0, 2}
    nearest = resample_label(seg, (6, 17, 23), mode="nearest")
    assert set(np.unique(nearest)) == {0, 2}


def test_label_separate_axis_is_nearest_slice():
    seg = np.zeros((4, 6, 6), np.int16)
    seg[1] = 1
    seg[2] = 2
    out = resample_label(seg, (8, 6, 6), separate_axis=0, separate_axis_order=0)
    expected = seg[np.floor((np.arange(8) + 0.5) * 0.5).astype(int)]
    np.testing.assert_array_equal(out, expected)


def test_label_downsample_keeps_a_large_object_and_dtype():
    seg = np.zeros((20, 20, 20), np.uint8)
    seg[4:14, 4:14, 4:14] = 3  # new voxel i samples old 2i + 0.5: i = 2..6 lie inside
    out = resample_label(seg, (10, 10, 10))
    assert out.dtype == np.uint8
    assert (out == 3).sum() == 125


def test_probabilities_stay_normalised():
    rng = np.random.default_rng(3)
    p = rng.random((3, 5, 6, 7)).astype(np.float32)
    p /= p.sum(0, keepdims=True)
    out = resample_probabilities(p, (9, 3, 12))
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    assert out.min() >= 0


def test_bad_arguments_name_what_is_expected():
    with pytest.raises(ValueError, match="spline order"):
        resample_image(np.zeros((1, 2, 2, 2), np.float32), (3, 3, 3), order=2)
    with pytest.raises(ValueError, match="label resampling mode"):
        resample_label(np.zeros((2, 2, 2), np.int16), (3, 3, 3), mode="cubic")
    with pytest.raises(ValueError, match=r"\(C, z, y, x\)"):
        resample_image(np.zeros((2, 2, 2), np.float32), (3, 3, 3))


@pytest.mark.parametrize("new_shape", [(13, 9, 31), (5, 24, 11)])
def test_onehot_labels_match_a_full_volume_reference(new_shape):
    # the bounding-box implementation equals interpolating every class over the whole volume
    rng = np.random.default_rng(4)
    seg = np.zeros((10, 16, 20), np.int16)
    for c in range(1, 5):
        z, y, x = rng.integers(0, 8, 3)
        seg[z:z + rng.integers(1, 5), y:y + rng.integers(2, 9), x:x + rng.integers(2, 12)] = c
    seg[0, 0, 0] = 7  # a one-voxel class in the corner
    onehot = torch.from_numpy(np.stack([(seg == c) for c in range(8)]).astype(np.float32))
    weights = torch.nn.functional.interpolate(onehot[None], size=new_shape, mode="trilinear",
                                              align_corners=False)[0].numpy()
    reference = weights.argmax(0)
    top2 = np.sort(weights, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-5  # away from ties, where rounding may pick either
    out = resample_label(seg, new_shape)
    np.testing.assert_array_equal(out[clear], reference[clear])
    assert clear.mean() > 0.9


def test_onehot_labels_spread_over_the_whole_volume():
    # classes everywhere take the whole-volume path; the result equals the box path's rule
    rng = np.random.default_rng(5)
    seg = ndi.zoom(rng.integers(0, 3, (4, 5, 6)), 3, order=0).astype(np.int16)
    new_shape = (7, 25, 13)
    onehot = torch.from_numpy(np.stack([(seg == c) for c in range(3)]).astype(np.float32))
    weights = torch.nn.functional.interpolate(onehot[None], size=new_shape, mode="trilinear",
                                              align_corners=False)[0].numpy()
    top2 = np.sort(weights, axis=0)[-2:]
    clear = (top2[1] - top2[0]) > 1e-5
    out = resample_label(seg, new_shape)
    np.testing.assert_array_equal(out[clear], weights.argmax(0)[clear])
    assert set(np.unique(out)) == {0, 1, 2}


@pytest.mark.parametrize("order,separate", [(3, None), (3, 0), (1, None)])
def test_tensor_input_gives_the_numpy_result(order, separate):
    data = np.random.default_rng(6).normal(size=(2, 5, 9, 7)).astype(np.float32)
    expected = resample_image(data, (8, 6, 11), order, separate)
    out = resample_image(torch.from_numpy(data), (8, 6, 11), order, separate)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.bool_])
def test_label_dtypes_are_kept(dtype):
    seg = np.zeros((4, 6, 6), dtype)
    seg[1:3, 2:5, 2:5] = 1
    for mode in ("linear_onehot", "nearest"):
        out = resample_label(seg, (8, 12, 12), mode=mode)
        assert out.dtype == dtype and out.sum() > 0
    with pytest.raises(ValueError, match="integers"):
        resample_label(seg.astype(np.float32), (8, 12, 12))
