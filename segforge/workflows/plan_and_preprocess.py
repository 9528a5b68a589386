"""Verify -> fingerprint -> plan -> preprocess, as numbered, resumable steps.

What ``segforge_plan_and_preprocess`` runs. Everything lands in
``segforge_preprocessed/DatasetNNN_Name/``:

* ``fingerprint.json`` (step 2) and ``raw_signature.json``: a cheap signature of the raw
  dataset (every file's relative path, size and modification time). When the signature
  is unchanged, verification (step 1) and fingerprint extraction (step 2) are skipped;
  any change to the raw files re-does both.
* ``plans.json`` and a copy of ``dataset.json`` (step 3). Planning is cheap and
  deterministic, so it always runs (with this run's memory budget and overrides).
* ``<data_identifier>/`` per configuration (step 4), by
  :func:`segforge.preprocessing.preprocess_dataset`, which skips finished cases.

Steps 2 and 4 run on the executor ``execution`` names (local processes or Ray). With a
``part`` (a SLURM array task), only step 4 runs, for that part's cases, from the
``plans.json`` a whole run (``--plan-only``) wrote before (docs/scaling.md).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

from segforge import paths
from segforge.errors import DatasetProblems, InputError
from segforge.execution import ExecutionSettings, FolderClaim, new_run_id
from segforge.io.atomic import copy_file_atomic, write_json_atomic
from segforge.io.dataset import RawDataset
from segforge.planning.budget_rule import plan_for_device
from segforge.planning.device_profile import DeviceProfile, resolve_device_profile
from segforge.planning.overrides import PlanOverrides
from segforge.planning.plans import Plans

__all__ = [
    "plan_and_preprocess",
    "raw_signature",
    "configurations_to_preprocess",
    "FINGERPRINT_FILE",
    "SIGNATURE_FILE",
    "PLANS_FILE",
]

FINGERPRINT_FILE = "fingerprint.json"
SIGNATURE_FILE = "raw_signature.json"
PLANS_FILE = "plans.json"


def raw_signature(root: Path) -> str:
    """Hash of every file's relative path, size and mtime under ``root`` (no file is read)."""
    entries = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(folder) / name
            st = path.stat()
            entries.append(f"{path.relative_to(root).as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def configurations_to_preprocess(plans: Plans, requested: list[str] | None = None) -> list[str]:
    """``requested`` (default: the plan's default) plus what they need, dependencies first.

    A cascade segmenter needs its locator's configuration.
    """
    names = list(requested) if requested else [plans.default_configuration]
    ordered: list[str] = []
    for name in names:
        configuration = plans.configuration(name)  # InputError naming the planned ones
        if configuration.cascade is not None:
            dependency = configuration.cascade.locator_configuration
            if dependency not in ordered:
                ordered.append(dependency)
        if name not in ordered:
            ordered.append(name)
    return ordered


def plan_and_preprocess(
    dataset: str | int,
    num_processes: int = 2,
    gpu_memory_gb: float | None = None,
    configurations: list[str] | None = None,
    overrides: PlanOverrides | None = None,
    verify_only: bool = False,
    plan_only: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    execution: ExecutionSettings | None = None,
    device: str | None = None,
    train_minutes: float | None = None,
    device_profile: DeviceProfile | None = None,
    recalibrate: bool = False,
) -> Plans | None:
    """Run the steps for ``dataset`` (id, name or raw folder); returns the plans (None
    with ``verify_only``). Raises :class:`DatasetProblems` when verification finds any.

    ``execution``: executor and workers of steps 2 and 4 (default: ``num_processes`` local
    processes); with a ``part``, only this part's share of step 4 (see the module docstring).
    The plans are made for ``device_profile``, else for ``device`` (None: the GPU when
    there is one, else the CPU), calibrated once per machine; ``gpu_memory_gb`` and
    ``train_minutes``: see :func:`segforge.planning.budget_rule.plan_for_device`."""
    ds = RawDataset.open(dataset)
    out = paths.preprocessed_root() / ds.name
    execution = execution or ExecutionSettings(workers=max(1, int(num_processes)))
    if execution.part is not None and (verify_only or plan_only):
        raise InputError("--part preprocesses one share of the cases; verify and plan without --part")
    # one run at a time writes the dataset's state and plans; the parts of one array share them (they only read)
    with FolderClaim(out, new_run_id(), execution.shard, "plan_and_preprocess"):
        signature = raw_signature(ds.root)
        state = _read_state(out / SIGNATURE_FILE)
        same_raw = state.get("raw_signature") == signature
        if execution.part is not None:
            return _preprocess_part(ds, out, same_raw and state.get("fingerprint_sha256"), configurations, execution,
                                    log)
        target = dict(gpu_memory_gb=gpu_memory_gb, device=device, train_minutes=train_minutes,
                      device_profile=device_profile, recalibrate=recalibrate)
        return _run_steps(ds, out, signature, state, target, configurations, overrides, verify_only,
                          plan_only, progress, log, num_processes, execution)


def _run_steps(ds: RawDataset, out: Path, signature: str, state: dict, target: dict, configurations, overrides,
               verify_only, plan_only, progress, log, num_processes, execution) -> Plans | None:
    """Steps 1-4 of a whole run (the claim on ``out`` is held)."""
    same_raw = state.get("raw_signature") == signature

    # 1. verify the raw dataset
    if verify_only or not (same_raw and state.get("verified")):
        log(f"[1/4] verifying {ds.root}")
        problems = _verify(ds, num_processes, progress, execution)
        if problems:
            raise DatasetProblems(problems)
        state = {**(state if same_raw else {}), "raw_signature": signature, "verified": True}
        write_json_atomic(out / SIGNATURE_FILE, state)
    else:
        log("[1/4] raw dataset unchanged since its last verification: skipped")
    if verify_only:
        log(f"{ds.name}: no problems found")
        return None

    # 2. fingerprint
    fingerprint_path = out / FINGERPRINT_FILE
    fingerprint = None
    if state.get("fingerprint_sha256") and fingerprint_path.is_file():
        text = fingerprint_path.read_bytes()
        if hashlib.sha256(text).hexdigest() == state["fingerprint_sha256"]:
            fingerprint = json.loads(text)
            log(f"[2/4] fingerprint of the unchanged raw dataset reused: {fingerprint_path}")
    if fingerprint is None:
        log("[2/4] extracting the fingerprint")
        fingerprint = _extract_fingerprint(ds, execution, progress, log)
        write_json_atomic(fingerprint_path, fingerprint)
        state["fingerprint_sha256"] = hashlib.sha256(fingerprint_path.read_bytes()).hexdigest()
        write_json_atomic(out / SIGNATURE_FILE, state)

    # 3. plan
    device, gpu_memory_gb, train_minutes = target["device"], target["gpu_memory_gb"], target["train_minutes"]
    device_profile = target["device_profile"]
    if device_profile is None:
        hand_set = gpu_memory_gb is not None and train_minutes is None  # the memory-only plan needs no speed
        device_profile = resolve_device_profile(device, recalibrate=target["recalibrate"], measure=not hand_set,
                                                log=log)
    plans = plan_for_device(fingerprint, device_profile, train_minutes=train_minutes, gpu_memory_gb=gpu_memory_gb,
                            overrides=overrides, device_overridden=device is not None)
    plans.save(out / PLANS_FILE)
    _copy_atomic(ds.root / "dataset.json", out / "dataset.json")
    summary = ", ".join(
        f"{n} {'x'.join(map(str, c.patch_size))} @ {c.spacing} batch {c.batch_size}"
        for n, c in plans.configurations.items()
    )
    log(f"[3/4] planned {summary}; default {plans.default_configuration} -> {out / PLANS_FILE}")
    log(f"      {describe_compute(plans)}")
    if plan_only:
        return plans

    # 4. preprocess
    names = configurations_to_preprocess(plans, configurations)
    log(f"[4/4] preprocessing {', '.join(names)}")
    _preprocess(ds.name, plans, names, execution, progress, log)
    log(f"done: {out}")
    return plans


def _preprocess_part(ds: RawDataset, out: Path, fingerprinted: bool, configurations: list[str] | None,
                     execution: ExecutionSettings, log) -> Plans:
    """One part of step 4, from the plans a whole run wrote for the unchanged raw dataset."""
    part = f"part {execution.part}/{execution.num_parts}"
    if not fingerprinted or not (out / PLANS_FILE).is_file():
        raise InputError(f"{part}: plan first, once, without --part (segforge_plan_and_preprocess -d {ds.name} "
                         "--plan-only), then start the parts; the raw dataset is new or changed since its plans",
                         out / PLANS_FILE)
    plans = Plans.load(out / PLANS_FILE)
    names = configurations_to_preprocess(plans, configurations)
    log(f"{part}: preprocessing {', '.join(names)} with {out / PLANS_FILE}")
    _preprocess(ds.name, plans, names, execution, True, log)
    return plans


def describe_compute(plans: Plans) -> str:
    """One line: the device and budget the plans were made for, and what an iteration costs there."""
    c = plans.compute
    if c is None:
        return f"sized for {plans.gpu_memory_gb:g} GB"
    text = f"for {c.device} ({c.device_name}), {c.memory_gb:g} GB"
    if c.sized_for_minutes is not None:
        text += f", sized for {c.sized_for_minutes:g} minutes of training"
    default = c.configurations.get(plans.default_configuration, {})
    if "predicted_seconds_per_iteration" in default:
        text += f"; {plans.default_configuration}: {default['predicted_seconds_per_iteration']:.3g} s per iteration"
        if "iterations_in_budget" in default:
            text += f", about {default['iterations_in_budget']} iterations"
    return text


def _verify(ds: RawDataset, num_processes: int, progress: bool, execution: ExecutionSettings) -> list[str]:
    from segforge.io.verify import verify_dataset

    pool = _RunnerPool(execution) if execution.executor != "local" else None
    return verify_dataset(ds, num_processes=num_processes, progress=progress, pool=pool)


class _RunnerPool:
    """``verify_dataset``'s ``pool``: its per-case checks as a stage of the task runner (on Ray,
    the cluster reads the files, not this machine alone)."""

    def __init__(self, execution: ExecutionSettings):
        self.execution = execution

    def imap(self, function, items):
        from segforge.execution import CaseStage, CaseTask, run_cases

        items = list(items)
        tasks = [CaseTask(str(i), item) for i, item in enumerate(items)]
        stage = CaseStage("verify", _apply, setup=_given, setup_arg=function)
        summary = run_cases(stage, tasks, self.execution, progress=False, log=None)
        for item, outcome in zip(items, summary.outcomes):
            if outcome.status == "done":
                yield outcome.result
            else:
                name = getattr(getattr(item, "case", None), "name", outcome.name)
                yield [f"case {name}: could not be checked ({outcome.reason})"]


def _given(function, device):
    return function


def _apply(function, item):
    return function(item)


def _extract_fingerprint(ds: RawDataset, execution: ExecutionSettings, progress: bool, log) -> dict:
    from segforge.fingerprint import extract_fingerprint

    return extract_fingerprint(ds, progress=progress, execution=execution, log=log)


def _preprocess(dataset_name: str, plans: Plans, names: list[str], execution: ExecutionSettings, progress: bool,
                log) -> None:
    from segforge.preprocessing import preprocess_dataset

    preprocess_dataset(dataset_name, plans, names, progress=progress, execution=execution, log=log)


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _copy_atomic(source: Path, target: Path) -> None:
    if not source.is_file():
        raise InputError("dataset.json not found", source)
    copy_file_atomic(source, target)
