"""`segforge_plan_and_preprocess -d ID [-np N] [--device cpu|cuda] [--gpu-memory-gb G] [--train-minutes M]
[--recalibrate] [-c CONFIG ...] [--plan-only] [--verify] [--spacing Z Y X] [--patch-size Z Y X] [--batch-size B]
[--default-configuration NAME] [--network NAME] [--labels NAME ...] [--executor local|ray] [--ray-address ADDR] [--part I --num-parts N]`.

Verify the raw dataset, extract its fingerprint, plan, and preprocess the planned default
configuration (with what it needs: the cascade's locator). The steps are
:func:`segforge.workflows.plan_and_preprocess.plan_and_preprocess`. Exit code 2 with one line per
problem when the dataset or an argument is wrong.
"""

from __future__ import annotations

import argparse
import math
import sys

from segforge.cli._execution import add_execution_arguments, execution_settings
from segforge.cli._runner import CommandParser, run_command
from segforge.networks.topology import NETWORK_FAMILIES

PROG = "segforge_plan_and_preprocess"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Fingerprint a raw dataset, plan its configurations (plans.json) and preprocess them.",
    )
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (901) or name (Dataset901_Name)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="cases processed in parallel (default: local: CPU cores, at most 8; ray: the "
                        "cluster's CPUs)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="device training will use (default: the visible GPU, else the CPU)")
    parser.add_argument("--gpu-memory-gb", type=float, default=None,
                        help="memory the plan is sized for (default: the device's; on a CPU the plan is sized to "
                             "the time budget instead)")
    parser.add_argument("--train-minutes", type=float, default=None,
                        help="training time the plan is sized for, and segforge_train's default --max-minutes "
                             "(default: none, the full schedule; a CPU plan is sized for 15 minutes)")
    parser.add_argument("--recalibrate", action="store_true",
                        help="measure the device's speed again (cached per machine; do it on a quiet machine)")
    parser.add_argument("-c", "--configurations", nargs="+", default=None, metavar="CONFIG",
                        help="configurations to preprocess (default: the plan's default and what it needs)")
    parser.add_argument("--plan-only", action="store_true", help="stop after writing plans.json")
    parser.add_argument("--verify", action="store_true", help="only verify the raw dataset")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help="target spacing in mm (overrides the planner)")
    parser.add_argument("--patch-size", type=int, nargs="+", metavar="EDGE", default=None,
                        help="patch size Z Y X for the 3D configurations (or Y X for 2d), multiples of 16")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size of the segmentation configurations")
    parser.add_argument("--default-configuration", default=None, metavar="NAME",
                        help="configuration `segforge_train ID FOLD` trains (2d, 3d_fullres, cascade_fullres)")
    parser.add_argument("--network", default=None, metavar="NAME",
                        help=f"network of the segmentation configurations: {', '.join(sorted(NETWORK_FAMILIES))} "
                        "(default unet; recorded in plans.json with why)")
    parser.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                        help="train on these labels (dataset.json names) only; the others become background "
                        "(recorded in plans.json: labels, dropped_labels, why.labels)")
    add_execution_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge.errors import InputError
        from segforge.execution import default_local_workers
        from segforge.workflows.plan_and_preprocess import plan_and_preprocess
        from segforge.planning.overrides import PlanOverrides

        if args.num_processes is not None and args.num_processes < 1:
            raise InputError(f"-np must be at least 1, got {args.num_processes}")
        if args.gpu_memory_gb is not None and not (math.isfinite(args.gpu_memory_gb) and args.gpu_memory_gb > 0):
            raise InputError(f"--gpu-memory-gb must be a positive number of GB, got {args.gpu_memory_gb}")
        execution = execution_settings(args, args.num_processes)
        if args.train_minutes is not None and not (math.isfinite(args.train_minutes) and args.train_minutes > 0):
            raise InputError(f"--train-minutes must be a positive number of minutes, got {args.train_minutes}")
        overrides = PlanOverrides(
            spacing=tuple(args.spacing) if args.spacing else None,
            patch_size=tuple(args.patch_size) if args.patch_size else None,
            batch_size=args.batch_size,
            default_configuration=args.default_configuration,
            network=args.network,
            labels=tuple(args.labels) if args.labels else None,
        )
        plan_and_preprocess(
            args.dataset,
            num_processes=args.num_processes or default_local_workers(),
            gpu_memory_gb=args.gpu_memory_gb,
            configurations=args.configurations,
            overrides=overrides,
            verify_only=args.verify,
            plan_only=args.plan_only,
            execution=execution,
            device=args.device,
            train_minutes=args.train_minutes,
            recalibrate=args.recalibrate,
        )
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
