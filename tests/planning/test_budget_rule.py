"""Plans sized to the device and the training time (segforge/planning/budget_rule.py)."""

from __future__ import annotations

import pytest

from segforge.planning import budget_rule
from segforge.planning.budget_rule import (
    DEFAULT_CPU_MINUTES,
    LOCATOR_ITERATIONS,
    MIN_ITERATIONS,
    TRAINING_FRACTION,
    plan_for_device,
    stage_shares,
)
from segforge.planning.compute_rule import iteration_seconds
from segforge.planning.device_profile import DeviceProfile
from segforge.planning.overrides import PlanOverrides
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import Plans

RATES = {"conv_gflops_3d": {"4": 5.0, "8": 10.0, "16": 20.0, "32": 40.0},
         "conv_gflops_2d": {"4": 5.0, "8": 10.0, "16": 20.0, "32": 40.0},
         "elementwise_gelems": 0.1, "layer_overhead_s": 0.001}


def cpu(memory_gb=4.0) -> DeviceProfile:
    return DeviceProfile(kind="cpu", name="test cpu", memory_gb=memory_gb, threads=1, source="given", **RATES)


def gpu(memory_gb=24.0) -> DeviceProfile:
    return DeviceProfile(kind="cuda", name="test gpu", memory_gb=memory_gb, source="given", **RATES)


@pytest.fixture
def organs(fingerprint_factory):
    return fingerprint_factory(spacings=[2.0, 1.5, 1.5], shapes=[[48, 128, 128]] * 10, modality="CT")


def _same_configurations(a: Plans, b: Plans) -> bool:
    return {n: c.version() for n, c in a.configurations.items()} == {n: c.version() for n, c in b.configurations.items()}


def test_gpu_without_a_budget_plans_for_its_memory(organs):
    plans = plan_for_device(organs, gpu(24.0))
    assert _same_configurations(plans, plan_experiment(organs, gpu_memory_gb=24.0))
    c = plans.compute
    assert (c.device, c.memory_gb, c.train_minutes, c.sized_for_minutes, c.candidates) == ("cuda", 24.0, None, None, [])
    assert "the GPU's memory" in c.why["memory_gb"]
    assert c.configurations["3d_fullres"]["predicted_seconds_per_iteration"] > 0


def test_hand_set_memory_is_the_memory_only_plan_and_recorded(organs):
    plans = plan_for_device(organs, cpu(), gpu_memory_gb=0.25)
    assert _same_configurations(plans, plan_experiment(organs, gpu_memory_gb=0.25))
    assert plans.gpu_memory_gb == 0.25 and plans.compute.overrides == ["--gpu-memory-gb 0.25"]
    assert plans.compute.sized_for_minutes is None and "user override" in plans.compute.why["device"]


def test_cpu_without_a_budget_is_sized_for_the_default_minutes(organs):
    plans = plan_for_device(organs, cpu())
    assert plans.compute.train_minutes is None and plans.compute.sized_for_minutes == DEFAULT_CPU_MINUTES
    assert _same_configurations(plans, plan_for_device(organs, cpu(), train_minutes=DEFAULT_CPU_MINUTES))


def test_largest_plan_that_gets_the_minimum_iterations(organs):
    plans = plan_for_device(organs, cpu(), train_minutes=10)
    candidates = plans.compute.candidates
    chosen = next(c for c in candidates if c["memory_gb"] == plans.gpu_memory_gb)
    larger = [c for c in candidates if c["memory_gb"] > plans.gpu_memory_gb]
    assert min(chosen["iterations"].values()) >= MIN_ITERATIONS or chosen is candidates[0]
    assert all(min(c["iterations"].values()) < MIN_ITERATIONS for c in larger)
    # the iterations are the budget over the predicted time of one
    c = plans.configuration()
    seconds = iteration_seconds(c, cpu(), plans.num_channels, plans.num_classes)
    assert chosen["iterations"][c.name] == int(TRAINING_FRACTION * 600 / seconds)
    assert plans.compute.configurations[c.name]["iterations_in_budget"] == chosen["iterations"][c.name]
    # every candidate is a different plan, the ladder is climbed in order
    shapes = [(tuple(x["patch_size"]), x["batch_size"], tuple(x["features"])) for x in candidates]
    assert len(set(shapes)) == len(shapes)
    assert [x["memory_gb"] for x in candidates] == sorted(x["memory_gb"] for x in candidates)


