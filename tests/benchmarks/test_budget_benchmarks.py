"""The Dice-against-budget join (budget_table.py) on numbers worked out by hand, and the curves' sweep end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _curve(plan, patch, points):
    return [{"dataset_tag": "organs_small_CT1", "plan": plan, "configuration": "3d_fullres", "patch_size": patch,
             "batch_size": 2, "features_per_stage": [8, 16], "optimizer": "sgd:0.01:0.9", "schedule": "constant",
             "iters": n, "dice": d, "provisional_seconds_per_iter": 1.0} for n, d in points.items()]


def _speed_row(gb, patch, its):
    return {"memory_gb": gb, "configuration": "3d_fullres", "patch_size": patch, "batch_size": 2, "features": [8, 16],
            "end_to_end": {"iters_per_second": its}}


@pytest.mark.parametrize("auto_gb, difference", [(0.05, 0.0), (0.1, None)])
def test_budget_table_interpolates_in_log_iterations_and_scores_the_automatic_choice(tmp_path, auto_gb, difference):
    sys.path.insert(0, str(BENCHMARKS))
    from budget_table import main

    curves = tmp_path / "curves.json"
    curves.write_text(json.dumps({"runs": _curve("0.05", [16, 32, 32], {100: 0.5, 400: 0.9})
                                  + _curve("0.1", [32, 48, 48], {100: 0.6, 1000: 0.7})}))
    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"datasets": {"organs": {
        "plans": [_speed_row(0.05, [16, 32, 32], 1.0), _speed_row(0.1, [32, 48, 48], 2.0)],
        "planner_choice": {"5.0": {"memory_gb": auto_gb}}}}}))
    out = tmp_path / "table.json"
    assert main(["--curves", str(curves), "--speed", str(speed), "--budgets", "5", "--schedule", "constant",
                 "--out", str(out)]) == 0
    table = json.loads(out.read_text())["organs"]
    rows = {r["memory_gb"]: r["budgets"]["5.0"] for r in table["rows"]}
    # 0.85 x 60 s x 5 minutes x it/s: 255 and 510 iterations
    assert rows[0.05]["iterations"] == 255 and rows[0.1]["iterations"] == 510
    small = 0.5 + 0.4 * math.log(255 / 100) / math.log(4)  # 0.770
    large = 0.6 + 0.1 * math.log(510 / 100) / math.log(10)  # 0.671
    assert rows[0.05]["dice"] == pytest.approx(small) and rows[0.1]["dice"] == pytest.approx(large)
    summary = table["summary"]["5.0"]
    assert summary["best_hand_set"] == {"memory_gb": 0.05, "dice": pytest.approx(small)}
    expected = difference if difference is not None else large - small
    assert summary["automatic"]["dice"] - summary["best_hand_set"]["dice"] == pytest.approx(expected)


@pytest.mark.slow
def test_budget_curves_prepare_then_constant_rate_sweep(tmp_path):
    work, out = tmp_path / "work", tmp_path / "curves.json"
    common = [sys.executable, str(BENCHMARKS / "budget_curves.py"), "--smoke", "--workdir", str(work), "--out", str(out)]
    for extra in (["--prepare-only"], ["--prepared", "--decay-fraction", "0"]):
        proc = subprocess.run(common + extra, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    # --smoke: milestones 2 and 4, the constant rate alone (no decay branches), on the CPU
    assert [(r["schedule"], r["iters"], r["device"]) for r in runs] == [("constant", 2, "cpu"), ("constant", 4, "cpu")]
    assert all(0.0 <= r["dice"] <= 1.0 for r in runs)
