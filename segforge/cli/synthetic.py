"""`segforge_synthetic`: write a synthetic raw dataset into SEGFORGE_RAW."""

from __future__ import annotations

import argparse
import sys

from segforge.cli._runner import CommandParser, run_command

PROG = "segforge_synthetic"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Generate a synthetic dataset (nnU-Net raw layout) with "
                                "known answers in synthetic_truth.json.")
    p.add_argument("-d", "--dataset-id", type=int, required=True, help="dataset number, 0-999")
    p.add_argument("-n", "--name", required=True, help="dataset name (letters, digits, _ and -)")
    p.add_argument("--kind", choices=["organs", "small_target"], default="organs",
                   help="organs: 4 abdominal labels; small_target: one 1-2 cm target in a large volume")
    p.add_argument("--num-train", type=int, default=10)
    p.add_argument("--num-test", type=int, default=2)
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="voxels per case")
    p.add_argument("--size", choices=["small", "realistic"], default="small",
                   help="default shape when --shape is not given")
    p.add_argument("--modality", choices=["CT", "MR"], default="CT")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--anisotropic", action="store_true", help="0.7 x 0.7 x 5 mm voxels (z coarse)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-root", help="where to write (default: SEGFORGE_RAW or ./segforge_raw)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from segforge.synthetic import make_synthetic_dataset

        folder = make_synthetic_dataset(
            args.dataset_id, args.name, kind=args.kind, num_train=args.num_train, num_test=args.num_test,
            shape=tuple(args.shape) if args.shape else None, modality=args.modality,
            num_channels=args.channels, anisotropic=args.anisotropic, seed=args.seed, raw_root=args.raw_root,
            size=args.size,
        )
        print(f"{PROG}: wrote {folder}")

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
