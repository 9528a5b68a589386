"""segforge vs nnU-Net v2, side by side on the same data in one run.

    python benchmarks/compare_nnunet.py                      # synthetic dataset, CPU
    python benchmarks/compare_nnunet.py --dataset 4 --device cuda
    python benchmarks/compare_nnunet.py --smoke              # segforge side only, tiny, no nnU-Net needed
    python benchmarks/compare_nnunet.py --workdir W --predict-only   # step 4 again on the models trained in W
    python benchmarks/compare_nnunet.py --default-plans --train-minutes 15   # each tool as a newcomer runs it

nnU-Net runs from a separate environment (default benchmarks/.venv-nnunet, made by
`benchmarks/setup_nnunet_env.sh`), never imported here. Measured for each tool:
1. plan-and-preprocess wall time and peak memory (whole process tree);
2. training iterations/s with the same patch size, batch size and network: on a GPU
   segforge is re-planned with nnU-Net's patch and batch size (both start at 32 features);
   on a CPU nnU-Net's 32->320 network manages a handful of iterations in minutes, so both
   train segforge's CPU-sized plan (``--gpu-memory-gb 0.1``), written into nnU-Net's
   ``nnUNetPlans.json`` (patch, batch, features, kernels, strides);
3. validation Dice / HD95 on held-out cases after the same training wall-clock budget
   (or, with ``--train-epochs E``, after the same E epochs: a Dice that does not depend on the
   machine's load, so training may share the machine and only step 4 needs it quiet),
   scored by the same evaluator;
4. inference seconds per case (each tool's predict command end to end, start-up included,
   mirroring TTA on for both, default step 0.5; ``--predict-repeats`` runs it several times and
   keeps the fastest, ``--predict-only`` re-runs only this step on a workdir trained before);
and the two plans next to each other. Writes a JSON file and prints a table; the ratios come last.

``--default-plans`` compares the tools as a newcomer runs them instead: each plans with no
flags (``segforge_plan_and_preprocess -d ID``, ``nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres``),
segforge trains with ``segforge_train ID 0 --max-minutes M`` and nothing else, and nnU-Net's
default trainer (250 + 50 iterations per epoch) is stopped at the same wall clock within its
epoch (it has no time budget of its own), then writes its final checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import run_measured  # noqa: E402

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="raw dataset id/name under --raw (default: a generated synthetic one)")
    parser.add_argument("--raw", type=Path, help="raw root holding the dataset (default: <workdir>/raw)")
    parser.add_argument("--workdir", type=Path, default=HERE / "work")
    parser.add_argument("--nnunet-python", default=str(HERE / ".venv-nnunet" / "bin" / "python"))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("-np", "--num-processes", type=int, default=2)
    parser.add_argument("--train-minutes", type=float, default=10.0, help="training wall-clock budget per tool")
    parser.add_argument("--train-epochs", type=int,
                        help="train exactly this many epochs per tool instead of a wall-clock budget")
    parser.add_argument("--iters-per-epoch", type=int, default=50)
    parser.add_argument("--val-iters", type=int, default=10)
    parser.add_argument("--num-train", type=int, default=16)
    parser.add_argument("--num-test", type=int, default=4)
    parser.add_argument("--out", type=Path, help="result JSON (default: <workdir>/compare_nnunet.json)")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                        help="voxels per synthetic case (default: the generator's, about 40x64x64)")
    parser.add_argument("--predict-repeats", type=int, default=1,
                        help="run each tool's predict command this many times, keep the fastest (default 1)")
    parser.add_argument("--predict-only", action="store_true",
                        help="only step 4 (and scoring), on the data and models already in --workdir")
    parser.add_argument("--smoke", action="store_true", help="segforge side only, tiny sizes (no nnU-Net needed)")
    parser.add_argument("--default-plans", action="store_true",
                        help="each tool's own default plan and command, equal wall clock (see above)")
    args = parser.parse_args(argv)

    work = args.workdir.absolute()
    if args.predict_only:
        if not (work / "compare_nnunet.json").is_file():
            raise SystemExit(f"--predict-only needs a finished run in {work} (compare_nnunet.json)")
        return _predict_only(work, args)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    raw = (args.raw or work / "raw").absolute()
    env = dict(os.environ)
    env.update(
        SEGFORGE_RAW=str(raw),
        SEGFORGE_PREPROCESSED=str(work / "segforge_preprocessed"),
        SEGFORGE_RESULTS=str(work / "segforge_results"),
        nnUNet_raw=str(raw),
        nnUNet_preprocessed=str(work / "nnunet_preprocessed"),
        nnUNet_results=str(work / "nnunet_results"),
        PYTHONUNBUFFERED="1",
    )
    if args.smoke:
        args.num_train, args.num_test = 4, 2
        args.train_minutes, args.iters_per_epoch, args.val_iters = 0.1, 3, 2

    dataset = args.dataset or _make_synthetic(raw, env, args)
    name = _resolve_name(raw, dataset)
    dataset_id = str(int(name[7:10]))
    tests = sorted((raw / name / "imagesTs").glob("*_0000.nii.gz"))
    result: dict = {"dataset": name, "device": args.device, "train_minutes": args.train_minutes,
                    "default_plans": args.default_plans,
                    "num_test_cases": len(tests)}
    sf, nn = result.setdefault("segforge", {}), result.setdefault("nnunet", {})
    gpu_gb = "10" if not args.smoke else "0.3"

    # 1. plan and preprocess
    plan_cmd = ["-m", "segforge.cli.plan_and_preprocess", "-d", dataset_id, "-np", str(args.num_processes)]
    if not args.default_plans:
        plan_cmd += ["--gpu-memory-gb", gpu_gb, "-c", "3d_fullres"]
    m = _step(plan_cmd, env, work / "sf_plan.log")
    sf.update(plan_seconds=m.seconds, plan_peak_rss_gb=m.peak_rss_bytes / 2**30)
    sf_plans = json.loads((work / "segforge_preprocessed" / name / "plans.json").read_text())
    sf["plan"] = _segforge_plan_summary(sf_plans)
    if not args.smoke:
        nn_bin = Path(args.nnunet_python).parent
        m = _step([str(nn_bin / "nnUNetv2_plan_and_preprocess"), "-d", dataset_id, "-c", "3d_fullres",
                   "-np", str(args.num_processes)], env, work / "nn_plan.log", python=None)
        nn.update(plan_seconds=m.seconds, plan_peak_rss_gb=m.peak_rss_bytes / 2**30)
        nn_plans = json.loads((work / "nnunet_preprocessed" / name / "nnUNetPlans.json").read_text())
        nn["plan"] = _nnunet_plan_summary(nn_plans)
        # 2. one patch, batch and network for both (see the module docstring)
        if args.default_plans:
            pass  # each keeps its own
        elif args.device == "cuda":
            patch, batch = nn["plan"]["patch_size"], nn["plan"]["batch_size"]
            _step(["-m", "segforge.cli.plan_and_preprocess", "-d", dataset_id, "-np", str(args.num_processes),
                   "-c", "3d_fullres", "--gpu-memory-gb", "10", "--patch-size", *map(str, patch),
                   "--batch-size", str(batch)], env, work / "sf_replan.log")
        else:
            _step(["-m", "segforge.cli.plan_and_preprocess", "-d", dataset_id, "-np", str(args.num_processes),
                   "-c", "3d_fullres", "--gpu-memory-gb", "0.1"], env, work / "sf_replan.log")
            _impose_segforge_network_on_nnunet(
                json.loads((work / "segforge_preprocessed" / name / "plans.json").read_text()),
                work / "nnunet_preprocessed" / name / "nnUNetPlans.json")
        if not args.default_plans:
            result["trained_plan"] = _segforge_plan_summary(
                json.loads((work / "segforge_preprocessed" / name / "plans.json").read_text()))

    # 3. train for the same wall-clock budget
    budget = args.train_minutes * 60 if not args.train_epochs else float("inf")
    result["train_epochs"] = args.train_epochs
    if args.default_plans:
        train_cmd = ["-m", "segforge.cli.train", dataset_id, "0", "--max-minutes", str(args.train_minutes)]
    else:
        epochs = ["--epochs", str(args.train_epochs)] if args.train_epochs else \
            ["--epochs", "100000", "--max-minutes", str(args.train_minutes)]
        train_cmd = ["-m", "segforge.cli.train", dataset_id, "0", "-c", "3d_fullres", "--device", args.device,
                     *epochs, "--iters-per-epoch", str(args.iters_per_epoch), "--val-iters", str(args.val_iters)]
    m = _step(train_cmd, env, work / "sf_train.log")
    sf.update(train_wall_seconds=m.seconds, **_segforge_train_stats(work / "segforge_results" / name, args))
    if not args.smoke:
        nn_iters, nn_val = ("250", "50") if args.default_plans else (str(args.iters_per_epoch), str(args.val_iters))
        m = _step([str(HERE / "nnunet_driver.py"), "train", dataset_id, "0", "--iters", nn_iters,
                   "--val-iters", nn_val, "--budget-seconds", str(budget), "--device", args.device,
                   "--max-epochs", str(args.train_epochs or 1000),
                   *(["--stop-within-epoch"] if args.default_plans else []),
                   "--out", str(work / "nn_train.json")], env, work / "nn_train.log", python=args.nnunet_python)
        nn_train = json.loads((work / "nn_train.json").read_text())
        nn.update(train_wall_seconds=m.seconds, epochs=nn_train["epochs"], parameters=nn_train["parameters"],
                  iterations=nn_train.get("iterations"),
                  iters_per_second=(nn_train["iterations"] / nn_train["train_wall_seconds"] if args.default_plans
                                    else _its(nn_train["epoch_seconds"], args.iters_per_epoch)))

    # 4. predict held-out cases, 5. score both with the same evaluator
    result["env"] = {k: env[k] for k in ("SEGFORGE_RAW", "SEGFORGE_PREPROCESSED", "SEGFORGE_RESULTS", "nnUNet_raw",
                                         "nnUNet_preprocessed", "nnUNet_results")}
    out = args.out or work / "compare_nnunet.json"
    (work / "compare_nnunet.json").write_text(json.dumps(result, indent=2) + "\n")  # --predict-only starts here
    _predict_and_score(result, work, env, args)

    out.write_text(json.dumps(result, indent=2) + "\n")
    _print_report(result, out)
    return 0


def _predict_and_score(result: dict, work: Path, env: dict, args) -> None:
    """Step 4: each tool's predict command on the held-out images (fastest of --predict-repeats), then scores."""
    name, device = result["dataset"], result["device"]
    raw = Path(env["SEGFORGE_RAW"])
    dataset_id = str(int(name[7:10]))
    cases = max(1, result["num_test_cases"])
    sf, nn = result["segforge"], result["nnunet"]
    sf_cmd = ["-m", "segforge.cli.predict", "-i", str(raw / name / "imagesTs"), "-o", str(work / "sf_pred"),
              "-d", dataset_id]
    if not result.get("default_plans"):  # the newcomer's command predicts with the plan's default and device
        sf_cmd += ["-c", "3d_fullres", "--device", device]
    sf["predict_seconds_per_case"] = _fastest(sf_cmd, env, work / "sf_predict.log", work / "sf_pred", args,
                                              sys.executable) / cases
    sf.update(_score(work / "sf_pred", raw / name / "labelsTs", env, work / "sf_eval.json"))
    if not args.smoke:
        nn_cmd = [str(Path(args.nnunet_python).parent / "nnUNetv2_predict"), "-i", str(raw / name / "imagesTs"),
                  "-o", str(work / "nn_pred"), "-d", dataset_id, "-c", "3d_fullres", "-f", "0", "-device", device]
        nn["predict_seconds_per_case"] = _fastest(nn_cmd, env, work / "nn_predict.log", work / "nn_pred", args,
                                                  None) / cases
        nn.update(_score(work / "nn_pred", raw / name / "labelsTs", env, work / "nn_eval.json"))


