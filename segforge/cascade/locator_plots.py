"""Pictures a person looks at to judge the locator.

* ``heatmap_sigma_<s>.png``: a training image with the Gaussian target of that curriculum
  step, three orthogonal slices through the centroid;
* ``losses.png``: train/validation loss per epoch, the sigma on a second axis;
* ``metrics.png``: validation centroid error (mm), heatmap Dice, KL and MSE per epoch;
* ``val_locator_<case>.png``: predicted heatmap with predicted (x) and true (+) centroid on
  the locator grid and on the full-resolution image, and the resulting crop with the
  target outlined.
"""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from segforge.io.atomic import temporary_path

__all__ = ["plot_heatmap_target", "plot_losses", "plot_metrics", "plot_validation_case"]

_VIEWS = (("axial (z)", 0), ("coronal (y)", 1), ("sagittal (x)", 2))


def _figure(n_rows: int, n_cols: int, figsize, squeeze: bool = True):
    """A figure on its own Agg canvas (no pyplot state: safe to draw in a background thread) and its axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(n_rows, n_cols, squeeze=squeeze)


def _save(fig, path) -> None:
    with temporary_path(path) as tmp:  # keeps the .png suffix savefig reads the format from
        fig.savefig(tmp, dpi=72, format="png")


def _slice(volume: np.ndarray, axis: int, index: float) -> np.ndarray:
    i = int(np.clip(round(float(index)), 0, volume.shape[axis] - 1))
    return np.take(volume, i, axis=axis)


def _point_2d(point, axis: int):
    """(z, y, x) -> (column, row) in the slice image of ``axis``."""
    rest = [a for a in range(3) if a != axis]
    return point[rest[1]], point[rest[0]]


def _show_row(axes, image, overlay, pred, true, centre, title, outline=None):
    for ax, (name, axis) in zip(axes, _VIEWS):
        ax.imshow(_slice(image, axis, centre[axis]), cmap="gray")
        if overlay is not None:
            ax.imshow(_slice(overlay, axis, centre[axis]), cmap="hot", alpha=0.45, vmin=0, vmax=1)
        if outline is not None:
            sl = _slice(outline, axis, centre[axis])
            if sl.any():
                ax.contour(sl.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        if true is not None:
            ax.plot(*_point_2d(true, axis), "c+", markersize=10, mew=2)
        if pred is not None:
            ax.plot(*_point_2d(pred, axis), "rx", markersize=8, mew=2)
        ax.set_title(f"{title} {name}", fontsize=8)
        ax.axis("off")


def plot_heatmap_target(path, image: np.ndarray, heatmap: np.ndarray, centroid, sigma: float) -> None:
    """``image``, ``heatmap`` ``(z, y, x)`` on the same grid; ``centroid`` ``(3,)`` voxels."""
    fig, axes = _figure(1, 3, (9, 3.2))
    _show_row(axes, image, heatmap, None, centroid, centroid, f"target sigma {sigma:.2f} vox,")
    _save(fig, path)


def _sigma_changes(ax, rows):
    for prev, row in zip(rows, rows[1:]):
        if row["sigma"] != prev["sigma"]:
            ax.axvline(row["epoch"], color="gray", lw=0.6, ls=":")


def plot_losses(path, rows: list[dict]) -> None:
    """``rows``: log.csv rows (``epoch``, ``train_loss``, ``val_loss``, ``sigma``)."""
    epochs = [r["epoch"] for r in rows]
    fig, ax = _figure(1, 1, (7, 4))
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in rows], label="val loss")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (at the epoch's sigma)")
    _sigma_changes(ax, rows)
    ax2 = ax.twinx()
    ax2.step(epochs, [r["sigma"] for r in rows], where="post", color="k", lw=0.8, label="sigma")
    ax2.set_ylabel("sigma (locator voxels)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("locator losses; dotted lines: sigma shrinks", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_metrics(path, rows: list[dict]) -> None:
    epochs = [r["epoch"] for r in rows]
    fig, axes = _figure(1, 3, (11, 3.5))
    axes[0].plot(epochs, [r["centroid_error_mean_mm"] for r in rows], label="mean")
    axes[0].plot(epochs, [r["centroid_error_median_mm"] for r in rows], label="median")
    axes[0].plot(epochs, [r["centroid_error_max_mm"] for r in rows], label="max", alpha=0.6)
    axes[0].set_ylabel("val centroid error (mm)")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [r["heatmap_dice"] for r in rows])
    axes[1].set_ylabel("heatmap Dice (fuzzy, vs target)")
    axes[1].set_ylim(0, 1)
    axes[2].plot(epochs, [r["val_mse"] for r in rows], label="MSE")
    axes[2].plot(epochs, [r["val_kl"] for r in rows], label="KL")
    axes[2].set_yscale("log")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("epoch")
        _sigma_changes(ax, rows)
    fig.tight_layout()
    _save(fig, path)


def plot_validation_case(path, case: str, image, heatmap, pred, true, fullres=None, crop=None) -> None:
    """One validation case.

    ``image``/``heatmap`` ``(z, y, x)`` locator grid, ``pred``/``true`` ``(3,)`` voxels there.
    ``fullres``: optional ``(image, pred, true)`` on the full-resolution grid; ``crop``:
    optional ``(image crop, label crop, centre)`` of the cascade crop around ``pred``, shown
    through ``centre`` (the true centroid in crop voxels).
    """
    n_rows = 1 + (fullres is not None) + (crop is not None)
    fig, axes = _figure(n_rows, 3, (9, 3.1 * n_rows), squeeze=False)
    _show_row(axes[0], image, heatmap, pred, true, pred, "locator grid,")
    r = 1
    if fullres is not None:
        full_image, full_pred, full_true = fullres
        _show_row(axes[r], full_image, None, full_pred, full_true, full_pred, "full res,")
        r += 1
    if crop is not None:
        crop_image, crop_label, centre = crop
        _show_row(axes[r], crop_image, None, None, None, centre, "crop,", outline=crop_label > 0)
    fig.suptitle(f"{case}: x predicted, + true centroid", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
