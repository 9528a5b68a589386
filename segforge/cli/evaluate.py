"""`segforge_evaluate -ref GT -pred PRED [-l LABELS...] [-o summary.json] [--tolerance MM] [-np N]
[--executor local|ray] [--ray-address ADDR]
[--pictures DIR [--images IMAGES]]`.

Exit codes: 0 all reference cases scored, 1 some could not be (missing prediction, other
grid, unreadable: listed), 2 nothing could be scored or bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from segforge.cli._execution import add_execution_arguments, execution_settings
from segforge.cli._runner import CommandParser, run_command

PROG = "segforge_evaluate"


def _label_or_region(text: str):
    """``"2"`` -> 2; ``"1,2,3"`` -> [1, 2, 3] (a region)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a label value or comma-separated values") from None
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog=PROG, description="Score predicted label maps against references: "
                                     "Dice, IoU, HD95 (mm) and surface Dice per case and label.")
    parser.add_argument("-ref", "--reference", required=True, help="folder of reference label files")
    parser.add_argument("-pred", "--prediction", required=True, help="folder of predicted label files (same names)")
    parser.add_argument("-l", "--labels", type=_label_or_region, nargs="+", default=None,
                        help="label values to score (default: every non-zero value found); a region is its values "
                        "joined by commas, e.g. 1,2,3")
    parser.add_argument("--ignore-label", type=int, default=None,
                        help="reference voxels of this value are left out of every metric (partially annotated cases)")
    parser.add_argument("-o", "--output", default=None, help="summary JSON (default: PRED/summary.json)")
    parser.add_argument("--tolerance", type=float, default=1.0, help="surface Dice tolerance in mm (default 1)")
    parser.add_argument("-np", "--num-processes", type=int, default=None,
                        help="cases scored in parallel (default: local: CPU cores, at most 4; ray: the cluster's CPUs)")
    add_execution_arguments(parser, parts=False)
    parser.add_argument("--pictures", default=None, metavar="DIR",
                        help="also draw DIR/CASE.png per scored case: truth and prediction on the slices through "
                        "the largest structures, the case's Dice in the title")
    parser.add_argument("--images", default=None, metavar="IMAGES",
                        help="with --pictures: folder of the images (CASE_0000.nii.gz or CASE.nii.gz) to draw under "
                        "the labels")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge.errors import InputError
        from segforge.evaluation.evaluate import evaluate_folders, format_table, save_summary
        from segforge.io.atomic import check_writable_folder

        if args.num_processes is not None and args.num_processes < 1:
            raise InputError(f"-np must be at least 1, got {args.num_processes}")
        workers = args.num_processes or (min(4, os.cpu_count() or 1) if args.executor == "local" else None)
        execution = execution_settings(args, workers)
        output = Path(args.output) if args.output else Path(args.prediction) / "summary.json"
        if output.is_dir():  # checked before the scoring, not after it
            raise InputError("-o is a folder; give the summary file's path, e.g. "
                             f"{output / 'summary.json'}", output)
        if args.output:
            check_writable_folder(output.parent, "folder of -o")
        if args.images and not args.pictures:
            raise InputError("--images goes with --pictures DIR (the images to draw under the labels)")
        image_of = None
        if args.pictures:
            from segforge.evaluation.pictures import images_in_folder

            check_writable_folder(args.pictures, "folder of --pictures")
            image_of = images_in_folder(args.images) if args.images else None
        summary = evaluate_folders(args.reference, args.prediction, args.labels, args.tolerance,
                                   execution=execution, ignore_label=args.ignore_label)
        save_summary(summary, output)
        names = _label_names(Path(args.reference), Path(args.prediction))
        print(format_table(summary, names))
        print(f"summary written to {output}")
        if args.pictures:
            from segforge.evaluation.pictures import draw_test_pictures

            drawn = draw_test_pictures(summary, args.pictures, image_of, names)
            print(f"{len(drawn)} picture(s) of prediction vs truth written to {args.pictures}")
        not_scored = [f"{case}: prediction missing" for case in summary["missing_predictions"]]
        not_scored += [f"{m['case']}: prediction grid differs from the reference ({m['difference']})"
                       for m in summary["geometry_mismatches"]]
        not_scored += [f"{u['case']}: {u['file']}: {u['reason']}" for u in summary["unreadable"]]
        for line in not_scored:  # the per-case convention of every command: "prog: failed: case: why", exit 1
            print(f"{PROG}: failed: {line}", file=sys.stderr)
        return 1 if not_scored else 0

    return run_command(PROG, body)


def _label_names(reference: Path, prediction: Path) -> dict[int, str]:
    """Label names from a dataset.json beside the folders (raw dataset or model folder), if any."""
    import json

    for candidate in (reference.parent, prediction, prediction.parent):
        path = candidate / "dataset.json"
        if path.is_file():
            try:
                labels = json.loads(path.read_text()).get("labels", {})
                return {int(v): str(k) for k, v in labels.items() if isinstance(v, int)}
            except (json.JSONDecodeError, AttributeError, ValueError):
                return {}
    return {}


if __name__ == "__main__":
    sys.exit(main())
