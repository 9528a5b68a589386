"""Tiny network configurations shared by the network tests (features [4, 8, 16])."""

import copy

import pytest

from segforge.planning.plans import ChannelNormalization, Configuration, NetworkTopology, ResamplingSettings

# name -> (patch, kernel_sizes, strides)
GEOMETRIES = {
    "2d": ([16, 16], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]]),
    "3d_iso": ([8, 8, 8], [[3, 3, 3]] * 3, [[1, 1, 1], [2, 2, 2], [2, 2, 2]]),
    "3d_aniso": ([4, 16, 16], [[1, 3, 3], [1, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]]),
}


def tiny_configuration(geometry="3d_iso", features=(4, 8, 16), **topology_options) -> Configuration:
    patch, kernels, strides = copy.deepcopy(GEOMETRIES[geometry])
    topology = NetworkTopology(features_per_stage=list(features), kernel_sizes=kernels, strides=strides,
                               **topology_options)
    return Configuration(
        name="test", kind="segmentation", spacing=[1.0, 1.0, 1.0], patch_size=list(patch), batch_size=2,
        network=topology, normalization=[ChannelNormalization(scheme="zscore")],
        resampling=ResamplingSettings(), median_shape=[32, 32, 32],
    )


@pytest.fixture
def make_configuration():
    """``make_configuration(geometry, **topology_options) -> Configuration`` (geometry: 2d, 3d_iso, 3d_aniso)."""
    return tiny_configuration