def _fastest(cmd: list[str], env: dict, log: Path, out: Path, args, python) -> float:
    best = float("inf")
    for _ in range(max(1, args.predict_repeats)):
        shutil.rmtree(out, ignore_errors=True)
        best = min(best, _step(cmd, env, log, python=python).seconds)
    return best


def _predict_only(work: Path, args) -> int:
    result = json.loads((work / "compare_nnunet.json").read_text())
    env = dict(os.environ, PYTHONUNBUFFERED="1", **result["env"])
    result.setdefault("nnunet", {})
    _predict_and_score(result, work, env, args)
    out = args.out or work / "compare_nnunet.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    _print_report(result, out)
    return 0


def _make_synthetic(raw: Path, env: dict, args) -> str:
    from segforge.synthetic import make_synthetic_dataset

    os.environ.update(env)
    shape = {"shape": tuple(args.shape)} if args.shape else {}
    make_synthetic_dataset(990, "BenchOrgans", kind="organs", num_train=args.num_train, num_test=args.num_test,
                           seed=0, raw_root=raw, **shape)
    return "990"


def _resolve_name(raw: Path, dataset: str) -> str:
    if dataset.startswith("Dataset"):
        return dataset
    return next(p.name for p in raw.iterdir() if p.name.startswith(f"Dataset{int(dataset):03d}_"))


