"""Hand-made configurations and tiny cases for the preprocessing tests."""

from __future__ import annotations

import numpy as np

from segforge.io.geometry import Geometry
from segforge.planning.plans import ChannelNormalization, Configuration, NetworkTopology, ResamplingSettings


def make_configuration(
    spacing=(5.0, 1.0, 1.0),
    schemes=("zscore_nonzero",),
    separate_axis: int | None = 0,
    crop_to_nonzero: bool = True,
    label_mode: str = "linear_onehot",
    name: str = "3d_fullres",
    data_identifier: str = "",
) -> Configuration:
    norms = []
    for s in schemes:
        if s == "ct":
            norms.append(ChannelNormalization("ct", mean=40.0, std=100.0, lower=-200.0, upper=300.0))
        else:
            norms.append(ChannelNormalization(s))
    return Configuration(
        name=name,
        kind="segmentation",
        spacing=list(spacing),
        patch_size=[8, 32, 32],
        batch_size=2,
        network=NetworkTopology([4, 8], [[1, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2]]),
        normalization=norms,
        resampling=ResamplingSettings(image_order=3, label_mode=label_mode, separate_axis=separate_axis),
        median_shape=[12, 60, 60],
        crop_to_nonzero=crop_to_nonzero,
        data_identifier=data_identifier,
    )


def make_case(shape=(16, 96, 96), spacing=(5.0, 0.7, 0.7), channels: int = 1, seed: int = 0):
    """An anisotropic case: a body box (non-zero) inside zero padding, two ellipsoid labels.

    Returns ``image (C, Z, Y, X)`` float32, ``label (Z, Y, X)`` uint8 and a Geometry with a
    non-trivial origin and a flipped direction.
    """
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape).astype(np.float64)
    sz, sy, sx = spacing
    label = np.zeros(shape, np.uint8)
    organ = ((zz - 8) * sz / 22) ** 2 + ((yy - 45) * sy / 18) ** 2 + ((xx - 40) * sx / 20) ** 2 <= 1
    lesion = ((zz - 7) * sz / 15) ** 2 + ((yy - 48) * sy / 12) ** 2 + ((xx - 62) * sx / 13) ** 2 <= 1
    label[organ] = 1
    label[lesion] = 2
    image = np.zeros((channels,) + tuple(shape), np.float32)
    body = (slice(1, 15), slice(10, 88), slice(6, 84))
    for c in range(channels):
        image[c][body] = rng.normal(100.0 + 10 * c, 20.0, image[c][body].shape)
        image[c][label == 1] += 80
        image[c][label == 2] -= 60
    direction = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    geometry = Geometry(spacing, (12.0, -30.0, 100.0), direction, shape)
    return image, label, geometry


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum())
