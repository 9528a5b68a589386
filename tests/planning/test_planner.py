"""plan_experiment on hand-built fingerprints: spacing, topology, patch, batch, normalisation,
cascade, overrides, whys and the JSON round trip."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from segforge.errors import InputError
from segforge.networks.memory import training_memory_bytes
from segforge.planning.overrides import USER_OVERRIDE, PlanOverrides
from segforge.planning.patch_size_rule import base_features_for_budget, memory_budget_bytes
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import Configuration, Plans
from segforge.planning.topology_rule import pools_per_axis

ISOTROPIC = dict(spacings=[1.0, 1.0, 1.0], shapes=[[256, 256, 256]] * 10)
# 8 thick-slice cases and 2 thinner ones: the 10th percentile on z is 2.5 mm
ANISOTROPIC = dict(spacings=[[5.0, 0.8, 0.8]] * 8 + [[2.5, 0.8, 0.8]] * 2, shapes=[[40, 400, 400]] * 10)


def _check_divisibility(configuration: Configuration):
    pools = pools_per_axis(configuration.network)
    for edge, p in zip(configuration.patch_size, pools):
        assert edge % 16 == 0, configuration.patch_size
        assert edge % 2**p == 0, (configuration.patch_size, pools)


def test_isotropic_large_dataset_gets_nnunet_like_patch(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC), gpu_memory_gb=10.0)
    c = plans.configuration("3d_fullres")
    assert c.spacing == [1.0, 1.0, 1.0]
    assert c.patch_size == [128, 128, 128]
    assert c.network.n_stages == 6
    assert c.network.features_per_stage == [32, 64, 128, 256, 320, 320]
    assert all(k == [3, 3, 3] for k in c.network.kernel_sizes)
    assert c.batch_size == 2
    assert c.resampling.separate_axis is None
    assert plans.default_configuration == "3d_fullres"
    budget = memory_budget_bytes(10.0)
    assert training_memory_bytes(c.network, c.patch_size, c.batch_size, 1, 2) <= budget


def test_anisotropic_takes_p10_on_coarse_axis_and_pools_it_late(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ANISOTROPIC, modality="CT"))
    c = plans.configuration("3d_fullres")
    assert c.spacing == [2.5, 0.8, 0.8]
    assert "10th percentile" in c.why["spacing"]
    # z (2.5 mm) is > 2x the in-plane 0.8 mm: kernel 1 and no pooling on z at first
    assert c.network.kernel_sizes[0] == [1, 3, 3]
    assert c.network.strides[1] == [1, 2, 2]
    pools = pools_per_axis(c.network)
    assert pools[0] < pools[1] == pools[2]
    assert c.resampling.separate_axis == 0 and c.resampling.separate_axis_order == 0
    _check_divisibility(c)


def test_isotropic_spacing_is_the_median(fingerprint_factory):
    fp = fingerprint_factory(spacings=[[1.0, 0.9, 0.9]] * 3 + [[1.4, 0.7, 0.7]] * 4, shapes=[[100, 120, 110]] * 7)
    c = plan_experiment(fp).configuration("3d_fullres")
    assert c.spacing == [1.4, 0.7, 0.7]
    assert c.resampling.separate_axis is None


@pytest.mark.parametrize("gpu", [0.25, 0.5, 2.0, 10.0, 40.0])
@pytest.mark.parametrize("case", [ISOTROPIC, ANISOTROPIC, dict(spacings=[1, 1, 1], shapes=[[37, 91, 150]] * 5)])
def test_patch_edges_multiples_of_16_and_divisible_by_pools(fingerprint_factory, case, gpu):
    plans = plan_experiment(fingerprint_factory(**case), gpu_memory_gb=gpu)
    for c in plans.configurations.values():
        _check_divisibility(c)
        assert all(p <= 5 for p in pools_per_axis(c.network))
        assert c.batch_size >= 2


def test_tiny_budget_gives_a_small_network(fingerprint_factory):
    big = plan_experiment(fingerprint_factory(**ISOTROPIC), gpu_memory_gb=10.0).configuration("3d_fullres")
    small = plan_experiment(fingerprint_factory(**ISOTROPIC), gpu_memory_gb=0.5).configuration("3d_fullres")
    assert small.network.n_stages < big.network.n_stages
    assert big.network.features_per_stage[0] == 32
    assert small.network.features_per_stage[0] == 8
    assert math.prod(small.patch_size) < math.prod(big.patch_size)
    assert "features start at 8" in small.why["network"]
    assert training_memory_bytes(small.network, small.patch_size, 2, 1, 2) <= memory_budget_bytes(0.5)


@pytest.mark.parametrize("gpu, features", [(24.0, 32), (4.0, 32), (2.0, 16), (1.0, 16), (0.5, 8), (0.05, 8)])
def test_first_stage_features_follow_the_budget(gpu, features):
    assert base_features_for_budget(memory_budget_bytes(gpu))[0] == features


def test_small_images_keep_their_shape_and_get_larger_batches(fingerprint_factory):
    fp = fingerprint_factory(spacings=[1, 1, 1], shapes=[[64, 64, 64]] * 400)
    c = plan_experiment(fp, gpu_memory_gb=10.0).configuration("3d_fullres")
    assert c.patch_size == [64, 64, 64]
    # memory allows many 64^3 samples; 5% of 400 cases is 20 patches; 3d cap 16
    assert c.batch_size == 16
    few = plan_experiment(fingerprint_factory(spacings=[1, 1, 1], shapes=[[64, 64, 64]] * 10))
    assert few.configuration("3d_fullres").batch_size == 2  # 5% of 10 images is under one patch


def test_2d_configuration(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ANISOTROPIC))
    c = plans.configuration("2d")
    assert c.dims == 2 and len(c.network.kernel_sizes[0]) == 2
    assert len(c.spacing) == 3
    assert c.batch_size > plans.configuration("3d_fullres").batch_size
    _check_divisibility(c)


def test_few_slices_default_to_2d(fingerprint_factory):
    fp = fingerprint_factory(spacings=[[6.0, 0.5, 0.5]] * 6, shapes=[[8, 320, 320]] * 6)
    plans = plan_experiment(fp)
    assert plans.default_configuration == "2d"
    assert "2D" in plans.why["default_configuration"]


def test_ct_normalisation_uses_dataset_statistics(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC, modality="CT"))
    (n,) = plans.configuration("3d_fullres").normalization
    assert n.scheme == "ct"
    assert (n.lower, n.upper, n.mean, n.std) == (-900.0, 1200.0, 40.0, 120.0)
    assert "CT" in n.why


def test_mr_normalisation_zscore_or_nonzero(fingerprint_factory):
    kept = plan_experiment(fingerprint_factory(**ISOTROPIC, nonzero_removed=0.1))
    assert kept.configuration("3d_fullres").normalization[0].scheme == "zscore"
    removed = plan_experiment(fingerprint_factory(**ISOTROPIC, nonzero_removed=0.4))
    assert removed.configuration("3d_fullres").normalization[0].scheme == "zscore_nonzero"
    multi = plan_experiment(fingerprint_factory(**ISOTROPIC, channels=2, modality=["CT", "MR"]))
    assert [n.scheme for n in multi.configuration("3d_fullres").normalization] == ["ct", "zscore"]


def _small_target(**kw):
    return dict(spacings=[1, 1, 1], shapes=[[256, 256, 256]] * 10, bbox_fraction=0.01, extent_mm=[40, 50, 30], **kw)


@pytest.mark.parametrize("gpu", [0.5, 10.0])
def test_small_target_in_large_image_plans_the_cascade(fingerprint_factory, gpu):
    plans = plan_experiment(fingerprint_factory(**_small_target()), gpu_memory_gb=gpu)
    assert plans.default_configuration == "cascade_fullres"
    assert set(plans.configurations) == {"2d", "2.5d", "3d_fullres", "locator", "cascade_fullres"}
    loc = plans.configuration("locator")
    seg = plans.configuration("cascade_fullres")
    assert loc.kind == "locator" and not loc.crop_to_nonzero and loc.locator is not None
    assert loc.locator.loss == "kl" and loc.locator.symmetric is False
    assert loc.locator.sigma_min < loc.locator.sigma_start <= 4.0
    # the median whole image (256 mm) fits one locator patch
    assert all(p * s >= 256 - 1e-6 for p, s in zip(loc.patch_size, loc.spacing))
    assert all(e % 16 == 0 for e in loc.patch_size)
    assert min(loc.spacing) >= 2 * min(seg.spacing)  # a low-resolution locator
    assert max(loc.patch_size) <= 96
    assert seg.kind == "segmentation" and not seg.crop_to_nonzero
    assert seg.spacing == plans.configuration("3d_fullres").spacing
    crop = seg.cascade.crop_size
    assert all(c % 16 == 0 for c in crop)
    assert all(c >= e for c, e in zip(crop, [40, 50, 30]))  # p95 extent in voxels at 1 mm
    assert all(p <= c for p, c in zip(seg.patch_size, crop))
    assert seg.cascade.locator_configuration == "locator"
    _check_divisibility(loc)
    _check_divisibility(seg)


def test_locator_grid_keeps_the_target_several_voxels_across(fingerprint_factory):
    from segforge.planning.cascade_rule import LOCATOR_TARGET_VOXELS

    # a 14.5 mm target in 220 mm images: at the budget's patch edge it would be 3 voxels across
    fingerprint = fingerprint_factory(spacings=[1.5, 1.5, 1.5], shapes=[[72, 147, 147]] * 10, bbox_fraction=0.001,
                                      extent_mm=[15, 16, 14.5], modality="CT")
    small = plan_experiment(fingerprint, gpu_memory_gb=0.1).configuration("locator")
    assert 14.5 / max(small.spacing) >= LOCATOR_TARGET_VOXELS
    assert small.network.features_per_stage[0] == 4  # half of the 8 a 0.1 GB budget gives
    assert "spans" in small.why["spacing"] and "with 4 features" in small.why["spacing"]
    roomy = plan_experiment(fingerprint, gpu_memory_gb=0.2).configuration("locator")
    assert roomy.network.features_per_stage[0] == 8 and 14.5 / max(roomy.spacing) >= LOCATOR_TARGET_VOXELS
    # a 13 mm target: no grid that fits reaches 4 voxels, the finest that fits is still taken
    smaller = fingerprint_factory(spacings=[1.5, 1.5, 1.5], shapes=[[72, 147, 147]] * 10, bbox_fraction=0.001,
                                  extent_mm=[13, 14, 13], modality="CT")
    base_grid = 220.5 / 48  # the 8-feature choice: edge 48
    finest = plan_experiment(smaller, gpu_memory_gb=0.1).configuration("locator")
    assert finest.network.features_per_stage[0] == 4 and max(finest.spacing) < base_grid - 0.5
    assert 13 / max(finest.spacing) < LOCATOR_TARGET_VOXELS and "spans 3.8 voxels" in finest.why["spacing"]


def test_large_organ_plans_no_cascade(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC, bbox_fraction=0.4))
    assert "locator" not in plans.configurations
    assert plans.default_configuration == "3d_fullres"
    assert "no cascade" in plans.why["cascade"]


def test_small_target_in_small_image_plans_no_cascade(fingerprint_factory):
    fp = fingerprint_factory(spacings=[1, 1, 1], shapes=[[96, 96, 96]] * 10, bbox_fraction=0.01, extent_mm=[10, 10, 10])
    plans = plan_experiment(fp)
    assert "cascade_fullres" not in plans.configurations


def test_overrides_are_recorded(fingerprint_factory):
    overrides = PlanOverrides(spacing=(2.0, 2.0, 2.0), patch_size=(64, 96, 80), batch_size=3,
                              default_configuration="2d")
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC), overrides=overrides)
    c = plans.configuration("3d_fullres")
    assert c.spacing == [2.0, 2.0, 2.0] and c.why["spacing"] == USER_OVERRIDE
    assert c.patch_size == [64, 96, 80] and c.why["patch_size"] == USER_OVERRIDE
    assert c.batch_size == 3 and c.why["batch_size"] == USER_OVERRIDE
    _check_divisibility(c)
    assert plans.configuration("2d").batch_size == 3
    assert plans.default_configuration == "2d" and plans.why["default_configuration"] == USER_OVERRIDE


def test_default_override_to_cascade_plans_it(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC), overrides=PlanOverrides(default_configuration="cascade_fullres"))
    assert "locator" in plans.configurations and plans.default_configuration == "cascade_fullres"
    assert USER_OVERRIDE in plans.why["cascade"]


@pytest.mark.parametrize(
    "kwargs, text",
    [
        (dict(patch_size=(100, 96, 96)), "use e.g. 112"),
        (dict(patch_size=(96,)), "3 edges"),
        (dict(spacing=(1.0, -1.0, 1.0)), "positive"),
        (dict(batch_size=0), "positive integer"),
        (dict(default_configuration="3d_fulres"), "did you mean '3d_fullres'"),
    ],
)
def test_bad_overrides_say_what_to_do(kwargs, text):
    with pytest.raises(InputError, match=text):
        PlanOverrides(**kwargs)


def test_every_configuration_field_has_a_why(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**_small_target(modality="CT")), gpu_memory_gb=2.0)
    for c in plans.configurations.values():
        for f in fields(Configuration):
            if f.name == "why" or getattr(c, f.name) is None:
                continue
            assert c.why.get(f.name), (c.name, f.name)
        assert all(n.why for n in c.normalization)
        assert c.resampling.why
    loc = plans.configuration("locator").locator
    assert set(loc.why) >= {f.name for f in fields(loc) if f.name != "why"}
    casc = plans.configuration("cascade_fullres").cascade
    assert set(casc.why) >= {f.name for f in fields(casc) if f.name != "why"}
    assert {"default_configuration", "cascade", "gpu_memory_gb"} <= set(plans.why)


def test_plans_json_round_trip(fingerprint_factory, tmp_path):
    plans = plan_experiment(fingerprint_factory(**_small_target(modality="CT")))
    plans.save(tmp_path / "plans.json")
    again = Plans.load(tmp_path / "plans.json")
    assert again.to_dict() == plans.to_dict()
    assert again.version() == plans.version()
    for name in plans.configurations:
        assert again.configuration(name).version() == plans.configuration(name).version()


def test_plan_is_deterministic_and_pure(fingerprint_factory):
    fp = fingerprint_factory(**_small_target())
    import copy

    before = copy.deepcopy(fp)
    assert plan_experiment(fp).to_dict() == plan_experiment(fp).to_dict()
    assert fp == before


def test_2d_shares_the_3d_fullres_cases(fingerprint_factory):
    from segforge.preprocessing.case import preprocessing_version

    plans = plan_experiment(fingerprint_factory(**ANISOTROPIC, modality="CT"))
    flat, full = plans.configuration("2d"), plans.configuration("3d_fullres")
    assert flat.data_identifier == full.data_identifier == "3d_fullres"
    assert preprocessing_version(flat) == preprocessing_version(full)


def test_budget_too_small_for_any_patch_still_plans_and_says_so(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(**ISOTROPIC), gpu_memory_gb=0.001)
    c = plans.configuration("3d_fullres")
    assert c.patch_size == [16, 16, 16]
    assert "still over budget" in c.why["patch_size"]
    with pytest.raises(ValueError, match="positive"):
        plan_experiment(fingerprint_factory(**ISOTROPIC), gpu_memory_gb=0)
