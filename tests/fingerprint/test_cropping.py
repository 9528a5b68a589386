"""Cropping to the non-zero region, checked on volumes built by hand."""

import numpy as np

from segforge.fingerprint.cropping import box_shape, crop_to_box, mask_bbox, nonzero_bbox, nonzero_mask


def test_bbox_spans_nonzero_voxels_of_any_channel():
    image = np.zeros((2, 10, 12, 14), dtype=np.float32)
    image[0, 2:5, 3:9, 4] = 7.0  # channel 0: z 2..4, y 3..8, x 4
    image[1, 6, 5, 10] = -1.0  # channel 1 reaches z 6 and x 10
    box = nonzero_bbox(image)
    assert box == [[2, 7], [3, 9], [4, 11]]
    assert box_shape(box) == [5, 6, 7]
    crop = crop_to_box(image, box)
    assert crop.shape == (2, 5, 6, 7)
    assert crop.sum() == image.sum() and np.count_nonzero(crop) == np.count_nonzero(image)
    assert crop_to_box(image[0], box).shape == (5, 6, 7)


def test_all_zero_image_keeps_the_whole_image():
    assert nonzero_bbox(np.zeros((1, 3, 4, 5))) == [[0, 3], [0, 4], [0, 5]]
    assert mask_bbox(np.zeros((3, 4, 5), dtype=bool)) is None


def test_mask_fills_enclosed_zeros_but_not_the_outside():
    image = np.zeros((9, 9, 9), dtype=np.int16)
    image[2:7, 2:7, 2:7] = 40
    image[4, 4, 4] = 0  # an exact zero inside the body
    mask = nonzero_mask(image[None])
    assert mask[4, 4, 4] and mask.sum() == 125 and not mask[0, 0, 0]
    assert nonzero_bbox(image) == [[2, 7], [2, 7], [2, 7]]
