"""Test-set pictures: prediction against truth on the slices through the largest structures of each case.

What a user looks at first after predicting held-out scans with their labels
(``segforge_predict ... --reference LABELS`` or ``segforge_evaluate ... --pictures DIR``): one
``CASE.png`` per scored case. Columns are axial (``z``) slices, one per structure among the
``max_structures`` largest in the reference (the slice where that structure has the most
voxels; a structure absent from the reference is placed by the prediction); the top row
shows the truth, the bottom row the prediction, as coloured overlays on the image (channel 0,
windowed to its 0.5-99.5 percentiles) or on black when no image is given. The title holds
the case's Dice per label and their mean, from the evaluation summary.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable

import numpy as np

from segforge.errors import InputError
from segforge.io.image import is_image_file, read_image, read_label, split_ending
from segforge.io.labels import target_name

__all__ = ["choose_structure_slices", "draw_case_picture", "case_title", "draw_test_pictures", "images_in_folder",
           "score_and_draw"]

ImageLoader = Callable[[str], "np.ndarray | None"]  # case name -> (Z, Y, X) image on the label's grid, or None


def choose_structure_slices(reference: np.ndarray, prediction: np.ndarray,
                            max_structures: int = 3) -> list[tuple[int, int]]:
    """``[(z, label), ...]`` sorted by ``z``: for each of the ``max_structures`` largest labels of
    ``reference`` (then of ``prediction`` for labels only it holds), the ``z`` where that label has
    most voxels; a slice chosen twice is kept once (for the larger structure). No foreground at all:
    the middle slice, label 0."""
    sizes = {}
    for source in (reference, prediction):
        values, counts = np.unique(source, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist()):
            if v != 0 and v not in sizes:
                sizes[v] = (source is reference, c)
    largest = sorted(sizes, key=lambda v: (not sizes[v][0], -sizes[v][1], v))[:max_structures]
    chosen: dict[int, int] = {}
    for label in largest:
        source = reference if sizes[label][0] else prediction
        per_slice = (source == label).reshape(source.shape[0], -1).sum(1)
        chosen.setdefault(int(np.argmax(per_slice)), label)
    if not chosen:
        return [(reference.shape[0] // 2, 0)]
    return sorted(chosen.items())


def draw_case_picture(reference: np.ndarray, prediction: np.ndarray, path: str | os.PathLike, title: str,
                      image: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0),
                      label_names: dict[int, str] | None = None, max_structures: int = 3) -> list[int]:
    """Draw one case (arrays ``(Z, Y, X)`` on one grid) into ``path``; returns the slices drawn."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from segforge.training.plots import LABEL_COLOURS, save_figure

    slices = choose_structure_slices(reference, prediction, max_structures)
    k = int(max(reference.max(initial=0), prediction.max(initial=0))) + 1
    colours = [LABEL_COLOURS[i % len(LABEL_COLOURS)] for i in range(max(k - 1, 1))]
    cmap = ListedColormap(colours)
    if image is not None:
        lo, hi = np.percentile(image, [0.5, 99.5])
        hi = hi if hi > lo else lo + 1
    aspect = float(spacing[1]) / float(spacing[2])  # y over x: pixels drawn at their true proportions
    n = len(slices)
    fig = Figure(figsize=(3.2 * n + 0.6, 6.8))
    axes = np.asarray(fig.subplots(2, n)).reshape(2, n)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.1, top=0.86, hspace=0.1, wspace=0.04)
    names = label_names or {}
    for column, (z, label) in enumerate(slices):
        for row, labels in enumerate((reference, prediction)):
            ax = axes[row, column]
            if image is not None:
                ax.imshow(image[z], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest", aspect=aspect)
            else:
                ax.imshow(np.zeros(labels.shape[1:]), cmap="gray", vmin=0, vmax=1, aspect=aspect)
            overlay = np.ma.masked_equal(labels[z], 0)
            ax.imshow(overlay, cmap=cmap, vmin=0.5, vmax=len(colours) + 0.5, alpha=0.55, interpolation="nearest",
                      aspect=aspect)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel("truth" if row == 0 else "prediction")
        where = f"through {names.get(label, f'label {label}')}" if label else "no structure"
        axes[0, column].set_title(f"z = {z} ({where})", fontsize=9)
    present = sorted((set(np.unique(reference).tolist()) | set(np.unique(prediction).tolist())) - {0})
    fig.legend(handles=[Patch(color=colours[(v - 1) % len(colours)], label=names.get(v, f"label {v}"))
                        for v in present], loc="lower center", ncol=max(1, len(present)), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=11)
    save_figure(fig, path)
    return [z for z, _ in slices]


def case_title(case: str, metrics: dict, label_names: dict[int, str] | None = None) -> str:
    """``"case_010: Dice liver 0.931, kidney 0.850 (mean 0.890)"`` from a case's metrics; labels absent
    from both files (Dice undefined) are left out."""
    names = label_names or {}
    parts, values = [], []
    for label, m in sorted(metrics.items(), key=lambda kv: [int(v) for v in kv[0].split(",")]):
        dice = m.get("dice")
        if dice is None or (isinstance(dice, float) and math.isnan(dice)):
            continue
        parts.append(f"{target_name(names, label, f'label {label}')} {dice:.3f}")
        values.append(dice)
    if not parts:
        return f"{case}: no structure in truth or prediction"
    mean = f" (mean {np.mean(values):.3f})" if len(values) > 1 else ""
    return f"{case}: Dice {', '.join(parts)}{mean}"


def draw_test_pictures(summary: dict, output_folder: str | os.PathLike, image_of: ImageLoader | None = None,
                       label_names: dict[int, str] | None = None, max_structures: int = 3,
                       log: Callable[[str], None] = print) -> list[Path]:
    """``output_folder/CASE.png`` for every scored case of an evaluation ``summary``
    (:func:`~segforge.evaluation.evaluate.evaluate_folders`'s); returns the files written.

    ``image_of(case)``: the case's image ``(Z, Y, X)`` on the grid of its labels (None: no image)."""
    folder = Path(output_folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for case in summary["cases"]:
        reference, geometry = read_label(case["reference"])
        prediction, _ = read_label(case["prediction"])
        image = image_of(case["case"]) if image_of is not None else None
        if image is not None and tuple(image.shape) != tuple(reference.shape):
            log(f"{case['case']}: image shape {tuple(image.shape)} differs from its labels' "
                f"{tuple(reference.shape)}; drawn without it")
            image = None
        path = folder / f"{case['case']}.png"
        draw_case_picture(reference, prediction, path, case_title(case["case"], case["metrics"], label_names),
                          image, geometry.spacing, label_names, max_structures)
        written.append(path)
    return written


def images_in_folder(folder: str | os.PathLike) -> ImageLoader:
    """The image of case ``CASE`` in ``folder``: ``CASE_0000<ending>`` (channel 0, nnU-Net naming) or
    ``CASE<ending>``; None when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("images folder not found", folder)
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if is_image_file(p):
            files.setdefault(split_ending(p)[0], p)

    def image_of(case: str) -> np.ndarray | None:
        path = files.get(f"{case}_0000") or files.get(case)
        if path is None:
            return None
        return read_image(path)[0]

    return image_of


def score_and_draw(reference_folder: str | os.PathLike, prediction_folder: str | os.PathLike,
                   pictures_folder: str | os.PathLike, image_of: ImageLoader | None = None, labels=None,
                   label_names: dict[int, str] | None = None, summary_file: str | os.PathLike | None = None,
                   num_processes: int = 1, log: Callable[[str], None] = print, ignore_label: int | None = None
                   ) -> dict:
    """Evaluate ``prediction_folder`` against ``reference_folder`` (``summary.json`` to ``summary_file``,
    default beside the predictions), print the table, draw :func:`draw_test_pictures` into
    ``pictures_folder``; returns the summary. What ``segforge_predict --reference`` runs."""
    from segforge.evaluation.evaluate import evaluate_folders, format_table, save_summary

    summary = evaluate_folders(reference_folder, prediction_folder, labels, num_processes=num_processes,
                               ignore_label=ignore_label)
    summary_file = Path(summary_file) if summary_file else Path(prediction_folder) / "summary.json"
    save_summary(summary, summary_file)
    log(format_table(summary, label_names))
    drawn = draw_test_pictures(summary, pictures_folder, image_of, label_names, log=log)
    log(f"summary written to {summary_file}; {len(drawn)} picture(s) of prediction vs truth in {pictures_folder}")
    return summary
