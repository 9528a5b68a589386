"""Training pictures: ``progress.png``, ``train_example.png``, ``val_pred.png`` / ``val_truth.png``.

Drawn with matplotlib's Agg canvas (no display, no pyplot state) and written atomically.
Batches are numpy: images ``(B, C, *spatial)``, labels ``(B, *spatial)``; 3D samples are
shown at the ``z`` slice with most foreground in the reference labels.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from segforge.io.atomic import temporary_path
from segforge.training.progress_log import TrainingLog

__all__ = ["plot_progress", "plot_batch", "choose_slices", "save_figure", "LABEL_COLOURS"]

LABEL_COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 72) -> None:
    FigureCanvasAgg(fig)
    with temporary_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")


def plot_progress(log: TrainingLog, class_names: list[str], path: str | os.PathLike) -> None:
    """Four panels over epochs: losses, pseudo-Dice per class with mean and EMA, learning rate, epoch time."""
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 2)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.95, hspace=0.3, wspace=0.18)
    e = np.asarray(log.column("epoch"))
    ax = axes[0, 0]
    ax.plot(e, log.column("train_loss"), label="train loss")
    ax.plot(e, log.column("val_loss"), label="val loss")
    ax.set_title("loss")
    ax.legend()
    ax = axes[0, 1]
    dice = np.asarray(log.column("dice"), dtype=float).reshape(len(e), -1)
    for k, name in enumerate(class_names):
        ax.plot(e, dice[:, k], lw=1, alpha=0.7, label=name)
    ax.plot(e, log.column("mean_dice"), "k:", label="mean")
    ax.plot(e, log.column("ema_dice"), "k-", lw=2, label="mean (EMA)")
    ax.set_ylim(0, 1)
    ax.set_title("pseudo-Dice (validation patches)")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.plot(e, log.column("lr"))
    ax.set_title("learning rate")
    ax = axes[1, 1]
    ax.plot(e, log.column("epoch_seconds"))
    ax.set_title("epoch time (s)")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def choose_slices(labels: np.ndarray) -> list[int]:
    """Per sample of ``labels`` (B, z, y, x): the ``z`` with most foreground (the middle one if none)."""
    out = []
    for lab in labels:
        counts = (lab > 0).reshape(lab.shape[0], -1).sum(1)
        out.append(int(np.argmax(counts)) if counts.max() > 0 else lab.shape[0] // 2)
    return out


def plot_batch(images: np.ndarray, labels: np.ndarray, path: str | os.PathLike, title: str,
               slices: list[int] | None = None, num_classes: int | None = None, max_samples: int = 4) -> None:
    """Channel 0 of up to ``max_samples`` samples in grey, labels as coloured overlay (top) and image only (bottom).

    ``slices`` picks the ``z`` slice per 3D sample (default :func:`choose_slices` of ``labels``).
    """
    n = min(len(images), max_samples)
    if images.ndim == 5:
        slices = slices if slices is not None else choose_slices(labels)
        img = np.stack([images[i, 0, slices[i]] for i in range(n)])
        lab = np.stack([labels[i, slices[i]] for i in range(n)])
    else:
        img, lab = images[:n, 0], labels[:n]
    k = int(num_classes or max(2, int(lab.max()) + 1))
    cmap = ListedColormap(["none"] + [LABEL_COLOURS[i % len(LABEL_COLOURS)] for i in range(k - 1)])
    fig = Figure(figsize=(2.6 * n, 5.4))
    axes = np.asarray(fig.subplots(2, n)).reshape(2, n)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, hspace=0.08, wspace=0.05)
    for i in range(n):
        for row in range(2):
            ax = axes[row, i]
            ax.imshow(img[i], cmap="gray", interpolation="nearest")
            if row == 0:
                masked = np.ma.masked_equal(lab[i], 0)
                ax.imshow(masked, cmap=cmap, vmin=0, vmax=k - 1, alpha=0.5, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        if slices is not None and images.ndim == 5:
            axes[0, i].set_title(f"z = {slices[i]}", fontsize=9)
    fig.suptitle(title)
    save_figure(fig, path)