def _step(cmd: list[str], env: dict, log: Path, python: str | None = sys.executable):
    full = ([python] if python else []) + cmd
    print(f"$ {' '.join(full)}", flush=True)
    m = run_measured(full, env=env, log_path=log)
    if m.returncode != 0:
        raise SystemExit(f"step failed ({m.returncode}), see {log}:\n{m.output_tail}")
    print(f"  {m.seconds:.1f} s, peak {m.peak_rss_bytes / 2**30:.2f} GiB", flush=True)
    return m


def _its(epoch_seconds: list[float], iters: int) -> float:
    """Training iterations per second over whole epochs (train + validation), first epoch (warm-up) left out."""
    steady = epoch_seconds[1:] or epoch_seconds
    return iters / float(np.median(steady))


def _segforge_train_stats(results: Path, args) -> dict:
    import csv

    logs = sorted(results.glob("*__*/fold_0/log.csv"), key=lambda p: p.stat().st_mtime)  # the last stage trained
    rows = list(csv.DictReader(open(logs[-1])))
    model = logs[-1].parent
    import torch

    ckpt = torch.load(model / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    params = sum(v.numel() for k, v in ckpt["network_state"].items() if not k.endswith(("running_mean", "running_var",
                                                                                          "num_batches_tracked")))
    if args.default_plans:  # epochs are sized by the trainer: its own training iterations/s, first epoch left out
        its = float(np.median([float(r["iters_per_second"]) for r in rows[1:] or rows]))
    else:
        its = _its([float(r["epoch_seconds"]) for r in rows], args.iters_per_epoch)
    return {"epochs": len(rows), "parameters": int(params), "iters_per_second": its}


def _score(pred: Path, ref: Path, env: dict, out: Path) -> dict:
    _step(["-m", "segforge.cli.evaluate", "-ref", str(ref), "-pred", str(pred), "-o", str(out)], env,
          out.with_suffix(".log"))
    summary = json.loads(out.read_text())
    fg = summary["foreground_mean"]
    return {"dice": fg["dice"], "hd95_mm": fg["hd95"]}


def _segforge_plan_summary(plans: dict) -> dict:
    c = plans["configurations"][plans["default_configuration"]]
    strides = np.array(c["network"]["strides"])
    return {"spacing": c["spacing"], "patch_size": c["patch_size"], "batch_size": c["batch_size"],
            "poolings_per_axis": [int(v) for v in np.log2(strides).sum(0)],
            "features_per_stage": c["network"]["features_per_stage"]}


def _nnunet_plan_summary(plans: dict) -> dict:
    c = plans["configurations"]["3d_fullres"]
    arch = c["architecture"]["arch_kwargs"]
    strides = np.array(arch["strides"])
    return {"spacing": c["spacing"], "patch_size": c["patch_size"], "batch_size": c["batch_size"],
            "poolings_per_axis": [int(v) for v in np.log2(strides).sum(0)],
            "features_per_stage": arch["features_per_stage"]}


def _impose_segforge_network_on_nnunet(sf_plans: dict, nn_plans_path: Path) -> None:
    """Write segforge's 3d_fullres patch, batch and U-Net topology into nnU-Net's plans (a JSON edit)."""
    c = sf_plans["configurations"]["3d_fullres"]
    net = c["network"]
    plans = json.loads(nn_plans_path.read_text())
    conf = plans["configurations"]["3d_fullres"]
    conf["patch_size"] = c["patch_size"]
    conf["batch_size"] = c["batch_size"]
    kwargs = conf["architecture"]["arch_kwargs"]
    stages = len(net["features_per_stage"])
    kwargs.update(n_stages=stages, features_per_stage=net["features_per_stage"], kernel_sizes=net["kernel_sizes"],
                  strides=net["strides"], n_conv_per_stage=[net["n_conv_per_stage"]] * stages,
                  n_conv_per_stage_decoder=[net["n_conv_per_stage"]] * (stages - 1))
    nn_plans_path.write_text(json.dumps(plans, indent=2))


def _print_report(r: dict, out: Path) -> None:
    sf, nn = r["segforge"], r.get("nnunet", {})
    budget = f"{r['train_epochs']} epochs" if r.get("train_epochs") else f"{r['train_minutes']} min"
    print(f"\n{r['dataset']} on {r['device']}, training budget {budget} per tool\n")
    print(f"{'plan':<22}{'segforge':>34}{'nnU-Net':>34}")
    for key in ("spacing", "patch_size", "batch_size", "poolings_per_axis", "features_per_stage"):
        print(f"{key:<22}{_fmt(sf['plan'].get(key)):>34}{_fmt(nn.get('plan', {}).get(key)):>34}")
    rows = [("plan+preprocess s", "plan_seconds", "lower"), ("plan+preprocess peak GiB", "plan_peak_rss_gb", "lower"),
            ("train it/s (own plan)" if r.get("default_plans") else "train it/s (same network)", "iters_per_second",
             "higher"), ("epochs in budget", "epochs", None),
            ("network parameters", "parameters", None), ("held-out Dice", "dice", "higher"),
            ("held-out HD95 mm", "hd95_mm", "lower"), ("predict s/case", "predict_seconds_per_case", "lower")]
    if "trained_plan" in r:
        t = r["trained_plan"]
        print(f"\nboth trained: patch {_fmt(t['patch_size'])}, batch {t['batch_size']}, "
              f"features {_fmt(t['features_per_stage'])}")
    print(f"\n{'measure':<26}{'segforge':>14}{'nnU-Net':>14}")
    for label, key, _ in rows:
        print(f"{label:<26}{_fmt(sf.get(key)):>14}{_fmt(nn.get(key)):>14}")
    print("\nsegforge / nnU-Net (> 1 means segforge is better):")
    ratios = {}
    for label, key, better in rows:
        if better and isinstance(sf.get(key), (int, float)) and isinstance(nn.get(key), (int, float)) and sf[key] and nn[key]:
            ratios[label] = sf[key] / nn[key] if better == "higher" else nn[key] / sf[key]
            print(f"  {label:<26}{ratios[label]:>8.2f}x")
    r["ratios"] = ratios
    out.write_text(json.dumps(r, indent=2) + "\n")
    print(f"\nwritten: {out}")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list):
        return "x".join(f"{x:.3g}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
