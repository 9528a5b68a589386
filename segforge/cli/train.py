"""`segforge_train ID FOLD [-c CONFIG] [--epochs N] [--iters-per-epoch N] [--val-iters N] [--max-minutes M]
[--patience N] [--device cpu|cuda] [--continue] [--seed S] [--deterministic] [--optimizer sgd|adamw|adam]
[--lr LR] [--num-workers N] [--augment-on gpu|cpu] [--no-compile] [--num-gpus N] [--logger none|tensorboard|wandb]
[--mixup none|input|manifold] [--mixup-alpha A] [--pseudo-labels DIR [--pseudo-weight W]]
[--no-progress-bar] [--no-plots] [--validation-only] [--pretrained-weights CKPT] [--save-probabilities]`.

Trains fold FOLD (0..4 or ``all``) of the plan's default configuration; for a cascade, the
locator first and then the segmenter. ``--num-gpus N`` starts the command again as N processes
under torchrun (started by torchrun or SLURM it joins their run instead). Exit codes: 0 done,
2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from segforge.cli._runner import CommandParser, run_command

PROG = "segforge_train"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Train one fold of a planned configuration.")
    p.add_argument("dataset", help="dataset id (901) or name (Dataset901_Name)")
    p.add_argument("fold", help="fold number (0..4) or 'all' (train and validate on every case)")
    p.add_argument("-c", "--configuration", default=None, help="configuration to train (default: the plans' default)")
    p.add_argument("--epochs", type=int, default=1000, help="number of epochs (default 1000)")
    p.add_argument("--iters-per-epoch", type=int, default=None,
                   help="training iterations per epoch (default 250; with a time budget sized from the measured "
                        "iteration time, about 1/30 of the budget)")
    p.add_argument("--val-iters", type=int, default=None,
                   help="validation iterations per epoch (default 50; with a time budget at most 10%% of an epoch)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="time budget: training stops within one iteration of it, then checkpoint_final.pt and the "
                        "fold validation (default: the plan's --train-minutes, else none)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop after this many epochs without a better EMA pseudo-Dice (default: never)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--continue", dest="resume", action="store_true", help="resume from checkpoint_latest.pt")
    p.add_argument("--seed", type=int, default=12345, help="random seed (default 12345)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms: two runs with the same seed give the same losses (slower)")
    p.add_argument("--optimizer", default=None, choices=("sgd", "adamw", "adam"),
                   help="default: the trainer's, sgd (Nesterov, poly LR) for segmentation, adam for the locator")
    p.add_argument("--lr", type=float, default=None,
                   help="initial learning rate (default: the optimizer's, 1e-2 sgd, 1e-3 adamw, 3e-3 adam)")
    p.add_argument("--num-workers", type=int, default=None,
                   help="data loading processes (default: CPU count - 1, at most 12; 0 = in this process)")
    p.add_argument("--augment-on", choices=("gpu", "cpu"), default=None,
                   help="gpu: batched torch augmentation on the training device (the loader workers only read "
                        "each sample's source box); cpu: batchgenerators in the workers (default: gpu on CUDA, "
                        "cpu otherwise)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="torch.compile the network (default: on CUDA only)")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="do not torch.compile the network")
    p.add_argument("--num-gpus", type=int, default=1,
                   help="train as this many processes on this machine (one per GPU; with --device cpu, CPU "
                        "processes talking through gloo), started through torchrun (default 1)")
    p.add_argument("--logger", default="none", choices=("none", "tensorboard", "wandb"),
                   help="also log the epoch numbers and pictures: tensorboard (fold_K/tensorboard) or wandb "
                   "(fold_K/wandb; offline unless WANDB_MODE is set: no account or network needed, "
                   "upload later with wandb sync)")
    p.add_argument("--mixup", default="none", choices=("none", "input", "manifold"),
                   help="mix pairs of training samples and their one-hot targets: the images (input) or the features "
                   "after a random encoder stage (manifold); loss on the soft targets (default none)")
    p.add_argument("--mixup-alpha", type=float, default=0.2,
                   help="mixup weight lam ~ Beta(alpha, alpha) (default 0.2: mostly mild mixing)")
    p.add_argument("--pseudo-labels", default=None, metavar="DIR",
                   help="self-distillation: a segforge_predict output folder (unlabelled scans predicted by a segforge "
                   "model); its cases join the training cases of every fold, never validation; probabilities "
                   "saved with --save-probabilities become soft targets")
    p.add_argument("--pseudo-weight", type=float, default=1.0,
                   help="a pseudo-labelled case is drawn this many times as often as a labelled one (default 1)")
    p.add_argument("--no-progress-bar", dest="progress_bar", action="store_false", help="no per-epoch progress bar")
    p.add_argument("--no-plots", dest="plots", action="store_false",
                   help="draw no pictures (progress.png, validation and locator pictures)")
    p.add_argument("--no-validation", dest="validate", action="store_false",
                   help="skip predicting and scoring the fold's validation cases after training")
    p.add_argument("--validation-only", action="store_true",
                   help="only predict and score the fold's validation cases with the trained model")
    p.add_argument("--save-probabilities", action="store_true",
                   help="with the fold validation, also write each case's probabilities (validation/"
                   "CASE_probabilities.npy): segforge_find_best_configuration scores ensembles from them")
    p.add_argument("--pretrained-weights", default=None, metavar="CKPT",
                   help="fine-tune: start from this checkpoint (every weight whose name and shape match; the output "
                   "head is replaced when the classes differ; same network family only)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge import paths
        from segforge.data.splits import parse_fold
        from segforge.planning.plans import Plans
        from segforge.devices import resolve_device
        from segforge.errors import InputError
        from segforge.training.options import TrainingOptions
        from segforge.workflows.train import segmentation_model_folder, train_fold
        from segforge.workflows.validation import validate_fold

        fold = parse_fold(args.fold)
        if args.num_gpus < 1:
            raise InputError(f"--num-gpus must be at least 1, got {args.num_gpus}")
        from segforge.networks.registry import check_buildable

        plans_file = paths.preprocessed_dataset_dir(args.dataset) / "plans.json"
        plans = Plans.load(plans_file)
        check_buildable(plans, plans_file)  # a typo in a name is reported with the file
        device = str(resolve_device(args.device))
        if args.validation_only:
            # prints its one-line result and writes validation/summary.json
            validate_fold(segmentation_model_folder(plans, args.configuration), fold, device,
                          save_probabilities=args.save_probabilities)
            return 0
        options = TrainingOptions(
            epochs=args.epochs, iters_per_epoch=args.iters_per_epoch, val_iters=args.val_iters,
            max_minutes=args.max_minutes, patience=args.patience, seed=args.seed, deterministic=args.deterministic,
            optimizer=args.optimizer, initial_lr=args.lr, num_workers=args.num_workers, logger=args.logger,
            mixup=args.mixup, mixup_alpha=args.mixup_alpha, pseudo_labels=args.pseudo_labels,
            pseudo_weight=args.pseudo_weight,
            progress_bar=args.progress_bar, plots=args.plots, augment_on=args.augment_on, compile=args.compile,
            pretrained_weights=args.pretrained_weights)
        if args.num_gpus > 1 and not under_launcher():
            return relaunch(plans, args, argv, device)
        train_fold(plans, fold, args.configuration, device, options, args.resume, validate=args.validate,
                   save_probabilities=args.save_probabilities)
        return 0

    return run_command(PROG, body)


def under_launcher() -> bool:
    from segforge.training.distributed import under_launcher as launched

    return launched()


def relaunch(plans, args, argv: list[str], device: str) -> int:
    """This command again as ``--num-gpus`` processes under torchrun; its exit code."""
    import torch

    from segforge.errors import InputError
    from segforge.training.distributed import batch_share, torchrun_command

    n = args.num_gpus
    if device.startswith("cuda") and torch.cuda.device_count() < n:
        raise InputError(f"--num-gpus {n} but this machine has {torch.cuda.device_count()} GPU(s)")
    conf = plans.configuration(args.configuration)
    batch_share(conf.batch_size, 0, n)  # refuses a batch that n processes cannot share, before starting them
    if conf.cascade is not None and conf.cascade.locator_configuration in plans.configurations:
        batch_share(plans.configuration(conf.cascade.locator_configuration).batch_size, 0, n)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # torchrun would set 1
    return subprocess.call(torchrun_command("segforge.cli.train", argv, n), env=env)


if __name__ == "__main__":
    sys.exit(main())
