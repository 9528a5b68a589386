"""Held-out Dice at a training budget, per plan: the Dice curves (in iterations) joined with the measured speed.

    python benchmarks/budget_table.py --curves docs/budget_curves_*.json --speed docs/budget_speed_cpu.json
    python benchmarks/budget_table.py --curves docs/budget_curves_organs.json --budgets 5 15 --schedule wsd

For each dataset and plan: the iterations a budget of B minutes buys,
``N = TRAINING_FRACTION x 60 x B x it/s`` (it/s measured end to end by ``budget_speed.py``),
and the held-out Dice after N iterations, interpolated linearly in log N between the measured
milestones of ``budget_curves.py`` (a budget past the last milestone is marked ``>``: the
last measured value, a lower bound when Dice still rises). The planner's automatic choice
for B (recorded by ``budget_speed.py`` with its calibration) is set against the best
hand-set memory budget. Without ``--speed`` the curves' own seconds per iteration are used:
taken on a loaded machine, they are provisional.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def dataset_keys() -> dict[str, str]:
    """Curve tag (``organs_small_CT1``) -> dataset key of ``budget_curves.DATASETS``."""
    import argparse as _argparse

    from budget_curves import DATASETS, dataset_tag

    return {dataset_tag(_argparse.Namespace(**spec)): key for key, spec in DATASETS.items()}


def load_curves(paths: list[Path], schedule: str, optimizer: str | None) -> dict:
    """``{dataset key: {plan shape: {"spec", "points": {N: dice}, "provisional_its"}}}`` (last entry wins)."""
    keys = dataset_keys()
    curves: dict = {}
    for path in paths:
        for r in json.loads(path.read_text())["runs"]:
            if r["schedule"] != schedule or (optimizer and r["optimizer"] != optimizer):
                continue
            key = keys.get(r["dataset_tag"], r["dataset_tag"])
            shape = (r["configuration"], tuple(r["patch_size"]), r["batch_size"], tuple(r["features_per_stage"]))
            entry = curves.setdefault(key, {}).setdefault(shape, {"spec": r["plan"], "points": {}, "its": []})
            entry["points"][int(r["iters"])] = float(r["dice"])
            entry["its"].append(1 / r["provisional_seconds_per_iter"])
    return curves


def dice_at(points: dict[int, float], n: float) -> tuple[float, str]:
    """Dice after ``n`` iterations, linear in log n between milestones; ``(value, flag)``."""
    ns = sorted(points)
    if n <= ns[0]:
        return points[ns[0]] * max(0.0, n / ns[0]), "<"
    if n >= ns[-1]:
        return points[ns[-1]], ">" if n > ns[-1] * 1.05 else ""
    for a, b in zip(ns, ns[1:]):
        if a <= n <= b:
            t = (math.log(n) - math.log(a)) / (math.log(b) - math.log(a))
            return points[a] + t * (points[b] - points[a]), ""
    raise AssertionError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, nargs="+", required=True)
    parser.add_argument("--speed", type=Path, default=None, help="budget_speed.py's JSON (quiet machine)")
    parser.add_argument("--budgets", type=float, nargs="+", default=[5.0, 15.0])
    parser.add_argument("--schedule", default="wsd", choices=["constant", "wsd", "poly"])
    parser.add_argument("--optimizer", default=None, help="e.g. adamw:0.003 (default: any)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from segforge.planning.budget_rule import TRAINING_FRACTION

    curves = load_curves(args.curves, args.schedule, args.optimizer)
    speed = json.loads(args.speed.read_text())["datasets"] if args.speed else {}
    table: dict = {}
    for key, plans in curves.items():
        rows = []
        measured = {(r["configuration"], tuple(r["patch_size"]), r["batch_size"], tuple(r["features"])): r
                    for r in speed.get(key, {}).get("plans", [])}
        for shape, entry in sorted(plans.items(), key=lambda kv: float(kv[1]["spec"].split(":")[0])):
            if shape in measured:
                its, source = measured[shape]["end_to_end"]["iters_per_second"], "measured"
            elif speed:
                continue  # not among the measured candidates
            else:
                its, source = sorted(entry["its"])[len(entry["its"]) // 2], "provisional"
            row = {"plan": entry["spec"], "memory_gb": float(entry["spec"].split(":")[0]), "configuration": shape[0],
                   "patch_size": list(shape[1]), "batch_size": shape[2], "features": list(shape[3]),
                   "iters_per_second": its, "speed": source, "budgets": {}}
            for minutes in args.budgets:
                n = TRAINING_FRACTION * 60 * minutes * its
                dice, flag = dice_at(entry["points"], n)
                row["budgets"][str(minutes)] = {"iterations": int(n), "dice": dice, "flag": flag}
            rows.append(row)
        choice = speed.get(key, {}).get("planner_choice", {})
        summary = {}
        for minutes in args.budgets:
            scored = [r for r in rows if r["budgets"][str(minutes)]["flag"] != "<"]
            best = max(scored, key=lambda r: r["budgets"][str(minutes)]["dice"]) if scored else None
            auto_gb = choice.get(str(minutes), {}).get("memory_gb")
            auto = next((r for r in rows if math.isclose(r["memory_gb"], auto_gb)), None) if auto_gb else None
            summary[str(minutes)] = {
                "best_hand_set": best and {"memory_gb": best["memory_gb"], "dice": best["budgets"][str(minutes)]["dice"]},
                "automatic": auto and {"memory_gb": auto["memory_gb"], "dice": auto["budgets"][str(minutes)]["dice"]},
            }
        table[key] = {"rows": rows, "summary": summary}
        print(f"\n{key} (schedule {args.schedule}; it/s {'measured' if speed else 'PROVISIONAL, loaded machine'})\n")
        head = "| memory GB | patch | batch | features | it/s | " + " | ".join(
            f"{m:g} min: iterations, Dice" for m in args.budgets) + " |"
        print(head)
        print("|" + " --- |" * (5 + len(args.budgets)))
        for r in rows:
            cells = [f"{r['budgets'][str(m)]['iterations']}, {r['budgets'][str(m)]['flag']}"
                     f"{r['budgets'][str(m)]['dice']:.3f}" for m in args.budgets]
            print(f"| {r['memory_gb']:g} | {'x'.join(map(str, r['patch_size']))} | {r['batch_size']} | "
                  f"{r['features'][0]}->{r['features'][-1]} | {r['iters_per_second']:.2f} | " + " | ".join(cells) + " |")
        for minutes, s in summary.items():
            if s["automatic"] and s["best_hand_set"]:
                print(f"{minutes} min: automatic {s['automatic']['memory_gb']:g} GB Dice {s['automatic']['dice']:.3f}, "
                      f"best hand-set {s['best_hand_set']['memory_gb']:g} GB {s['best_hand_set']['dice']:.3f} "
                      f"(difference {s['automatic']['dice'] - s['best_hand_set']['dice']:+.3f})")
    if args.out:
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
