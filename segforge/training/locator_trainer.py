"""The cascade's first stage: a U-Net regressing a Gaussian heatmap at the target's centroid.

Only what is specific to locating lives here; the loop, checkpoints, log, budget, precision
and files are :class:`~segforge.training.trainer.Trainer`'s. Results:
``segforge_results/DatasetNNN_Name/LocatorTrainer__locator/fold_K/`` with the common
checkpoint format (plus ``curriculum``, the sigma schedule's state, ``canvas``,
``n_heatmaps`` and the batch generator's state), ``log.csv`` (one row per epoch, sigma
included), the plots of :mod:`segforge.cascade.locator_plots`, and ``locator_validation.json``:
the validation centroid error in mm that the cascade segmenter uses as its crop jitter.

One epoch = ``iters_per_epoch`` batches of whole images (random placement, light
augmentation, made in the loader's workers) against heatmap targets of the current sigma
(made on the device), then up to ``val_iters`` validation cases, each once and centred, at the
same sigma; the validation loss drives the sigma curriculum, the median centroid error picks
``checkpoint_best.pt``. Optimiser by default Adam at 3e-3 (regression of a small blob with SGD's
high learning rate tends to collapse to the all-zero map), its poly decay spread over the time
budget when there is one.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import torch.nn.functional as F

from segforge.cascade import locator_plots
from segforge.cascade.curriculum import SigmaCurriculum
from segforge.cascade.heatmaps import heatmap_batch, heatmap_targets
from segforge.cascade.locate import centroid_errors, heatmap_from_output, summarise_errors
from segforge.cascade.safeguard import confidence_radius, heatmap_peak_value, heatmap_statistics, reference_statistics
from segforge.cascade.locator_data import (
    LocatorBatches,
    centred_offset,
    heatmap_channels,
    load_locator_cases,
    locator_canvas,
    place_on_canvas,
)
from segforge.data import make_loader, worker_seeds
from segforge.errors import InputError
from segforge.networks import build_network
from segforge.networks.unet import deep_supervision_scales
from segforge.training.losses import (
    DeepSupervisionLoss,
    heatmap_kl_loss,
    heatmap_mse_loss,
    in_graph,
    relative_heatmap_mse,
)
from segforge.training.reporting import write_json
from segforge.training.trainer import Trainer

__all__ = ["LocatorTrainer", "LOCATOR_VALIDATION_FILE"]

LOCATOR_VALIDATION_FILE = "locator_validation.json"
_COLUMNS = ["epoch", "sigma", "train_loss", "val_loss", "val_mse", "val_kl", "heatmap_dice", "centroid_error_mean_mm",
            "centroid_error_median_mm", "centroid_error_max_mm", "lr", "epoch_seconds", "iters_per_second"]


class LocatorTrainer(Trainer):
    """Train one fold of a ``locator`` configuration; :meth:`run` does everything."""

    name = "LocatorTrainer"
    configuration_kind = "locator"
    default_optimizer = "adam"
    best_metric = "centroid_error_median_mm"
    best_metric_label = "median validation centroid error"
    higher_is_better = False
    lr_spans_time_budget = True
    refused_options = {
        "augmentation": "the locator sees whole images with its own light augmentation (cascade/locator_data.py)",
        "ema_momentum": "the locator keeps its best checkpoint by the median centroid error, not an EMA pseudo-Dice",
        "val_plot_every": "the locator draws its validation cases once, after training",
        "mixup": "a mixture of two heatmap targets has two peaks, not a centroid to locate",
        "mixup_alpha": "the locator does not mix samples (--mixup)",
        "pseudo_labels": "the locator learns centroids from true labels only",
        "pseudo_weight": "the locator takes no pseudo-labelled cases (--pseudo-labels)",
    }

    def check_configuration(self) -> None:
        super().check_configuration()
        if self.configuration.locator is None:
            raise InputError(f"configuration {self.configuration.name!r} has no locator settings; re-plan")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.settings = self.configuration.locator
        # label values the heatmaps are made of (not the ignore label; a region's values)
        self.classes = heatmap_channels({str(v): v for v in self.plans.label_scheme.foreground_values})
        self.n_heatmaps = 1 if self.settings.target == "union" else len(self.classes)
        self.result: dict | None = None  # locator_validation.json's content after run()
        if self.augment_on == "gpu" and self.options.augment_on == "gpu":
            self.log("the locator's light whole-image augmentation runs in its loader workers (--augment-on gpu "
                     "applies to the patch trainers)")
        self.augment_on = "cpu"

    # --- set-up --------------------------------------------------------------------------------
    def build_network(self) -> torch.nn.Module:
        return build_network(self.configuration, self.plans.num_channels, self.n_heatmaps)

    def setup(self) -> None:
        target = self.settings.target
        self.train_data = load_locator_cases(self.data_folder, self.train_cases, self.classes, target)
        self.val_data = load_locator_cases(self.data_folder, self.val_cases, self.classes, target)
        self.canvas = locator_canvas(self.configuration, [c.data.shape[1:] for c in self.train_data + self.val_data])
        self.scales = deep_supervision_scales(self.configuration.network)
        trivial = None if self.settings.loss == "kl" else 1.0  # relative MSE of the all-zero map
        self.curriculum = SigmaCurriculum.from_settings(self.settings, trivial_loss=trivial)
        self.loss = DeepSupervisionLoss(heatmap_kl_loss if self.settings.loss == "kl" else relative_heatmap_mse,
                                        keep_all_outputs=self.dist.enabled)
        self.batches = LocatorBatches(self.train_data, self.canvas, self.batch_size,
                                      self.settings.symmetric, seed=self.rank_seed(self.options.seed))
        self._plotted_sigmas: set[float] = set()

    def make_training_loader(self):
        """Augmented whole-image batches, made in ``num_workers`` processes (in this one with 0)."""
        n = self.num_workers
        return make_loader(self.batches, None, n, worker_seeds(self.options.seed, self.start_epoch, n, 0, self.dist.rank),
                           self.device.type == "cuda")

    # --- one step ------------------------------------------------------------------------------
    def targets(self, centroids: torch.Tensor, sigma: float) -> torch.Tensor:
        """Heatmaps ``(B, K, *canvas)`` on the device for centroids ``(B, K, 3)`` (NaN: absent)."""
        return heatmap_batch(self.canvas, centroids, sigma, self.configuration.spacing)

    def scaled_targets(self, target: torch.Tensor) -> list[torch.Tensor]:
        """The target at every deep-supervision scale (average-pooled), full resolution first."""
        return [target if all(v == 1 for v in f) else F.avg_pool3d(target, f, f) for f in self.scales]

    def training_loss(self, batch: dict) -> torch.Tensor:
        target = self.targets(batch["target"], self.curriculum.sigma)
        out = self.network(batch["data"])
        unused = []
        if self.settings.loss == "kl" and isinstance(out, (list, tuple)):
            out, unused = out[:1], out[1:]  # KL on coarse logits adds little; the full-resolution map matters
        loss = self.loss(out, self.scaled_targets(target))
        return loss + in_graph(unused) if self.dist.enabled else loss

    # --- epochs --------------------------------------------------------------------------------
    def before_epoch(self, epoch: int) -> None:
        sigma = self.curriculum.sigma
        if self.options.plots and sigma not in self._plotted_sigmas:
            self._plotted_sigmas.add(sigma)
            self.plot_target(sigma)

    def validate(self, epoch: int) -> dict:
        """Metrics at the epoch's sigma over (at most ``val_iters``) validation cases; then the curriculum moves."""
        sigma = self.curriculum.sigma
        metrics, _ = self.evaluate_cases(self.val_data[: self.val_iters], sigma)
        metrics = self.dist.broadcast_object(metrics)  # every process validated alike; rank 0's numbers move all
        self.curriculum.update(epoch, metrics["val_loss"])
        return {"sigma": sigma, **metrics}

    def evaluate_cases(self, cases, sigma: float) -> tuple[dict, list[dict]]:
        """Loss/metrics at ``sigma`` over ``cases`` (each once, centred), and the per-case centroids."""
        self.network.eval()
        per_case, mse, kl, dice, losses = [], [], [], [], []
        with torch.inference_mode(), self.autocast():
            for case in cases:
                offset = centred_offset(case.data.shape[1:], self.canvas)
                x = torch.from_numpy(place_on_canvas(np.asarray(case.data), self.canvas, offset))[None].to(self.device)
                moved = [None if c is None else c + offset for c in case.centroids]
                target = torch.from_numpy(heatmap_targets(self.canvas, moved, sigma, self.configuration.spacing))
                target = target[None].to(self.device)
                raw = self.network(x)
                raw = (raw[0] if isinstance(raw, (list, tuple)) else raw).float()
                losses.append(float(self.loss(raw, target)))
                pred = heatmap_from_output(raw, self.settings.loss)
                shown = pred if self.settings.loss == "mse" else pred / pred.flatten(2).amax(-1)[..., None, None, None]
                mse.append(float(heatmap_mse_loss(shown, target)))
                kl.append(float(heatmap_kl_loss(torch.log(pred.clamp_min(1e-8)), target)))
                p = shown.clamp(0, 1)
                dice.append(float(2 * torch.minimum(p, target).sum() / (p.sum() + target.sum()).clamp_min(1e-8)))
                heat = shown[0].cpu().numpy()
                sl = tuple(slice(int(o), int(o) + n) for o, n in zip(offset, case.data.shape[1:]))
                heat = heat[(slice(None), *sl)]
                per_case.append(centroid_errors(case, heat))
                mean = heat.mean(axis=0)
                per_case[-1]["heatmap_statistics"] = heatmap_statistics(
                    mean, confidence_radius(sigma), raw_peak=heatmap_peak_value(mean, self.settings.loss))
        scored = [r for r in per_case if r["error_mm"] is not None]
        summary = summarise_errors([r["error_mm"] for r in scored], [r["error_zyx_mm"] for r in scored])
        metrics = {
            "val_loss": float(np.mean(losses)), "val_mse": float(np.mean(mse)), "val_kl": float(np.mean(kl)),
            "heatmap_dice": float(np.mean(dice)),
            "centroid_error_mean_mm": summary["mean_mm"], "centroid_error_median_mm": summary["median_mm"],
            "centroid_error_max_mm": summary["max_mm"],
        }
        return metrics, per_case

    def after_training(self) -> None:
        """Validation centroid errors of the final network, every validation case -> ``locator_validation.json``."""
        _, per_case = self.evaluate_cases(self.val_data, self.curriculum.sigma)
        scored = [r for r in per_case if r["error_mm"] is not None]
        summary = summarise_errors([r["error_mm"] for r in scored], [r["error_zyx_mm"] for r in scored])
        self.result = {
            "trainer": self.name, "configuration": self.configuration.name, "fold": str(self.fold),
            "checkpoint": "final", "epochs_trained": len(self.history), "final_sigma": self.curriculum.sigma,
            "sigma_steps": self.curriculum.steps, "centroid_error": summary,
            "why": "centroid error of the final locator on this fold's validation cases (world mm); "
                   "the cascade segmenter draws its crop jitter from rms_zyx_mm",
            "cases": [{k: v for k, v in r.items() if k != "heatmap"} for r in per_case],
            "confidence_reference": reference_statistics([r["heatmap_statistics"] for r in per_case]),
            "confidence_radius_voxels": confidence_radius(self.curriculum.sigma),
        }
        if summary["n"]:
            self.log(f"fold {self.fold} locator centroid error: mean {summary['mean_mm']:.2f} mm, median "
                     f"{summary['median_mm']:.2f} mm, max {summary['max_mm']:.2f} mm ({summary['n']} validation cases)")
        if self.writes_files:
            write_json(self.output_folder / LOCATOR_VALIDATION_FILE, self.result)
        if self.options.plots:
            for case, r in list(zip(self.val_data, per_case))[:3]:
                self.plot_validation_case(case, r)

    # --- what a person reads and looks at ------------------------------------------------------
    def epoch_line(self, row: dict) -> str:
        median = row["centroid_error_median_mm"]
        return (f"locator epoch {row['epoch']}/{self.options.epochs - 1}: sigma {row['sigma']:.2f}, train loss "
                f"{row['train_loss']:.4f}, val loss {row['val_loss']:.4f}, centroid error median "
                f"{'n/a' if median is None else f'{median:.2f} mm'}, lr {row['lr']:.3g}, {row['epoch_seconds']:.1f} s, "
                f"{row['iters_per_second']:.2f} it/s")

    def csv_columns(self) -> tuple[list[str], dict[str, list[str]]]:
        return list(_COLUMNS), {}

    def draw_progress(self) -> None:
        if self.options.plots:
            rows = self.history.to_list()
            self.reporter.draw("losses", locator_plots.plot_losses, self.output_folder / "losses.png", rows)
            self.reporter.draw("metrics", locator_plots.plot_metrics, self.output_folder / "metrics.png", rows)

    def plot_target(self, sigma: float) -> None:
        case = self.train_data[0]
        c = next((c for c in case.centroids if c is not None), None)
        if c is None:
            return
        target = heatmap_targets(case.data.shape[1:], [c], sigma, self.configuration.spacing)[0]
        self.reporter.draw(f"target_{sigma}", locator_plots.plot_heatmap_target,
                           self.output_folder / f"heatmap_sigma_{sigma:.2f}.png", np.asarray(case.data[0]), target, c,
                           sigma)

    def plot_validation_case(self, case, result: dict) -> None:
        from segforge.cascade.validation_views import fullres_views

        ch = result["channels"][0]
        true = ch.get("true_voxel")
        fullres, crop = fullres_views(self.plans, case.name, ch["predicted_world"], ch.get("true_world"),
                                      self.configuration.name)
        self.reporter.draw(f"val_{case.name}", locator_plots.plot_validation_case,
                           self.output_folder / f"val_locator_{case.name}.png", case.name, np.asarray(case.data[0]),
                           result["heatmap"][0], np.asarray(ch["predicted_voxel"]),
                           None if true is None else np.asarray(true), fullres, crop)

    # --- state in the checkpoint ---------------------------------------------------------------
    def extra_state(self) -> dict:
        return {"curriculum": self.curriculum.state_dict(), "canvas": list(self.canvas),
                "n_heatmaps": int(self.n_heatmaps),
                "batch_generator": json.dumps(self.batches.rng.bit_generator.state)}  # 128-bit ints: as text

    def load_extra_state(self, checkpoint: dict) -> None:
        self.curriculum.load_state_dict(checkpoint["curriculum"])
        self.batches.rng.bit_generator.state = json.loads(checkpoint["batch_generator"])
        if not self.dist.is_main:  # the checkpoint holds rank 0's stream
            self.batches.rng = np.random.default_rng(self.rank_seed(self.options.seed, self.start_epoch))
        self._plotted_sigmas = {row["sigma"] for row in self.history}
