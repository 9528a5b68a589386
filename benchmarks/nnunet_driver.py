"""Runs inside the separate nnU-Net v2 environment (benchmarks/.venv-nnunet); never imported by segforge.

    python nnunet_driver.py train DATASET FOLD --iters N --val-iters M --max-epochs E --budget-seconds S --device cpu --out result.json
    python nnunet_driver.py summarize FOLD_FOLDER/checkpoint_final.pth --iters N --out result.json

Trains nnU-Net's default trainer on the 3d_fullres plan through its public Python API with a
chosen number of iterations per epoch, stops after the first epoch that ends past the wall-clock
budget, writes checkpoint_final like a normal run, and reports the epoch times. With
``--stop-within-epoch`` it stops at the first iteration that ends past the budget instead (nnU-Net's
default 250-iteration epochs can be longer than a CPU budget).
"""

import argparse
import json
import time

import numpy as np
import torch


class _BudgetReached(Exception):
    pass


def train(args) -> None:
    from nnunetv2.run.run_training import get_trainer_from_args

    torch.set_num_threads(max(1, args.threads))
    trainer = get_trainer_from_args(str(args.dataset), "3d_fullres", args.fold, "nnUNetTrainer", "nnUNetPlans",
                                    device=torch.device(args.device))
    trainer.num_iterations_per_epoch = args.iters
    trainer.num_val_iterations_per_epoch = args.val_iters
    trainer.num_epochs = args.max_epochs
    start = time.perf_counter()
    original_on_epoch_end = trainer.on_epoch_end

    def on_epoch_end():
        original_on_epoch_end()
        if time.perf_counter() - start > args.budget_seconds:
            raise _BudgetReached

    trainer.on_epoch_end = on_epoch_end
    iterations = [0]
    if args.stop_within_epoch:
        original_train_step = trainer.train_step

        def train_step(batch):
            out = original_train_step(batch)
            iterations[0] += 1
            if time.perf_counter() - start > args.budget_seconds:
                raise _BudgetReached
            return out

        trainer.train_step = train_step
    try:
        trainer.run_training()
    except _BudgetReached:
        trainer.on_train_end()
    result = _summary(trainer.logger.get_checkpoint(), args.iters)  # nnU-Net's logged values, any logger version
    result.update(train_wall_seconds=time.perf_counter() - start,
                  iterations=iterations[0] if args.stop_within_epoch else result["epochs"] * args.iters,
                  parameters=int(sum(p.numel() for p in trainer.network.parameters())))
    _write(result, args.out)


def summarize(args) -> None:
    """The same summary from a saved checkpoint (its ``logging`` entry and network weights)."""
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)  # nnU-Net's own file
    result = _summary(checkpoint["logging"], args.iters)
    # nnU-Net's state dict names some weights twice (aliases): count each storage once
    unique = {v.untyped_storage().data_ptr(): v.numel() for v in checkpoint["network_weights"].values()}
    result["parameters"] = int(sum(unique.values()))
    _write(result, args.out)


def _summary(log: dict, iters: int) -> dict:
    epoch_seconds = [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]
    return {
        "epochs": len(epoch_seconds),  # finished epochs (0: stopped within the first)
        "iters_per_epoch": iters,
        "epoch_seconds": epoch_seconds,
        "ema_fg_dice": [float(v) for v in log["ema_fg_dice"]],
        "train_losses": [float(v) for v in log["train_losses"]],
    }


def _write(result: dict, out: str) -> None:
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, list)}))
    if result["epoch_seconds"]:
        print("median epoch seconds", float(np.median(result["epoch_seconds"])))


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("dataset")
    t.add_argument("fold", type=int)
    t.add_argument("--iters", type=int, default=250)
    t.add_argument("--val-iters", type=int, default=50)
    t.add_argument("--max-epochs", type=int, default=1000)
    t.add_argument("--budget-seconds", type=float, default=1e9)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--stop-within-epoch", action="store_true", help="stop at the first iteration past the budget")
    t.add_argument("--out", required=True)
    s = sub.add_parser("summarize")
    s.add_argument("checkpoint")
    s.add_argument("--iters", type=int, default=250)
    s.add_argument("--out", required=True)
    args = parser.parse_args()
    {"train": train, "summarize": summarize}[args.command](args)


if __name__ == "__main__":
    main()
