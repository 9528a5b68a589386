import numpy as np
import pytest

from segforge.cascade.crop import crop_box_around, crop_with_padding, paste_crop


def test_box_is_centred_and_clamped_inside():
    assert crop_box_around((10, 10, 10), (4, 5, 6), (30, 30, 30)) == [[8, 12], [8, 13], [7, 13]]
    # near the border: shifted inside, not padded
    assert crop_box_around((1, 28, 10), (8, 8, 8), (30, 30, 30)) == [[0, 8], [22, 30], [6, 14]]
    # image smaller than the crop on z: centred on the image, padded both sides
    assert crop_box_around((1, 10, 10), (8, 8, 8), (4, 30, 30))[0] == [-2, 6]
    # without clamping the box leaves the image
    assert crop_box_around((1, 28, 10), (8, 8, 8), (30, 30, 30), clamp=False)[:2] == [[-3, 5], [24, 32]]


def test_crop_partly_outside_is_padded_and_paste_restores_overlap():
    rng = np.random.default_rng(0)
    vol = rng.random((2, 10, 12, 14)).astype(np.float32)
    box = [[-3, 5], [8, 16], [2, 10]]  # leaves the image on z (low side) and y (high side)
    crop = crop_with_padding(vol, box, pad_value=-7)
    assert crop.shape == (2, 8, 8, 8) and crop.dtype == np.float32
    np.testing.assert_array_equal(crop[:, :3], -7)
    np.testing.assert_array_equal(crop[:, :, 4:], -7)
    np.testing.assert_array_equal(crop[:, 3:, :4], vol[:, 0:5, 8:12, 2:10])

    out = np.full_like(vol, 0.5)
    paste_crop(crop, box, out)
    np.testing.assert_array_equal(out[:, 0:5, 8:12, 2:10], vol[:, 0:5, 8:12, 2:10])
    mask = np.zeros(vol.shape[1:], bool)
    mask[0:5, 8:12, 2:10] = True
    assert np.all(out[:, ~mask] == 0.5)


def test_box_entirely_outside_gives_only_padding():
    vol = np.ones((5, 5, 5))
    crop = crop_with_padding(vol, [[10, 12], [0, 2], [0, 2]], pad_value=0)
    assert crop.sum() == 0
    out = np.zeros((5, 5, 5))
    paste_crop(np.ones((2, 2, 2)), [[10, 12], [0, 2], [0, 2]], out)
    assert out.sum() == 0


def test_paste_checks_size():
    with pytest.raises(ValueError, match="box size"):
        paste_crop(np.ones((2, 2, 2)), [[0, 3], [0, 2], [0, 2]], np.zeros((5, 5, 5)))
