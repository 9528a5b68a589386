"""`segforge_demo`: a synthetic dataset through plan, train, predict and evaluate."""

from __future__ import annotations

import argparse
import sys

from segforge.cli._runner import CommandParser, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="segforge_demo",
        description="Generate a synthetic dataset and run it through the whole pipeline "
        "(plan and preprocess, train fold 0, predict held-out scans, evaluate).",
    )
    parser.add_argument("--cascade", action="store_true",
                        help="use the small-target dataset, which the planner sends through the two-stage cascade")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("--train-minutes", type=float, default=6.0, help="training wall-clock budget in minutes (default 6)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs (default 12)")
    parser.add_argument("--iters-per-epoch", type=int, default=25, help="training iterations per epoch (default 25)")
    parser.add_argument("--num-train", type=int, default=10, help="synthetic training cases (default 10)")
    parser.add_argument("--num-test", type=int, default=4, help="synthetic held-out cases (default 4)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="synthetic volume shape")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="preprocessing processes (default 2)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from segforge.demo import DemoSettings, run_demo

        run_demo(DemoSettings(cascade=args.cascade, device=args.device, train_minutes=args.train_minutes,
                              epochs=args.epochs, iters_per_epoch=args.iters_per_epoch, num_train=args.num_train,
                              num_test=args.num_test, shape=tuple(args.shape) if args.shape else None,
                              num_processes=args.num_processes))

    return run_command("segforge_demo", body)


if __name__ == "__main__":
    sys.exit(main())
