"""Held-out Dice as a function of training ITERATIONS, per candidate plan and learning-rate schedule.

    python benchmarks/budget_curves.py --kind organs --plans 0.05 0.1 0.25 0.5 --max-iters 1600
    python benchmarks/budget_curves.py --kind organs --modality MR --anisotropic --plans 0.1 0.25
    python benchmarks/budget_curves.py --smoke

Why iterations and not minutes: the development machine is shared, so a wall-clock budget
measured on it is wrong by whatever the others were doing. Dice after N iterations does not
depend on the load; each plan's iterations/second is measured apart, on a quiet machine
(``benchmarks/budget_speed.py``), and ``benchmarks/budget_table.py`` joins the two:
Dice(plan, budget B) = Dice(plan, N = B x it/s).

For each plan (``GB[:fF][:bB]``: the planner's plan for a memory budget of GB, optionally
with F first-stage features and batch B) and optimiser, ONE training run at a constant
learning rate is evaluated at every milestone (``--milestones``, geometric), and at each
milestone N a branch is also evaluated that leaves the constant run at ``(1 - f) N`` and
decays the rate linearly to zero over the last ``f N`` iterations (``--decay-fraction``,
"warm-up, stable, decay"): one run gives both the constant and the decayed schedule at
every N. ``--poly-at N ...`` adds separate runs whose poly decay (exponent 0.9) spans
exactly N iterations, as segforge decayed before.

Held-out Dice: the model at each point predicts the generated test cases (``imagesTs``)
with the real predictor (no mirroring) and is scored per class against ``labelsTs``; the
figure is the mean over foreground classes of the per-class mean over cases. Results are
appended to ``--out`` (JSON) as they come; a run already in the file is skipped, so an
interrupted sweep continues.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import base_parser, machine  # noqa: E402


def parse_plan(spec: str) -> dict:
    """``"0.25"``, ``"0.25:f16"``, ``"0.1:f8:b4@800"`` -> ``{"gb": .., "features": .., "batch": .., "max_iters": ..}``
    (``@N``: this plan's runs stop at N iterations instead of ``--max-iters``)."""
    spec, _, max_iters = spec.partition("@")
    parts = spec.split(":")
    plan = {"spec": spec, "gb": float(parts[0]), "features": None, "batch": None,
            "max_iters": int(max_iters) if max_iters else None}
    for p in parts[1:]:
        key = {"f": "features", "b": "batch"}[p[0]]
        plan[key] = int(p[1:])
    return plan


# The synthetic datasets of the budget measurements (docs/planning.md "Compute"): --dataset NAME
DATASETS = {
    "organs": dict(kind="organs", modality="CT", channels=1, anisotropic=False, size="small", num_train=16,
                   num_test=4, dataset_id=981),
    "organs_mr_aniso": dict(kind="organs", modality="MR", channels=1, anisotropic=True, size="small",
                            num_train=16, num_test=4, dataset_id=982),
    "organs_mr2": dict(kind="organs", modality="MR", channels=2, anisotropic=False, size="small", num_train=16,
                       num_test=4, dataset_id=983),
    "small_target": dict(kind="small_target", modality="CT", channels=1, anisotropic=False, size="small",
                         num_train=16, num_test=4, dataset_id=984),
    "organs_realistic": dict(kind="organs", modality="CT", channels=1, anisotropic=False, size="realistic",
                             num_train=10, num_test=3, dataset_id=985),
}


def apply_dataset(args) -> None:
    """``--dataset NAME`` fills the dataset arguments from :data:`DATASETS`."""
    if getattr(args, "dataset", None):
        for key, value in DATASETS[args.dataset].items():
            setattr(args, key, value)


def dataset_tag(args) -> str:
    tag = f"{args.kind}_{args.size}_{args.modality}{args.channels}"
    return tag + ("_aniso" if args.anisotropic else "")


def make_dataset(args) -> str:
    from segforge import paths
    from segforge.synthetic import make_synthetic_dataset

    name = "Curve" + "".join(p.title() for p in dataset_tag(args).split("_"))
    folder_name = paths.dataset_folder_name(args.dataset_id, name)
    if not (paths.raw_root() / folder_name / "dataset.json").is_file():
        make_synthetic_dataset(args.dataset_id, name, kind=args.kind, num_train=args.num_train,
                               num_test=args.num_test, shape=tuple(args.shape) if args.shape else None,
                               modality=args.modality, num_channels=args.channels, anisotropic=args.anisotropic,
                               seed=args.data_seed, size=args.size)
    return folder_name


def candidate_plans(fingerprint: dict, plan: dict, configuration: str | None):
    """The planner's plans for ``plan["gb"]``, with the features / batch of the spec imposed."""
    from segforge.networks.memory import training_memory_bytes
    from segforge.planning.batch_size_rule import choose_batch_size
    from segforge.planning.dataset_stats import total_voxels_at_spacing
    from segforge.planning.patch_size_rule import fit_patch_to_memory, memory_budget_bytes
    from segforge.planning.planner import plan_experiment

    plans = plan_experiment(fingerprint, gpu_memory_gb=plan["gb"])
    name = configuration or plans.default_configuration
    if name == "cascade_fullres":
        name = "3d_fullres"  # the trade-off is measured on the single-stage segmenter
    c = plans.configuration(name)
    budget = memory_budget_bytes(plan["gb"])
    if plan["features"] is not None:
        fit_batch = 12 if c.dims == 2 else 2
        fit = fit_patch_to_memory(c.spacing[-c.dims:], c.median_shape[-c.dims:], budget, plans.num_channels,
                                  plans.num_classes, fit_batch, base_features=plan["features"])
        c.patch_size, c.network = list(fit.patch_size), fit.topology
        sample = training_memory_bytes(fit.topology, fit.patch_size, 1, plans.num_channels, plans.num_classes)
        c.batch_size, _ = choose_batch_size(sample, budget, fit.patch_size,
                                            total_voxels_at_spacing(fingerprint, c.spacing), c.dims)
    if plan["batch"] is not None:
        c.batch_size = plan["batch"]
    plans.default_configuration = name
    return plans, name


def training_flops(plans, name: str) -> float:
    """Forward + backward FLOPs of one training iteration, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from segforge.networks import build_network

    c = plans.configuration(name)
    with torch.device("meta"):
        net = build_network(c, plans.num_channels, plans.num_classes)
        x = torch.zeros(c.batch_size, plans.num_channels, *c.patch_size)
    counter = FlopCounterMode(display=False)
    with counter:
        outputs = net(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sum(o.float().sum() for o in outputs).backward()
    return float(counter.get_total_flops())


def held_out_dice(model_folder: Path, raw: Path, labels: list[int], device: str = "cpu") -> dict:
    import numpy as np

    from segforge.evaluation.metrics import dice
    from segforge.inference.api import load_predictor, predict
    from segforge.io.image import read_image

    predictor = load_predictor(model_folder=model_folder, folds=["0"], checkpoint="final", device=device, tta=False)
    per_class = {v: [] for v in labels}
    for result in predict(raw / "imagesTs", predictor=predictor):
        truth, _ = read_image(raw / "labelsTs" / f"{result.name}.nii.gz")
        for v in labels:
            d = dice(truth == v, result.labels == v)
            if not math.isnan(d):
                per_class[v].append(d)
    means = {str(v): float(np.mean(d)) for v, d in per_class.items() if d}
    return {"dice": float(np.mean(list(means.values()))) if means else 0.0, "per_class": means}


class CurveRun:
    """One training run of one plan and optimiser, evaluated at milestones (with decay branches)."""

    def __init__(self, plans, name: str, run_folder: Path, args, optimizer: str, lr: float, momentum: float):
        import torch

        from segforge.training import SegmentationTrainer, TrainingOptions

        # The same arithmetic on every device: fp32 (no autocast, no TF32), the loader's CPU augmentation, eager.
        options = TrainingOptions(epochs=1, iters_per_epoch=1, val_iters=1, num_workers=args.num_workers,
                                  cpu_threads=args.threads, progress_bar=False, plots=False, seed=args.seed,
                                  augment_on="cpu", compile=False)
        self.device = args.device
        if args.device.startswith("cuda"):
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        self.trainer = SegmentationTrainer(plans, name, 0, output_folder=run_folder / f"SegmentationTrainer__{name}"
                                           / "fold_0", device=args.device, options=options, log=lambda line: None)
        self.trainer.amp_dtype = None
        self.trainer.initialize()
        self.trainer.write_model_folder_files()
        self.trainer.wrap_network()
        self.trainer.train_loader = self.trainer.make_training_loader()
        params = self.trainer.network.parameters()
        if optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,
                                             weight_decay=3e-5)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2)
        self.base_lr = lr
        self.warmup = args.warmup
        self.seconds = 0.0
        self.steps = 0

    def set_lr(self, lr: float) -> None:
        if self.steps < self.warmup:
            lr = lr * (self.steps + 1) / self.warmup
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self, lr: float) -> float:
        import torch

        t = self.trainer
        self.set_lr(lr)
        start = time.perf_counter()
        batch = t.prepare_batch(next(t.train_loader))
        self.optimizer.zero_grad(set_to_none=True)
        loss = t.training_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(t.network.parameters(), 12.0)
        self.optimizer.step()
        self.seconds += time.perf_counter() - start
        self.steps += 1
        return loss.detach().item()

    def snapshot(self) -> dict:
        return {"network": copy.deepcopy(self.trainer.network.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "steps": self.steps}

    def restore(self, state: dict) -> None:
        self.trainer.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]

    def evaluate(self, raw: Path, labels: list[int]) -> dict:
        self.trainer.save_checkpoint("final", 0)
        start = time.perf_counter()
        result = held_out_dice(self.trainer.model_folder, raw, labels, self.device)
        result["eval_seconds"] = time.perf_counter() - start
        self.trainer.network.train()
        return result

    def close(self) -> None:
        for loader in [self.trainer.train_loader, *self.trainer.loaders]:
            loader.close()


def run_wsd(plans, name, folder, args, optimizer, lr, momentum, raw, labels, record, max_iters: int) -> None:
    """Constant-rate run evaluated at each milestone, plus a linear-decay branch ending at each milestone."""
    run = CurveRun(plans, name, folder, args, optimizer, lr, momentum)
    milestones = [m for m in args.milestones if m <= max_iters]
    # --decay-fraction 0: the constant-rate run alone (the schedule segforge trains with under a budget)
    branch_starts = {int(round((1 - args.decay_fraction) * m)): m for m in milestones} if args.decay_fraction > 0 else {}
    losses = []
    try:
        for i in range(1, max(milestones) + 1):
            losses.append(run.step(lr))
            if i in branch_starts:
                end = branch_starts[i]
                state, seconds = run.snapshot(), run.seconds
                for j in range(end - i):
                    run.step(lr * (1 - (j + 1) / (end - i + 1)))
                point = run.evaluate(raw, labels)
                record("wsd", end, point, run.seconds / max(run.steps, 1))
                run.restore(state)
                run.seconds = seconds
            if i in milestones:
                point = run.evaluate(raw, labels)
                point["train_loss"] = float(sum(losses[-20:]) / len(losses[-20:]))
                record("constant", i, point, run.seconds / i)
    finally:
        run.close()


def run_poly(plans, name, folder, args, optimizer, lr, momentum, raw, labels, record, total: int) -> None:
    run = CurveRun(plans, name, folder, args, optimizer, lr, momentum)
    try:
        for i in range(total):
            run.step(lr * (1 - i / total) ** 0.9)
        record("poly", total, run.evaluate(raw, labels), run.seconds / total)
    finally:
        run.close()


def main(argv=None) -> int:
    parser = base_parser(__doc__, "budget_curves")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                        help="one of the measured datasets (sets the arguments below)")
    parser.add_argument("--kind", default="organs", choices=["organs", "small_target"])
    parser.add_argument("--modality", default="CT", choices=["CT", "MR"])
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--anisotropic", action="store_true")
    parser.add_argument("--size", default="small", choices=["small", "realistic"])
    parser.add_argument("--shape", type=int, nargs=3, default=None)
    parser.add_argument("--num-train", type=int, default=10)
    parser.add_argument("--num-test", type=int, default=4)
    parser.add_argument("--dataset-id", type=int, default=980)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--configuration", default=None, help="default: the plan's (3d_fullres for a cascade)")
    parser.add_argument("--plans", nargs="+", default=["0.1"], help="GB[:fFEATURES][:bBATCH] per candidate")
    parser.add_argument("--optimizers", nargs="+", default=["sgd:0.01:0.99"], help="NAME:LR[:MOMENTUM]")
    parser.add_argument("--milestones", type=int, nargs="+", default=[25, 50, 100, 200, 400, 800, 1600, 3200])
    parser.add_argument("--max-iters", type=int, default=1600)
    parser.add_argument("--decay-fraction", type=float, default=0.2)
    parser.add_argument("--poly-at", type=int, nargs="*", default=[], help="separate poly-decay runs of N iterations")
    parser.add_argument("--no-wsd", action="store_true", help="only the --poly-at runs")
    parser.add_argument("--warmup", type=int, default=0, help="linear warm-up iterations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--prepare-only", action="store_true", help="make and preprocess the dataset, then stop")
    parser.add_argument("--prepared", action="store_true",
                        help="the dataset is made and preprocessed (--prepare-only): leave it as it is "
                        "(several sweeps read it at once)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: the Dice by iteration count is the same "
                        "fp32 arithmetic and augmentation on both (a GPU only runs the sweep faster)")
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args(argv)
    apply_dataset(args)
    if args.smoke:
        args.shape, args.num_train, args.num_test = (24, 40, 40), 4, 2
        args.milestones, args.max_iters, args.plans = [2, 4], 4, ["0.05"]
    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)  # kept between calls: the sweep resumes
    os.environ.update(SEGFORGE_RAW=str(work / "raw"), SEGFORGE_PREPROCESSED=str(work / "segforge_preprocessed"),
                      SEGFORGE_RESULTS=str(work / "segforge_results"), PYTHONUNBUFFERED="1")
    out = (args.out or work / "budget_curves.json").absolute()
    results = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    done = {(r["dataset_tag"], r["plan"], r["optimizer"], r["schedule"], r["iters"], r["seed"], r["warmup"])
            for r in results["runs"]}

    from segforge import paths
    from segforge.workflows.plan_and_preprocess import plan_and_preprocess

    folder_name = make_dataset(args)
    if not args.prepared:
        plan_and_preprocess(folder_name, num_processes=2, gpu_memory_gb=parse_plan(args.plans[0])["gb"],
                            configurations=["3d_fullres"], progress=False, log=lambda line: None)
    if args.prepare_only:
        return 0
    fingerprint = json.loads((paths.preprocessed_root() / folder_name / "fingerprint.json").read_text())
    raw = paths.raw_root() / folder_name
    labels = sorted(v for v in json.loads((raw / "dataset.json").read_text())["labels"].values() if v)
    tag = dataset_tag(args)

    def save() -> None:
        results.update(machine=machine(), command="python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
        tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
        tmp.write_text(json.dumps(results, indent=1) + "\n")
        os.replace(tmp, out)

    for spec in args.plans:
        plan = parse_plan(spec)
        spec, max_iters = plan["spec"], plan["max_iters"] or args.max_iters
        plans, name = candidate_plans(fingerprint, plan, args.configuration)
        c = plans.configuration(name)
        flops = training_flops(plans, name)
        for opt_spec in args.optimizers:
            parts = opt_spec.split(":")
            optimizer, lr = parts[0], float(parts[1])
            momentum = float(parts[2]) if len(parts) > 2 else 0.99

            def record(schedule, iters, point, seconds_per_iter):
                entry = {"dataset_tag": tag, "dataset": folder_name, "plan": spec, "configuration": name,
                         "patch_size": c.patch_size, "batch_size": c.batch_size,
                         "features_per_stage": c.network.features_per_stage, "gflop_per_iter": flops / 1e9,
                         "optimizer": opt_spec, "schedule": schedule, "iters": iters, "seed": args.seed,
                         "warmup": args.warmup, "provisional_seconds_per_iter": seconds_per_iter,
                         "device": args.device,
                         "load_average": os.getloadavg()[0], **point}
                results["runs"].append(entry)
                save()
                print(f"{tag} {spec} {opt_spec} {schedule} N={iters}: Dice {point['dice']:.3f} "
                      f"({seconds_per_iter:.2f} s/it, load {entry['load_average']:.1f})", flush=True)

            run_folder = work / "runs" / f"{tag}_{spec}_{opt_spec}".replace(":", "-")
            key = (tag, spec, opt_spec, "constant", max(m for m in args.milestones if m <= max_iters),
                   args.seed, args.warmup)
            if not args.no_wsd and key not in done:
                run_wsd(plans, name, run_folder, args, optimizer, lr, momentum, raw, labels, record, max_iters)
            for total in args.poly_at:
                if (tag, spec, opt_spec, "poly", total, args.seed, args.warmup) not in done:
                    run_poly(plans, name, run_folder, args, optimizer, lr, momentum, raw, labels, record, total)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
