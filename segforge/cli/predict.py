"""`segforge_predict -i IN -o OUT [-d ID | -m MODEL_FOLDER] [-c CONFIG] [-f FOLDS] [-chk final|best|latest]
[--device D] [--disable-tta] [--step S] [--save-probabilities] [--save-locator] [--no-postprocessing] [--continue]
[-np N] [--num-gpus G] [--executor local|ray] [--ray-address ADDR] [--part I --num-parts N]
[--reference LABELS]`.

With ``--reference LABELS`` (the true label maps, ``CASE.nii.gz``) the predictions are then scored
(``OUT/summary.json``, the table printed) and drawn against the truth (``OUT/pictures/CASE.png``).

Exit codes: 0 every case predicted (or skipped), 1 some case failed (each named with its
reason), 2 bad arguments, input or model.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from segforge.cli._execution import add_execution_arguments, execution_settings
from segforge.cli._runner import CommandParser, run_command

PROG = "segforge_predict"


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog=PROG, description="Predict label maps for a folder of images, one image, "
                                "or folders of DICOM series, onto each input's own grid.")
    p.add_argument("-i", "--input", required=True, help="folder of images (CASE_0000.nii.gz ...), one image file, "
                   "a DICOM series folder, or a folder of DICOM series folders")
    p.add_argument("-o", "--output", required=True, help="output folder (not the input folder)")
    p.add_argument("-d", "--dataset", default=None, help="dataset id or name under SEGFORGE_RESULTS")
    p.add_argument("-m", "--model-folder", default=None, help="a model folder <trainer>__<configuration> "
                   "(with plans.json, fold_K/checkpoint_*.pt)")
    p.add_argument("-c", "--configuration", default=None, help="configuration (default: the plans' default)")
    p.add_argument("-tr", "--trainer", default=None, help="trainer name (default: SegmentationTrainer)")
    p.add_argument("-f", "--folds", nargs="+", default=None, help="folds to ensemble (default: all trained)")
    p.add_argument("-chk", "--checkpoint", default="final", choices=("final", "best", "latest"))
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--disable-tta", action="store_true", help="no mirroring (2^dims times faster)")
    p.add_argument("--step", type=float, default=None, help="sliding-window step as a fraction of the patch "
                   "(default 0.5; larger is faster)")
    p.add_argument("--mirror-axes", type=int, nargs="+", default=None, metavar="AXIS",
                   help="mirror only over these axes (array order: 0 = z, 1 = y, 2 = x for 3D; default: all)")
    p.add_argument("--fast", action="store_true", help="faster settings whose Dice cost is measured in "
                   "docs/prediction.md (sliding-window step and mirror axes; not with --step or --mirror-axes)")
    p.add_argument("--bf16", action="store_true", help="run the networks in bfloat16 (CPUs with native BF16, "
                   "e.g. AVX512-BF16 or AMX; on a GPU instead of float16)")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write CASE_probabilities.npy (K,Z,Y,X float16) and CASE_probabilities.json")
    p.add_argument("--save-locator", action="store_true",
                   help="cascade models: also write CASE_locator.json (located centroid, world mm) and "
                   "CASE_locator_heatmap.nii.gz (the heatmap on the locator grid)")
    p.add_argument("--series-uid", nargs="+", default=(), metavar="UID",
                   help="DICOM folders holding several series: the SeriesInstanceUID(s) to predict (in each folder "
                   "the one among them it holds)")
    p.add_argument("--output-format", default="auto", choices=("auto", "dicom-seg"),
                   help="auto: the input's format (NIfTI for DICOM input); dicom-seg: a DICOM Segmentation CASE.dcm "
                   "referencing the input series, segments named from dataset.json (DICOM input; needs highdicom)")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="run the networks with torch (default) or ONNX Runtime (CPU; needs an export folder from "
                   "segforge_export as -m and the onnx extra)")
    p.add_argument("--continue", dest="skip_existing", action="store_true",
                   help="skip cases whose output is complete (a whole, readable label map on the input's grid); "
                   "damaged or partial outputs are predicted again, saying why")
    p.add_argument("--prefetch", type=int, default=2, help="cases read and preprocessed ahead (default 2)")
    p.add_argument("-np", "--num-processes", type=int, default=None,
                   help="model replicas on the CPU, each predicting its own cases with cores/N threads "
                   "(default: local 1, using every core; ray: one per cluster CPU)")
    add_execution_arguments(p, gpus=True)
    p.add_argument("--reference", default=None, metavar="LABELS",
                   help="folder of the true label maps (CASE.nii.gz): after predicting, score the predictions "
                   "(OUT/summary.json) and draw OUT/pictures/CASE.png, truth vs prediction on the slices through the "
                   "largest structures with the case's Dice in the title")
    p.add_argument("--no-postprocessing", dest="postprocessing", action="store_false",
                   help="skip the model's cross-validated connected-component postprocessing (postprocessing.json, "
                   "written by segforge_find_best_configuration)")
    return p


def speed_options(fast: bool, step: float | None, mirror_axes) -> dict:
    """Predictor keywords of --fast / --step / --mirror-axes (InputError for a bad combination)."""
    from segforge.errors import InputError
    from segforge.inference.predictor import FAST_MODE

    if fast:
        if step is not None or mirror_axes is not None:
            raise InputError("--fast sets the step and the mirror axes itself; leave out --step and --mirror-axes")
        return dict(FAST_MODE["options"])
    if step is not None and not 0 < step <= 1:
        raise InputError(f"--step must be in (0, 1], got {step}")
    return {"step": 0.5 if step is None else step, "mirror_axes": mirror_axes}


def _score_against_reference(reference, output, cases, plans) -> None:
    """Score the predictions against ``reference`` and draw the pictures (the input's channel 0 underneath)."""
    from segforge.evaluation.pictures import score_and_draw
    from segforge.inference.inputs import read_case

    by_name = {case.name: case for case in cases}

    def image_of(name: str):
        case = by_name.get(name)
        return None if case is None else read_case(case)[0][0]

    scheme = plans.label_scheme  # labels or regions; the ignore label's voxels are not scored
    names = {v: k for k, v in scheme.classes if v != 0}
    score_and_draw(reference, output, Path(output) / "pictures", image_of, labels=scheme.targets, label_names=names,
                   ignore_label=scheme.ignore_label)


def _axes(axes) -> str:
    return "off" if not axes else "axes " + ",".join("zyx"[a] if len(axes) <= 3 else str(a) for a in axes)


def _postprocessing(predictor, wanted: bool) -> str:
    if not wanted:
        return "off (--no-postprocessing)"
    if predictor.postprocessing is None:
        return "none decided (segforge_find_best_configuration decides it)"
    names = {v: k for k, v in predictor.plans.labels.items() if isinstance(v, int)}
    return predictor.postprocessing.describe(names)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        from segforge.errors import InputError
        from segforge.inference.inputs import discover_cases
        from segforge.inference.model import ModelFolder, resolve_model_folder
        from segforge.inference.outputs import prepare_output_folder
        from segforge.inference.pipeline import predict_cases
        from segforge.inference.ensemble import chosen_model, create_chosen_predictor

        speed = speed_options(args.fast, args.step, args.mirror_axes)
        if args.prefetch < 0:
            raise InputError(f"--prefetch must be 0 or more, got {args.prefetch}")
        execution = execution_settings(args, args.num_processes)
        if execution.num_gpus and args.device not in (None, "cuda"):
            raise InputError(f"--num-gpus puts one model on each GPU; it does not go with --device {args.device}")
        start = time.perf_counter()
        # with only a dataset named: the model segforge_find_best_configuration chose, when it ran
        chosen = chosen_model(args.dataset, args.model_folder, args.configuration, args.trainer)
        if chosen is not None:
            folders, ensemble = chosen
            chosen_by = " (best_configuration.json)"
        else:
            folders, ensemble, chosen_by = [resolve_model_folder(args.dataset, args.model_folder, args.configuration,
                                                                 args.trainer)], None, ""
        model = ModelFolder.open(folders[0])
        cases = discover_cases(args.input, model.plans.num_channels, args.series_uid, args.output_format)
        prepare_output_folder(args.input, args.output, cases)  # before any work: a bad -o is refused at once
        if args.reference and not Path(args.reference).is_dir():
            raise InputError("--reference must be the folder of the true label maps (CASE.nii.gz)", args.reference)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictor = create_chosen_predictor(
                [model] + folders[1:], ensemble, folds=args.folds, checkpoint=args.checkpoint,
                device=args.device or ("cuda" if execution.num_gpus else None),
                tta=not args.disable_tta, backend=args.backend, bf16=args.bf16, postprocessing=args.postprocessing,
                **speed)
        folder = " + ".join(str(f) for f in folders) + chosen_by
        predictor.progress = sys.stderr.isatty()
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
        if args.save_locator:
            if not hasattr(predictor, "save_locator"):
                raise InputError(f"--save-locator needs a cascade model; {folder} is not one")
            predictor.save_locator = True
        print(f"model {folder} | folds {', '.join(predictor.folds)} | checkpoint {args.checkpoint} | "
              f"device {predictor.device} ({args.backend}{', bf16' if args.bf16 else ''}) | mirroring "
              f"{_axes(predictor.mirror_axes)} | step {predictor.step} | postprocessing "
              f"{_postprocessing(predictor, args.postprocessing)} | "
              f"{len(cases)} case(s) (start-up {time.perf_counter() - start:.1f} s)")
        reports = predict_cases(predictor, cases, args.output, args.save_probabilities, args.skip_existing,
                                prefetch=args.prefetch, execution=execution)
        failed = [r for r in reports if r.status == "failed"]
        done = sum(r.status == "done" for r in reports)
        skipped = sum(r.status == "skipped" for r in reports)
        part = f" (part {execution.part}/{execution.num_parts})" if execution.part is not None else ""
        print(f"{done} predicted, {skipped} skipped, {len(failed)} failed{part} in "
              f"{time.perf_counter() - start:.1f} s")
        for r in failed:
            print(f"{PROG}: failed: {r.name}: {r.reason}", file=sys.stderr)
        if args.reference:
            _score_against_reference(args.reference, args.output, cases, model.plans)
        return 1 if failed else 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
