"""Each benchmark script runs end to end with --smoke and writes plausible JSON (the figures are not checked).

Preprocessing and data-loader smoke runs take ~15 s on a busy 2-core CPU; training, inference
and the nnU-Net comparison (segforge side) take minutes and are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = ["bench_preprocessing.py", "bench_dataloader.py", "bench_training.py", "bench_inference.py",
           "bench_window.py", "inference_levers.py", "gpu_check.py", "bench_augmentation.py",
           "extras_effect.py"]


def _run(args: list[str], tmp_path: Path, timeout: float) -> subprocess.CompletedProcess:
    # the test's own SEGFORGE_* folders (tests/conftest.py); the scripts set their own under --workdir
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _smoke(script: str, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "result.json"
    proc = _run([str(BENCHMARKS / script), "--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out), *extra],
                tmp_path, timeout=900)
    assert f"written: {out}" in proc.stdout
    result = json.loads(out.read_text())
    assert result["command"].startswith("python ") and "--smoke" in result["command"]
    assert result["machine"]["cpu_count"] >= 1
    assert not (tmp_path / "work" / "raw").exists(), "scratch data should be removed without --keep"
    return result


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_names_smoke_and_out(script, tmp_path):
    text = _run([str(BENCHMARKS / script), "--help"], tmp_path, timeout=60).stdout
    assert "--smoke" in text and "--out" in text


def test_preprocessing_smoke(tmp_path):
    r = _smoke("bench_preprocessing.py", tmp_path)
    assert r["plan_and_preprocess"]["cases_per_second"] > 0
    assert r["plan_and_preprocess"]["peak_rss_gib"] > 0.05  # at least the Python process with torch
    assert r["preprocess_only"]["seconds"] > 0
    for row in r["resampling"]:
        assert row["segforge_seconds"] > 0 and row["scipy_seconds"] > 0
        assert row["mean_abs_difference_vs_scipy_centred"] < 1e-3  # the same cubic B-spline on the same grid


def test_dataloader_smoke(tmp_path):
    r = _smoke("bench_dataloader.py", tmp_path)
    assert [row["workers"] for row in r["loader"]] == [0, 1]
    assert all(row["patches_per_second"] == pytest.approx(2 * row["batches_per_second"]) for row in r["loader"])


@pytest.mark.slow
def test_training_smoke_and_dataloader_comparison(tmp_path):
    r = _smoke("bench_training.py", tmp_path)
    assert r["patch_size"] == [16, 32, 32] and r["batch_size"] == 2
    assert r["end_to_end"]["iters_per_second"] > 0 and r["compute_only"]["iters_per_second"] > 0
    training_json = tmp_path / "training.json"
    (tmp_path / "result.json").rename(training_json)
    loader = _smoke("bench_dataloader.py", tmp_path, "--training-json", str(training_json))
    assert loader["trainer"]["compute_only_iters_per_second"] == r["compute_only"]["iters_per_second"]
    assert all(row["supply_over_demand"] > 0 for row in loader["loader"])


@pytest.mark.slow
def test_inference_smoke(tmp_path):
    r = _smoke("bench_inference.py", tmp_path)
    single = r["single_stage"]
    assert single["cases_timed"] == 1 and single["seconds_per_case"] > 0
    cascade = r["cascade"]
    assert cascade["available"], cascade.get("why")
    assert cascade["cascade_fullres"]["seconds_per_case"] > 0 and cascade["3d_fullres"]["seconds_per_case"] > 0


@pytest.mark.slow
def test_compare_nnunet_smoke(tmp_path):
    work = tmp_path / "work"
    _run([str(BENCHMARKS / "compare_nnunet.py"), "--smoke", "--workdir", str(work)], tmp_path, timeout=1500)
    result = json.loads((work / "compare_nnunet.json").read_text())
    sf = result["segforge"]
    assert sf["plan_seconds"] > 0 and sf["iters_per_second"] > 0 and sf["predict_seconds_per_case"] > 0
    assert 0 <= sf["dice"] <= 1


@pytest.mark.slow
def test_scaling_smoke(tmp_path):
    r = _smoke("bench_scaling.py", tmp_path, "--no-ray")
    assert r["preprocessing"]["local"]["cases"] == 2 and r["preprocessing"]["local"]["cases_per_minute"] > 0
    assert set(r["prediction"]) == {"1 process x 2 threads", "2 processes x 1 thread"}
    assert all(row["cases"] == 4 for row in r["prediction"].values())


def test_window_smoke(tmp_path):
    r = _smoke("bench_window.py", tmp_path)
    assert [row["windows_per_pass"] for row in r["prediction"]] == [1, 2]
    assert all(row["segforge_fp32"] > 0 and row["stock_instance_norm_fp32"] > 0 for row in r["prediction"])
    assert r["training"]["step_forward_backward"] > 0


@pytest.mark.slow
def test_inference_levers_smoke(tmp_path):
    r = _smoke("inference_levers.py", tmp_path)
    names = [row["setting"] for row in r["settings"]]
    assert names[0] == "mirror all (reference)" and any(n.startswith("--fast") for n in names)
    assert all(0 <= row["mean_dice"] <= 1 and row["cpu_seconds_per_case"] > 0 for row in r["settings"])


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    """benchmarks/gpu_check.py on the CPU at toy size: every phase runs and reports its figures."""
    r = _smoke("gpu_check.py", tmp_path)
    assert r["errors"] == {} and r["device"] == "cpu"
    assert r["plan"]["patch_size"] == [16, 32, 32] and r["training"]["parameters"] > 0
    for mode in ("gpu", "cpu"):
        assert r[f"end_to_end_{mode}_augmentation"]["iters_per_second"] > 0
    step = r["gpu_step_alone"]
    assert step["as_trained"] > 0 and step["eager_contiguous"] > 0 and step["eager_channels_last"] > 0
    window = r["sliding_window"]
    assert window["mirroring"]["mirror_axes"] == [0, 1, 2] and window["no_mirroring"]["mirror_axes"] == []
    assert window["mirroring"]["seconds_per_case"] > 0 and window["no_mirroring"]["seconds_per_case"] > 0


@pytest.mark.slow
def test_augmentation_smoke(tmp_path):
    """benchmarks/bench_augmentation.py at toy size: both loaders, the torch module alone, both trainings."""
    r = _smoke("bench_augmentation.py", tmp_path)
    rows = {row["mode"]: row for row in r["loader"]}
    assert rows["cpu"]["augmented_batches_per_second"] > 0 and rows["gpu"]["loader_alone_batches_per_second"] > 0
    assert rows["gpu"]["voxels_read_per_sample"] < rows["cpu"]["voxels_read_per_sample"]  # the tight boxes
    assert r["torch_augmentation_seconds_per_batch"] > 0
    assert r["end_to_end"]["cpu"]["iters_per_second"] > 0 and r["end_to_end"]["gpu"]["iters_per_second"] > 0


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_gpu_check_refuses_a_machine_without_cuda_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--workdir", str(tmp_path / "work")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device here; --smoke runs it on the CPU at toy size (--device cpu runs the full size "
        "on the CPU, for hours)"]
    assert not (tmp_path / "work").exists()  # nothing made


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mixup", "pseudo"])
def test_extras_effect_smoke(experiment, tmp_path):
    result = _smoke("extras_effect.py", tmp_path, experiment)
    arms = {"mixup": {"mixup none", "mixup input", "mixup manifold"},
            "pseudo": {"labelled only", "labelled + pseudo-labelled"}}[experiment]
    assert set(result["arms"]) == arms


def test_budget_honoured_reads_the_training_log():
    """A cascade's log: 2 stages, 30 + 250 s of training for a 5-minute budget, 1.2 s per iteration at most."""
    sys.path.insert(0, str(BENCHMARKS))
    from budget_honoured import judge, parse_training_log

    log = "\n".join([
        "training locator (locator) for 1.00 of 5 minutes: the locator gets ...",
        "plan locator: patch 32x32x32, batch 2, U-Net 8->64 features in 4 stages; made for cpu (x), 0.1 GB",
        "time budget 1 minutes: 0.5 s per iteration measured -> about 100 iterations in 20 epochs",
        "training: 100 iterations in 0.50 of 1 minutes; then the final checkpoint and pictures in 2.0 s",
        "time budget 4.08 minutes: 1.2 s per iteration measured -> about 200 iterations in 30 epochs",
        "training: 200 iterations in 4.17 of 4.08 minutes; then the final checkpoint and pictures in 1.0 s",
        "training and final checkpoints of all stages: 4.80 minutes (budget 5)",
        "fold validation: 12.5 s (after the training budget)",
    ])
    parsed = parse_training_log(log)
    assert [s["iterations"] for s in parsed["stages"]] == [100, 200]
    assert [s["seconds_per_iteration"] for s in parsed["stages"]] == [0.5, 1.2]
    assert parsed["workflow_minutes"] == 4.8 and parsed["fold_validation_seconds"] == 12.5
    verdict = judge(parsed, 5.0)
    # 30 + 250.2 = 280.2 s <= 300 + 1.2 (+ rounding); the workflow 288 s <= 300 + 1.2 + 3 s of checkpoints
    assert verdict["honoured"] and verdict["training_seconds"] == 280.2 and verdict["over_budget_seconds"] == -12.0
    assert not judge(parse_training_log(log.replace("4.80 minutes", "5.20 minutes")), 5.0)["honoured"]  # 312 s


@pytest.mark.slow
def test_budget_honoured_smoke(tmp_path):
    result = _smoke("budget_honoured.py", tmp_path)
    (run,) = result["runs"]
    assert run["returncode"] == 0 and run["stages"] and run["plan_lines"] and "honoured" in run
