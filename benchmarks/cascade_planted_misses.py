"""Planted misses for a trained cascade: does it ever cut a target away without saying so?

    python benchmarks/cascade_planted_misses.py -m MODEL_FOLDER -i imagesTs -l labelsTs
    python benchmarks/cascade_planted_misses.py --smoke

Each held-out case is changed in four ways the locator did not see in training, and predicted
by the cascade with its safeguards (the default) and without them (the plain crop around the
located peak, ``predictor.guard = False``):

* ``as is``: the case unchanged;
* ``corner``: the volume rolled so the target's centre lies 12 voxels from a corner;
* ``two targets``: the target's box (image and label) copied to the point mirrored through the
  image centre, so the case holds two;
* ``none``: the target's voxels replaced by the median of a shell around it, the label emptied.

Per variant: the cascade's decision (crop / grown crop / whole volume, from ``CASE_cascade.json``'s
record), the Dice of the foreground against the planted label (for ``none``: the voxels painted),
and whether a miss was silent (Dice < 0.5 while the decision was a plain crop not judged
unconfident). A half-found pair of targets (Dice about 0.6) is not counted as silent: read the Dice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _common import base_parser, write_result

VARIANTS = ("as is", "corner", "two targets", "none")


def plant(image: np.ndarray, label: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """``image (Z, Y, X)`` and ``label`` changed as ``variant`` says (see the module docstring)."""
    from scipy import ndimage

    image, label = image.copy(), label.copy()
    fg = label > 0
    if variant == "as is" or not fg.any():
        return image, label
    centre = np.argwhere(fg).mean(0)
    shape = np.asarray(label.shape)
    if variant == "corner":
        goal = np.where(centre < shape / 2, 12, shape - 13)  # the nearest corner, 12 voxels in
        shift = tuple(int(round(g - c)) for g, c in zip(goal, centre))
        return np.roll(image, shift, axis=(0, 1, 2)), np.roll(label, shift, axis=(0, 1, 2))
    if variant == "two targets":
        box = [slice(int(a), int(b) + 1) for a, b in zip(np.argwhere(fg).min(0), np.argwhere(fg).max(0))]
        size = np.asarray([s.stop - s.start for s in box])
        start = np.clip(np.round(shape - 1 - centre - size / 2).astype(int), 0, shape - size)
        dest = tuple(slice(int(a), int(a + n)) for a, n in zip(start, size))
        mask = fg[tuple(box)]
        image[dest][mask] = image[tuple(box)][mask]
        label[dest][mask] = label[tuple(box)][mask]
        return image, label
    if variant == "none":
        shell = ndimage.binary_dilation(fg, iterations=3) & ~ndimage.binary_dilation(fg, iterations=1)
        image[ndimage.binary_dilation(fg, iterations=1)] = np.median(image[shell])
        return image, np.zeros_like(label)
    raise ValueError(variant)


def main(argv=None) -> int:
    parser = base_parser(__doc__, "cascade_planted_misses")
    parser.add_argument("-m", "--model-folder", type=Path, help="CascadeSegmentationTrainer__cascade_fullres folder")
    parser.add_argument("-i", "--images", type=Path)
    parser.add_argument("-l", "--labels", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    if args.smoke:
        args.model_folder, args.images, args.labels = _smoke_model(args.workdir)
    if not (args.model_folder and args.images and args.labels):
        parser.error("-m, -i and -l are required (or --smoke)")
    from segforge.inference import create_predictor
    from segforge.inference.inputs import discover_cases, read_case
    from segforge.io.image import read_image

    predictor = create_predictor(args.model_folder, device="cpu", tta=False)
    torch.set_num_threads(args.threads)
    rows = []
    for case in discover_cases(args.images, predictor.plans.num_channels):
        image, geometry = read_case(case)
        truth, _ = read_image(args.labels / f"{case.name}{case.ending}")
        for variant in VARIANTS:
            planted, label = plant(image[0], truth, variant)
            for guard in (True, False):
                predictor.guard = guard
                labels, _ = predictor.predict_case(planted[None], geometry)
                record = predictor.last_cascade_record or {}
                fg, ref = labels > 0, label > 0
                dice = (2 * (fg & ref).sum() / (fg.sum() + ref.sum())) if ref.any() else None
                # silent: a target lost (Dice under 0.5) while the cascade said nothing (a plain crop, not judged
                # unconfident; the plain crop of guard=False never judges)
                silent = bool(ref.any() and dice < 0.5 and record.get("decision", "crop") == "crop"
                              and record.get("confident") is not False)
                rows.append({"case": case.name, "variant": variant, "safeguards": guard,
                             "decision": record.get("decision", "crop"), "confident": record.get("confident"),
                             "reasons": record.get("reasons", []), "dice": None if dice is None else float(dice),
                             "painted_voxels": int(fg.sum()), "silent_miss": silent})
                r = rows[-1]
                print(f"{case.name:<12}{variant:<13}{'guarded' if guard else 'plain':<9}{r['decision']:<14}"
                      f"Dice {'-' if dice is None else f'{dice:.3f}':<7} painted {r['painted_voxels']:<7}"
                      f"{'SILENT MISS' if silent else ''}", flush=True)
    summary = {}
    for guard in (True, False):
        for variant in VARIANTS:
            sel = [r for r in rows if r["safeguards"] == guard and r["variant"] == variant]
            dice = [r["dice"] for r in sel if r["dice"] is not None]
            summary[f"{'guarded' if guard else 'plain'} / {variant}"] = {
                "mean_dice": float(np.mean(dice)) if dice else None,
                "silent_misses": sum(r["silent_miss"] for r in sel),
                "decisions": sorted({r["decision"] for r in sel})}
    for key, value in summary.items():
        print(f"{key:<28} {value}")
    write_result(args.out or args.workdir / "cascade_planted_misses.json", {"rows": rows, "summary": summary},
                 f"{len(rows)} predictions; silent misses guarded "
                 f"{sum(v['silent_misses'] for k, v in summary.items() if k.startswith('guarded'))}, plain "
                 f"{sum(v['silent_misses'] for k, v in summary.items() if k.startswith('plain'))}")
    if args.smoke and not args.keep:
        from _common import remove_pipeline_folders

        remove_pipeline_folders(args.workdir)
    return 0


def _smoke_model(workdir: Path):
    """A cascade trained for a few iterations on tiny small-target data (runs the script, measures nothing)."""
    from _common import prepare_training_data, train_briefly, use_workdir

    from segforge import paths

    env = use_workdir(workdir)
    name, plans = prepare_training_data(992, 2, (48, 96, 96), 0.1, num_processes=1, num_test=1, kind="small_target")
    if "cascade_fullres" not in plans.configurations:
        raise SystemExit(f"the planner did not plan a cascade: {plans.why.get('cascade')}")
    train_briefly(name, "cascade_fullres", env, workdir / "train.log", iters_per_epoch=2, num_workers=0)
    raw = paths.raw_dataset_dir(name)
    return (paths.results_dataset_dir(name) / "CascadeSegmentationTrainer__cascade_fullres", raw / "imagesTs",
            raw / "labelsTs")


if __name__ == "__main__":
    sys.exit(main())
