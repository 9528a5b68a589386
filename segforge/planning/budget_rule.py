"""Plans sized to the device at hand and to the training time: which memory budget to plan for.

The memory rules (``patch_size_rule``, ``batch_size_rule``, ``cascade_rule``) make one plan
per memory budget. A GPU's memory bounds the plan; on a CPU memory is not what limits
training, time is. So:

* no time budget on a GPU: plan for the GPU's memory (as nnU-Net plans for its ~10 GB);
* a time budget (``--train-minutes``), or a CPU: plan for each memory budget of
  :data:`MEMORY_LADDER_GB` up to the device's memory, predict what an iteration of each
  plan's default configuration costs on this device (:mod:`segforge.planning.compute_rule`)
  and how many iterations the budget buys, and take the largest plan that still gets
  :data:`MIN_ITERATIONS` (measured: docs/planning.md "Compute"). A CPU without a time budget
  is sized for :data:`DEFAULT_CPU_MINUTES`.
* ``--gpu-memory-gb`` alone reproduces the memory-only plan for that budget (the hand-set
  plan); with ``--train-minutes`` it is the upper end of the ladder.

A cascade's two stages share the budget: the locator gets the time of
:data:`LOCATOR_ITERATIONS` iterations, between :data:`LOCATOR_SHARE_RANGE` of it, the
segmenter the rest. Everything lands in ``plans.compute`` (a :class:`ComputeTarget`) with
its reasons.
"""

from __future__ import annotations

from segforge.errors import InputError
from segforge.planning.compute_rule import iteration_gflop, iteration_seconds
from segforge.planning.device_profile import DeviceProfile
from segforge.planning.overrides import PlanOverrides
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import ComputeTarget, Plans

__all__ = [
    "MEMORY_LADDER_GB",
    "MIN_ITERATIONS",
    "DEFAULT_CPU_MINUTES",
    "TRAINING_FRACTION",
    "LOCATOR_ITERATIONS",
    "LOCATOR_SHARE_RANGE",
    "plan_for_device",
    "stage_shares",
    "training_stages",
]

MEMORY_LADDER_GB = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# Below about 1 600 iterations a smaller plan with more iterations wins; at 1 000 the 2D MR plan lost 0.016
# held-out Dice to a smaller one at 5 minutes (docs/planning.md "What a budget buys": thresholds 1 000-3 000)
MIN_ITERATIONS = 1600
DEFAULT_CPU_MINUTES = 15.0
TRAINING_FRACTION = 0.85  # of the budget spent in training iterations; the rest: validation, checkpoints, start
LOCATOR_ITERATIONS = 300
LOCATOR_SHARE_RANGE = (0.2, 0.5)


def training_stages(plans: Plans, configuration: str | None = None) -> list[str]:
    """Configurations that training ``configuration`` (default: the plans' default) runs, in order."""
    c = plans.configuration(configuration)
    if c.cascade is not None:
        return [c.cascade.locator_configuration, c.name]
    return [c.name]


def stage_shares(plans: Plans, seconds_per_iteration: dict[str, float], minutes: float,
                 configuration: str | None = None) -> tuple[dict[str, float], str]:
    """Share of the budget per training stage, with the reason (a single stage gets all of it)."""
    stages = training_stages(plans, configuration)
    if len(stages) == 1:
        return {stages[0]: 1.0}, "one stage: the whole budget"
    locator, segmenter = stages
    wanted = LOCATOR_ITERATIONS * seconds_per_iteration[locator] / (TRAINING_FRACTION * 60 * minutes)
    low, high = LOCATOR_SHARE_RANGE
    share = min(high, max(low, wanted))
    why = (f"the locator gets the time of {LOCATOR_ITERATIONS} iterations ({100 * wanted:.0f}% of "
           f"{minutes:g} minutes at {seconds_per_iteration[locator]:.3g} s each), kept within "
           f"{100 * low:.0f}-{100 * high:.0f}% -> {100 * share:.0f}%; the segmenter the rest")
    return {locator: round(share, 3), segmenter: round(1 - share, 3)}, why


def _costs(plans: Plans, profile: DeviceProfile) -> dict[str, dict]:
    out = {}
    for name, c in plans.configurations.items():
        classes = 1 if c.kind == "locator" else plans.num_classes
        out[name] = {"gflop_per_iteration": round(iteration_gflop(c, plans.num_channels, classes), 3)}
        if profile.calibrated:
            out[name]["predicted_seconds_per_iteration"] = round(
                iteration_seconds(c, profile, plans.num_channels, classes), 4)
    return out


def _iterations(plans: Plans, costs: dict, minutes: float) -> tuple[dict[str, int], dict[str, float], str]:
    """Iterations each stage of the default configuration gets in ``minutes``."""
    seconds = {n: costs[n]["predicted_seconds_per_iteration"] for n in training_stages(plans)}
    shares, why = stage_shares(plans, seconds, minutes)
    iterations = {n: int(TRAINING_FRACTION * 60 * minutes * shares[n] / seconds[n]) for n in shares}
    return iterations, shares, why