def test_more_time_buys_a_larger_plan(organs):
    memories = [plan_for_device(organs, cpu(), train_minutes=m).gpu_memory_gb for m in (1, 5, 15, 60, 600)]
    assert memories == sorted(memories) and memories[0] < memories[-1]


def test_too_little_time_still_plans_the_smallest(organs):
    plans = plan_for_device(organs, cpu(), train_minutes=0.01)
    assert plans.gpu_memory_gb == budget_rule.MEMORY_LADDER_GB[0]
    assert "even the smallest plan" in plans.compute.why["memory_gb"]


def test_the_ladder_stops_at_the_device_memory(organs):
    plans = plan_for_device(organs, cpu(memory_gb=0.3), train_minutes=10_000)
    assert max(c["memory_gb"] for c in plans.compute.candidates) <= 0.3


def test_overrides_and_train_minutes_are_recorded_and_round_trip(organs, tmp_path):
    plans = plan_for_device(organs, cpu(), train_minutes=7, overrides=PlanOverrides(batch_size=2),
                            device_overridden=True)
    assert plans.compute.overrides == ["--device cpu", "--train-minutes 7"]
    assert plans.compute.train_minutes == 7 and "7" in plans.compute.why["train_minutes"]
    assert plans.configuration().batch_size == 2 and plans.configuration().why["batch_size"] == "user override"
    plans.save(tmp_path / "plans.json")
    again = Plans.load(tmp_path / "plans.json")
    assert again.compute == plans.compute and again.version() == plans.version()


def test_cascade_stages_share_the_budget(fingerprint_factory):
    fp = fingerprint_factory(spacings=[1.5, 1.5, 1.5], shapes=[[64, 128, 128]] * 10, bbox_fraction=0.001,
                             extent_mm=[15.0, 15.0, 15.0], modality="CT")
    plans = plan_for_device(fp, cpu(), train_minutes=10,
                            overrides=PlanOverrides(default_configuration="cascade_fullres"))
    shares = plans.compute.stage_shares
    assert set(shares) == {"locator", "cascade_fullres"} and sum(shares.values()) == pytest.approx(1.0)
    low, high = budget_rule.LOCATOR_SHARE_RANGE
    assert low <= shares["locator"] <= high and "locator" in plans.compute.why["stage_shares"]
    assert set(plans.compute.configurations["locator"]) >= {"gflop_per_iteration", "iterations_in_budget"}


def test_stage_shares_by_hand(fingerprint_factory):
    fp = fingerprint_factory(spacings=[1.5, 1.5, 1.5], shapes=[[64, 128, 128]] * 4, bbox_fraction=0.001,
                             extent_mm=[15.0, 15.0, 15.0])
    plans = plan_experiment(fp, 0.1, PlanOverrides(default_configuration="cascade_fullres"))
    minutes = 10
    fast = {"locator": 0.1, "cascade_fullres": 0.3}
    assert stage_shares(plans, fast, minutes)[0] == {"locator": 0.2, "cascade_fullres": 0.8}  # 5.9% -> at least 20%
    slow = {"locator": 2.0, "cascade_fullres": 0.3}
    assert stage_shares(plans, slow, minutes)[0] == {"locator": 0.5, "cascade_fullres": 0.5}  # 118% -> at most 50%
    middle = {"locator": 0.5, "cascade_fullres": 0.3}
    share = LOCATOR_ITERATIONS * 0.5 / (TRAINING_FRACTION * 60 * minutes)
    assert stage_shares(plans, middle, minutes)[0]["locator"] == pytest.approx(share, abs=1e-3)
    single = plan_experiment(fingerprint_factory(spacings=[1.5, 1.5, 1.5], shapes=[[64, 128, 128]] * 4), 0.1)
    assert stage_shares(single, {"3d_fullres": 1.0}, minutes)[0] == {"3d_fullres": 1.0}


def test_a_patch_override_skips_the_rungs_too_small_for_it(organs):
    from segforge.errors import InputError

    plans = plan_for_device(organs, cpu(), train_minutes=10, overrides=PlanOverrides(patch_size=(48, 128, 128)))
    assert plans.configuration().patch_size == [48, 128, 128]
    assert all(c["patch_size"] == [48, 128, 128] for c in plans.compute.candidates)
    with pytest.raises(InputError, match="needs about"):
        plan_for_device(organs, cpu(memory_gb=0.5), train_minutes=10,
                        overrides=PlanOverrides(patch_size=(1024, 1024, 1024)))
