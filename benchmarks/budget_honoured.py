"""Is ``--max-minutes`` honoured? The newcomer's commands, no other flags, on every synthetic kind.

    python benchmarks/budget_honoured.py --minutes 5                       # every kind, one at a time
    python benchmarks/budget_honoured.py --minutes 60 --kinds organs       # the one long run
    python benchmarks/budget_honoured.py --smoke

For each kind (``--kinds``; ``realistic`` is the small target at the realistic size, where
the CPU plan picks the cascade) a synthetic dataset is generated, then exactly

    segforge_plan_and_preprocess -d ID
    segforge_train ID 0 --max-minutes M

run as child processes, and from the training log: the device and plan it says it trains,
the seconds per iteration it measured, the training time of each stage (the trainer's clock,
from its start to the stop), the final checkpoint's seconds, the whole training workflow
(all stages and their final checkpoints) and the fold validation after it, and the command's
wall time. ``honoured``: training (all stages) ended within M minutes plus one iteration, and
the workflow within that plus the final checkpoints. Honouring a clock does not need a quiet
machine (a loaded one buys fewer iterations, not more minutes); Dice is not the point here.

The device calibration the planner caches is kept in the scratch folder (``--cache``,
default ``<workdir>/cache``) so a run on a busy machine does not leave slow rates in the
user's cache; pass ``--cache ~/.cache/segforge`` to plan with the machine's own.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import base_parser, remove_pipeline_folders, run_measured, use_workdir, write_result  # noqa: E402

# kind -> segforge_synthetic arguments
KINDS = {
    "organs": ["--kind", "organs"],
    "organs_aniso": ["--kind", "organs", "--anisotropic", "--modality", "MR"],
    "small_target": ["--kind", "small_target"],
    "realistic": ["--kind", "small_target", "--size", "realistic"],
}

_STAGE = re.compile(r"training: (\d+) iterations in ([\d.]+) of ([\d.]+) minutes; then the final checkpoint and "
                    r"pictures in ([\d.]+) s")
_MEASURED = re.compile(r"time budget [\d.]+ minutes: ([\d.e+-]+) s per iteration measured")
_WORKFLOW = re.compile(r"training and final checkpoints?(?: of all stages)?: ([\d.]+) minutes")
_VALIDATION = re.compile(r"^fold validation: ([\d.]+) s")


def parse_training_log(text: str) -> dict:
    """What one ``segforge_train`` log says about its budget (every stage of a cascade)."""
    out = {"stages": [], "plan_lines": [], "device_lines": []}
    per_iteration: list[float] = []
    for line in re.split(r"[\r\n]", text):  # progress bars end their updates with \r, not \n
        line = line.strip()
        if line.startswith("plan "):
            out["plan_lines"].append(line)
        elif "validation cases, device" in line:
            out["device_lines"].append(line)
        elif (m := _MEASURED.search(line)):
            per_iteration.append(float(m.group(1)))
        elif (m := _STAGE.search(line)):
            out["stages"].append({"iterations": int(m.group(1)), "train_minutes": float(m.group(2)),
                                  "budget_minutes": float(m.group(3)), "final_checkpoint_seconds": float(m.group(4)),
                                  "seconds_per_iteration": per_iteration[-1] if per_iteration else None})
        elif (m := _WORKFLOW.search(line)):
            out["workflow_minutes"] = float(m.group(1))
        elif (m := _VALIDATION.search(line)):
            out["fold_validation_seconds"] = float(m.group(1))
        elif line.startswith("training ") and " minutes: " in line and " for " in line:
            out.setdefault("stage_shares", []).append(line)
    return out


def judge(parsed: dict, minutes: float) -> dict:
    """Training within M minutes + one iteration; the workflow within that + the final checkpoints."""
    stages = parsed["stages"]
    if not stages:
        return {"honoured": False, "why": "no 'training: N iterations' line in the log"}
    trained = 60 * sum(s["train_minutes"] for s in stages)
    one_iteration = max((s["seconds_per_iteration"] or 0.0) for s in stages)
    checkpoints = sum(s["final_checkpoint_seconds"] for s in stages)
    # the trainer's clock rounds to 0.01 minutes in the log
    train_ok = trained <= 60 * minutes + one_iteration + 0.6 * len(stages)
    workflow = 60 * parsed.get("workflow_minutes", float("nan"))
    workflow_ok = workflow <= 60 * minutes + one_iteration + checkpoints + 0.6 + 2.0  # + building the first trainer
    return {"honoured": bool(train_ok and workflow_ok), "training_seconds": round(trained, 1),
            "one_iteration_seconds": one_iteration, "final_checkpoint_seconds": round(checkpoints, 1),
            "workflow_seconds": round(workflow, 1),
            "over_budget_seconds": round(workflow - 60 * minutes, 1)}


def main(argv=None) -> int:
    parser = base_parser(__doc__, "budget_honoured")
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0], help="budgets M to run (default 5)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--num-train", type=int, default=10, help="training cases per dataset (default 10)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="SEGFORGE_CACHE for the planner's device calibration (default <workdir>/cache)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.minutes, args.kinds, args.num_train = [0.1], ["organs"], 5
    env = use_workdir(args.workdir)
    env["SEGFORGE_CACHE"] = str((args.cache or args.workdir / "cache").expanduser().absolute())
    out = args.out or args.workdir / "budget_honoured.json"
    runs = []
    for k, kind in enumerate(args.kinds):
        dataset_id = 960 + k
        gen = [sys.executable, "-m", "segforge.cli.synthetic", "-d", str(dataset_id), "-n", f"Budget{kind.title()}",
               "--num-train", str(args.num_train), "--num-test", "0", *KINDS[kind]]
        if args.smoke:
            gen += ["--shape", "24", "48", "48"]
        plan = [sys.executable, "-m", "segforge.cli.plan_and_preprocess", "-d", str(dataset_id)]
        for cmd, log in ((gen, "synthetic"), (plan, "plan")):
            m = run_measured(cmd, env=env, log_path=args.workdir / f"{kind}_{log}.log")
            if m.returncode:
                raise SystemExit(f"{kind}: {log} failed ({m.returncode}):\n{m.output_tail}")
        plan_log = (args.workdir / f"{kind}_plan.log").read_text()
        for minutes in args.minutes:
            log = args.workdir / f"{kind}_train_{minutes:g}min.log"
            train = [sys.executable, "-m", "segforge.cli.train", str(dataset_id), "0", "--max-minutes", f"{minutes:g}"]
            started = time.time()
            m = run_measured(train, env=env, log_path=log)
            parsed = parse_training_log(log.read_text(errors="replace"))
            run = {"kind": kind, "minutes": minutes, "returncode": m.returncode, "command_seconds": round(m.seconds, 1),
                   "started_unix": started, "plan_summary": [ln for ln in plan_log.splitlines()
                                                             if ln.startswith("[3/4]") or ln.startswith("      ")],
                   **parsed, **judge(parsed, minutes)}
            runs.append(run)
            print(f"{kind} M={minutes:g}: training {run.get('training_seconds')} s, workflow "
                  f"{run.get('workflow_seconds')} s (budget {60 * minutes:g} s), fold validation "
                  f"{parsed.get('fold_validation_seconds')} s, command {m.seconds:.0f} s -> "
                  f"{'honoured' if run['honoured'] else 'NOT honoured'}", flush=True)
            write_result(out, {"runs": runs}, f"{len(runs)} run(s) so far")
    bad = [r for r in runs if not r["honoured"] or r["returncode"]]
    if not args.keep:
        remove_pipeline_folders(args.workdir)  # the logs stay
    write_result(out, {"runs": runs}, f"{len(runs) - len(bad)} of {len(runs)} runs honoured the budget")
    return 1 if bad and not args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