def plan_for_device(fingerprint: dict, profile: DeviceProfile, train_minutes: float | None = None,
                    gpu_memory_gb: float | None = None, overrides: PlanOverrides | None = None,
                    device_overridden: bool = False) -> Plans:
    """Plans for ``profile`` (see the module docstring); ``plans.compute`` says what they were made for."""
    if train_minutes is not None and not train_minutes > 0:
        raise ValueError(f"train_minutes must be positive, got {train_minutes}")
    cap = float(gpu_memory_gb) if gpu_memory_gb is not None else profile.memory_gb
    user = [f"--device {profile.kind}"] if device_overridden else []
    user += [f"--gpu-memory-gb {gpu_memory_gb:g}"] if gpu_memory_gb is not None else []
    user += [f"--train-minutes {train_minutes:g}"] if train_minutes is not None else []
    memory_why = (f"--gpu-memory-gb {gpu_memory_gb:g} (user override)" if gpu_memory_gb is not None
                  else profile.why)
    sizing = train_minutes
    if sizing is None and profile.kind == "cpu" and gpu_memory_gb is None:
        sizing = DEFAULT_CPU_MINUTES
    why = {"device": f"{profile.summary()}; {memory_why}",
           "calibration": f"{profile.source}" if profile.calibrated else "not calibrated"}

    if sizing is None or not profile.calibrated:
        # the memory-only plan: a GPU without a time budget, or the hand-set --gpu-memory-gb
        plans = plan_experiment(fingerprint, gpu_memory_gb=cap, overrides=overrides)
        why["memory_gb"] = (f"{cap:g} GB: " + ("the memory given (--gpu-memory-gb)" if gpu_memory_gb is not None
                                                else "the GPU's memory") + "; no time budget to size for")
        candidates = []
    else:
        ladder = sorted({g for g in MEMORY_LADDER_GB if g < cap} | {cap})
        candidates, chosen, last_shape = [], None, None
        refused = None
        for gb in ladder:
            try:
                plans_gb = plan_experiment(fingerprint, gpu_memory_gb=gb, overrides=overrides)
            except InputError as exc:  # a --patch-size / --batch-size that this rung's memory cannot hold
                refused = exc
                continue
            shape = [(n, c.patch_size, c.batch_size, c.network.features_per_stage)
                     for n, c in plans_gb.configurations.items() if n in training_stages(plans_gb)]
            if shape == last_shape:
                continue  # more memory, same plan: the smaller budget stands for it
            last_shape = shape
            iterations, _, _ = _iterations(plans_gb, _costs(plans_gb, profile), sizing)
            c = plans_gb.configuration()
            candidates.append({"memory_gb": gb, "configuration": c.name, "patch_size": list(c.patch_size),
                               "batch_size": c.batch_size, "features": list(c.network.features_per_stage),
                               "iterations": iterations})
            if chosen is None or min(iterations.values()) >= MIN_ITERATIONS:
                chosen = (gb, plans_gb)
        if chosen is None:
            raise refused
        gb, plans = chosen
        smallest = candidates[0]["iterations"]
        if min(smallest.values()) < MIN_ITERATIONS and gb == candidates[0]["memory_gb"]:
            rule = f"even the smallest plan ({gb:g} GB) gets fewer than {MIN_ITERATIONS} iterations: it is taken"
        else:
            rule = f"the largest plan whose predicted iterations in the budget reach {MIN_ITERATIONS}"
        why["memory_gb"] = (f"{gb:g} GB of the ladder {[c['memory_gb'] for c in candidates]} (up to {cap:g} GB): "
                            f"{rule} (docs/planning.md \"Compute\")")
        why["sized_for_minutes"] = (f"{sizing:g} minutes: --train-minutes" if train_minutes is not None else
                                    f"{sizing:g} minutes: no --train-minutes, a CPU plan is sized for "
                                    f"{DEFAULT_CPU_MINUTES:g} minutes (segforge_train --max-minutes sets the real "
                                    "budget; the plan stays)")
    costs = _costs(plans, profile)
    shares, share_why = {}, ""
    if profile.calibrated and sizing is not None:
        iterations, shares, share_why = _iterations(plans, costs, sizing)
        for name, n in iterations.items():
            costs[name]["iterations_in_budget"] = n
    if shares and len(shares) > 1:
        why["stage_shares"] = share_why
    why["train_minutes"] = (f"{train_minutes:g}: segforge_train's --max-minutes unless it is given"
                            if train_minutes is not None else
                            "none given: segforge_train runs its full schedule unless --max-minutes is given")
    plans.compute = ComputeTarget(
        device=profile.kind, device_name=profile.name, memory_gb=float(plans.gpu_memory_gb),
        train_minutes=train_minutes, sized_for_minutes=sizing, configurations=costs,
        stage_shares=shares if len(shares) > 1 else {}, candidates=candidates,
        calibration={k: getattr(profile, k) for k in ("conv_gflops_3d", "conv_gflops_2d", "elementwise_gelems",
                                                      "layer_overhead_s")} if profile.calibrated else {},
        overrides=user, why=why)
    return plans
