"""The cascade's first stage: a U-Net regressing a Gaussian heatmap at the target's centroid.

Results: ``segforge_results/DatasetNNN_Name/LocatorTrainer__locator/fold_K/`` with the
generic trainer's checkpoint format (plus ``curriculum``, the sigma schedule's state, and
``canvas``), ``log.csv`` (one row per epoch, sigma included), the plots of
:mod:`segforge.cascade.locator_plots`, and ``locator_validation.json``: the validation
centroid error in mm that the cascade segmenter uses as its crop jitter.

One epoch = ``iters_per_epoch`` batches of whole images (random placement, light
augmentation) against targets of the current sigma, then every validation case once
(centred) at the same sigma; the validation loss drives the sigma curriculum.
Optimiser: Adam with a poly learning-rate decay per iteration, over the time budget when
there is one (regression of a small blob with SGD's
high learning rate tends to collapse to the all-zero map).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from segforge.cascade.curriculum import SigmaCurriculum
from segforge.cascade.grids import effective_spacing, preprocessed_to_world
from segforge.cascade.heatmaps import heatmap_targets
from segforge.cascade.locate import heatmap_from_output, read_centroids
from segforge.cascade.locator_data import (
    LocatorBatches,
    centred_offset,
    load_locator_cases,
    locator_canvas,
    place_on_canvas,
)
from segforge.cascade import locator_plots
from segforge.data.splits import fold_cases, load_or_create_splits
from segforge.errors import InputError
from segforge.io.atomic import temporary_path, write_json_atomic
from segforge.networks import build_network, to_device_layout
from segforge.networks.unet import deep_supervision_scales
from segforge.paths import preprocessed_dataset_dir, raw_dataset_dir, results_dataset_dir
from segforge.planning.plans import Configuration, Plans
from segforge.training.checkpoint import save_checkpoint
from segforge.training.losses import DeepSupervisionLoss, heatmap_kl_loss, heatmap_mse_loss
from segforge.training.schedule import PolyLRSchedule

__all__ = ["LocatorTrainer", "LOCATOR_VALIDATION_FILE", "heatmap_channels", "summarise_errors", "relative_heatmap_mse"]

LOCATOR_VALIDATION_FILE = "locator_validation.json"
PLOT_INTERVAL_S = 30.0  # loss and metric curves are redrawn at most this often (and at the end)
_LOG_FIELDS = [
    "epoch", "sigma", "train_loss", "val_loss", "val_mse", "val_kl", "heatmap_dice",
    "centroid_error_mean_mm", "centroid_error_median_mm", "centroid_error_max_mm", "lr", "epoch_time_s",
]


def relative_heatmap_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`heatmap_mse_loss` divided by the MSE of the all-zero map (``mean(target^2)``).

    A plain MSE of a small blob is reached almost entirely by predicting zeros, and its
    scale changes with sigma; relative to the all-zero answer, 1 means "found nothing" at
    every sigma, so the curriculum's threshold means the same thing at every step.
    """
    return heatmap_mse_loss(pred, target) / target.float().pow(2).mean().clamp_min(1e-12)


def heatmap_channels(plans: Plans, configuration: Configuration) -> list[int]:
    """Foreground label values, in order; one heatmap for all of them (union) or one each."""
    return sorted(v for v in plans.labels.values() if v != 0)


def summarise_errors(errors_mm: list[float], errors_zyx: list[list[float]]) -> dict:
    """Mean/median/max of the distances and the per-axis standard deviation (mm)."""
    e = np.asarray(errors_mm, dtype=np.float64)
    zyx = np.asarray(errors_zyx, dtype=np.float64).reshape(-1, 3)
    if len(e) == 0:
        return {"n": 0, "mean_mm": None, "median_mm": None, "max_mm": None, "std_zyx_mm": None, "rms_zyx_mm": None}
    return {
        "n": int(len(e)),
        "mean_mm": float(e.mean()),
        "median_mm": float(np.median(e)),
        "max_mm": float(e.max()),
        "std_zyx_mm": [float(v) for v in zyx.std(axis=0)],
        "rms_zyx_mm": [float(v) for v in np.sqrt((zyx**2).mean(axis=0))],
    }


class LocatorTrainer:
    """Train one fold of a ``locator`` configuration; :meth:`run` does everything."""

    name = "LocatorTrainer"

    def __init__(self, dataset: str | int, fold: int | str, configuration: str = "locator", *,
                 epochs: int = 100, iters_per_epoch: int = 50, max_minutes: float | None = None,
                 device: str = "cpu", seed: int = 0, resume: bool = False, learning_rate: float = 3e-3,
                 plots: bool = True, log=print):
        self.dataset_dir = preprocessed_dataset_dir(dataset)
        self.plans = Plans.load(self.dataset_dir / "plans.json")
        self.configuration = self.plans.configuration(configuration)
        if self.configuration.kind != "locator" or self.configuration.locator is None:
            raise InputError(f"configuration {configuration!r} is not a locator configuration")
        self.settings = self.configuration.locator
        self.fold = fold
        self.epochs, self.iters_per_epoch = int(epochs), int(iters_per_epoch)
        self.max_minutes, self.seed, self.resume, self.plots = max_minutes, int(seed), resume, plots
        self.learning_rate = float(learning_rate)
        self.log = log
        self.device = torch.device(device)
        self.model_dir = results_dataset_dir(dataset) / f"{self.name}__{self.configuration.name}"
        self.output_dir = self.model_dir / f"fold_{fold}"
        self.classes = heatmap_channels(self.plans, self.configuration)
        self.n_heatmaps = 1 if self.settings.target == "union" else len(self.classes)

    # --- set-up ---------------------------------------------------------------------------
    def _data_folder(self) -> Path:
        folder = self.dataset_dir / self.configuration.data_identifier
        if not folder.is_dir():
            raise InputError(f"no preprocessed data for configuration {self.configuration.name!r}; "
                             "run segforge_plan_and_preprocess", folder)
        return folder

    def _setup(self) -> None:
        torch.manual_seed(self.seed)
        folder = self._data_folder()
        names = sorted(p.stem for p in folder.glob("*.json"))
        predefined = None
        try:
            from segforge.io.dataset import RawDataset

            predefined = RawDataset.open(self.plans.dataset_name).predefined_split()
        except InputError:
            pass
        splits = load_or_create_splits(self.dataset_dir, names, predefined)
        train, val = fold_cases(splits, self.fold, names)
        target = self.settings.target
        self.train_cases = load_locator_cases(folder, train, self.classes, target)
        self.val_cases = load_locator_cases(folder, val, self.classes, target)
        shapes = [c.data.shape[1:] for c in self.train_cases + self.val_cases]
        self.canvas = locator_canvas(self.configuration, shapes)
        self.network = to_device_layout(
            build_network(self.configuration, self.plans.num_channels, self.n_heatmaps), self.device)
        self.scales = deep_supervision_scales(self.configuration.network)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)
        self.scheduler = PolyLRSchedule(self.optimizer, self.learning_rate, self.epochs * self.iters_per_epoch)
        trivial = None if self.settings.loss == "kl" else 1.0  # relative MSE of the all-zero map
        self.curriculum = SigmaCurriculum.from_settings(self.settings, trivial_loss=trivial)
        self.batches = LocatorBatches(self.train_cases, self.canvas, self.configuration.batch_size,
                                      self.settings.symmetric, seed=self.seed)
        base = heatmap_kl_loss if self.settings.loss == "kl" else relative_heatmap_mse
        self.loss = DeepSupervisionLoss(base)
        self.history: list[dict] = []
        self.epoch = 0
        self.best_error = float("inf")

    # --- checkpoints ----------------------------------------------------------------------
    def _checkpoint(self) -> dict:
        return {
            "plans": self.plans.to_dict(), "configuration": self.configuration.name, "fold": str(self.fold),
            "trainer": self.name, "network_state": self.network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(), "scheduler_state": self.scheduler.state_dict(),
            "grad_scaler_state": {}, "epoch": int(self.epoch),
            "rng_states": {"torch": torch.get_rng_state(), "numpy": json.dumps(self.batches.rng.bit_generator.state)},
            "log": [dict(r) for r in self.history], "curriculum": self.curriculum.state_dict(),
            "canvas": list(self.canvas), "n_heatmaps": int(self.n_heatmaps),
        }

    def _save(self, which: str) -> None:
        save_checkpoint(self.output_dir / f"checkpoint_{which}.pt", self._checkpoint())

    def _load(self, path: Path) -> None:
        ckpt = torch.load(path, map_location=self.device, weights_only=True)
        if ckpt.get("trainer") != self.name:
            raise InputError(f"checkpoint was written by {ckpt.get('trainer')!r}, not {self.name}", path)
        if Plans.from_dict(ckpt["plans"]).configuration(self.configuration.name).version() != self.configuration.version():
            raise InputError("checkpoint was trained with different plans; train again without --continue", path)
        self.network.load_state_dict(ckpt["network_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.scheduler.load_state_dict(ckpt["scheduler_state"])
        self.epoch = int(ckpt["epoch"])
        torch.set_rng_state(ckpt["rng_states"]["torch"])
        self.batches.rng.bit_generator.state = json.loads(ckpt["rng_states"]["numpy"])
        self.history = [dict(r) for r in ckpt["log"]]
        self.curriculum.load_state_dict(ckpt["curriculum"])
        errors = [r["centroid_error_median_mm"] for r in self.history]
        self.best_error = min(errors) if errors else float("inf")

    # --- one epoch ------------------------------------------------------------------------
    def _targets(self, centroids, sigma: float) -> torch.Tensor:
        spacing = self.configuration.spacing
        t = np.stack([heatmap_targets(self.canvas, c, sigma, spacing) for c in centroids])
        return torch.from_numpy(t).to(self.device)

    def _scaled_targets(self, target: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for f in self.scales:
            out.append(target if all(v == 1 for v in f) else F.avg_pool3d(target, f, f))
        return out

    def train_epoch(self) -> float:
        self.network.train()
        losses = []
        for _ in range(self.iters_per_epoch):
            images, centroids, _ = self.batches.next()
            x = torch.from_numpy(images).to(self.device)
            target = self._targets(centroids, self.curriculum.sigma)
            self.optimizer.zero_grad(set_to_none=True)
            out = self.network(x)
            if self.settings.loss == "kl" and isinstance(out, (list, tuple)):
                out = out[:1]  # KL on coarse logits adds little; the full-resolution map matters
            loss = self.loss(out, self._scaled_targets(target))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12.0)
            self.optimizer.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        return float(np.mean(losses))

    def validate(self, sigma: float) -> tuple[dict, list[dict]]:
        """Loss/metrics at ``sigma`` over the validation cases, and the per-case centroids."""
        self.network.eval()
        per_case, mse, kl, dice, losses = [], [], [], [], []
        with torch.inference_mode():
            for case in self.val_cases:
                offset = centred_offset(case.data.shape[1:], self.canvas)
                x = torch.from_numpy(place_on_canvas(np.asarray(case.data), self.canvas, offset))[None].to(self.device)
                moved = [None if c is None else c + offset for c in case.centroids]
                target = self._targets([moved], sigma)
                raw = self.network(x)
                raw = raw[0] if isinstance(raw, (list, tuple)) else raw
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
                per_case.append(self._case_result(case, heat))
        errors = [r["error_mm"] for r in per_case if r["error_mm"] is not None]
        summary = summarise_errors(errors, [r["error_zyx_mm"] for r in per_case if r["error_mm"] is not None])
        metrics = {
            "val_loss": float(np.mean(losses)), "val_mse": float(np.mean(mse)), "val_kl": float(np.mean(kl)),
            "heatmap_dice": float(np.mean(dice)),
            "centroid_error_mean_mm": summary["mean_mm"], "centroid_error_median_mm": summary["median_mm"],
            "centroid_error_max_mm": summary["max_mm"],
        }
        return metrics, per_case

    def _case_result(self, case, heat: np.ndarray) -> dict:
        """Predicted vs true centroids of one case (voxel on its grid, world, error in mm)."""
        preds = read_centroids(heat)
        out = {"case": case.name, "heatmap": heat, "error_mm": None, "error_zyx_mm": None, "channels": []}
        errs, zyx = [], []
        for p, t in zip(preds, case.centroids):
            entry = {"predicted_voxel": [float(v) for v in p],
                     "predicted_world": [float(v) for v in preprocessed_to_world(p, case.properties)]}
            if t is not None:
                tw = preprocessed_to_world(t, case.properties)
                d = (p - t) * effective_spacing(case.properties)
                entry.update(true_voxel=[float(v) for v in t], true_world=[float(v) for v in tw],
                             error_mm=float(np.linalg.norm(np.asarray(entry["predicted_world"]) - tw)),
                             error_zyx_mm=[float(v) for v in d])
                errs.append(entry["error_mm"])
                zyx.append(d)
            out["channels"].append(entry)
        if errs:
            out["error_mm"] = float(np.mean(errs))
            out["error_zyx_mm"] = [float(v) for v in np.mean(zyx, axis=0)]
        return out

    # --- the whole run ----------------------------------------------------------------------
    def run(self) -> dict:
        """Train (or resume) the fold, write plots and ``locator_validation.json``; returns it."""
        self._setup()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._write_model_folder_files()
        latest = self.output_dir / "checkpoint_latest.pt"
        if self.resume and latest.is_file():
            self._load(latest)
        start = time.monotonic()
        last_plot = -math.inf
        plotted_sigmas = {r["sigma"] for r in self.history}
        while self.epoch < self.epochs:
            t0 = time.monotonic()
            sigma = self.curriculum.sigma
            if self.plots and sigma not in plotted_sigmas:
                self._plot_target(sigma)
                plotted_sigmas.add(sigma)
            train_loss = self.train_epoch()
            metrics, per_case = self.validate(sigma)
            self.curriculum.update(self.epoch, metrics["val_loss"])
            row = {"epoch": self.epoch, "sigma": sigma, "train_loss": train_loss, **metrics,
                   "lr": self.optimizer.param_groups[0]["lr"], "epoch_time_s": time.monotonic() - t0}
            self.history.append(row)
            if self.max_minutes is not None:  # decay the learning rate over the time that is left
                self.scheduler.fit_to_time(60 * self.max_minutes - (time.monotonic() - start),
                                           float(np.median([r["epoch_time_s"] for r in self.history[-5:]]))
                                           / self.iters_per_epoch, self.iters_per_epoch)
            median = metrics["centroid_error_median_mm"]
            self.log(f"locator epoch {self.epoch}/{self.epochs - 1}: sigma {sigma:.2f}, train loss {train_loss:.4f}, "
                       f"val loss {metrics['val_loss']:.4f}, centroid error median "
                       f"{'n/a' if median is None else f'{median:.2f} mm'}, {row['epoch_time_s']:.1f} s")
            self.epoch += 1
            self._save("latest")
            if metrics["centroid_error_median_mm"] is not None and metrics["centroid_error_median_mm"] < self.best_error:
                self.best_error = metrics["centroid_error_median_mm"]
                self._save("best")
            self._write_log()
            if self.plots and time.monotonic() - last_plot >= PLOT_INTERVAL_S:
                self._plot_curves()
                last_plot = time.monotonic()
            # like SegmentationTrainer: stop when another epoch of the same length would not fit
            if self.max_minutes is not None and time.monotonic() - start + row["epoch_time_s"] > 60 * self.max_minutes:
                if self.epoch < self.epochs:
                    self.log(f"time budget: stopping after epoch {self.epoch - 1} ({self.max_minutes} minutes)")
                break
        self._save("final")
        if self.plots and self.history:
            self._plot_curves()
        return self.final_validation()

    def _plot_curves(self) -> None:
        locator_plots.plot_losses(self.output_dir / "losses.png", self.history)
        locator_plots.plot_metrics(self.output_dir / "metrics.png", self.history)

    def final_validation(self) -> dict:
        """Validation centroid errors of the final network -> ``locator_validation.json``."""
        metrics, per_case = self.validate(self.curriculum.sigma)
        scored = [r for r in per_case if r["error_mm"] is not None]
        summary = summarise_errors([r["error_mm"] for r in scored], [r["error_zyx_mm"] for r in scored])
        result = {
            "trainer": self.name, "configuration": self.configuration.name, "fold": str(self.fold),
            "checkpoint": "final", "epochs_trained": int(self.epoch), "final_sigma": self.curriculum.sigma,
            "sigma_steps": self.curriculum.steps, "centroid_error": summary,
            "why": "centroid error of the final locator on this fold's validation cases (world mm); "
                   "the cascade segmenter draws its crop jitter from rms_zyx_mm",
            "cases": [{k: v for k, v in r.items() if k != "heatmap"} for r in per_case],
        }
        if summary["n"]:
            self.log(f"fold {self.fold} locator centroid error: mean {summary['mean_mm']:.2f} mm, median "
                       f"{summary['median_mm']:.2f} mm, max {summary['max_mm']:.2f} mm ({summary['n']} validation cases)")
        write_json_atomic(self.output_dir / LOCATOR_VALIDATION_FILE, result)
        if self.plots:
            for case, r in list(zip(self.val_cases, per_case))[:3]:
                self._plot_validation_case(case, r)
        return result

    # --- files ----------------------------------------------------------------------------
    def _write_model_folder_files(self) -> None:
        self.plans.save(self.model_dir / "plans.json")
        try:
            src = raw_dataset_dir(self.plans.dataset_name) / "dataset.json"
        except InputError:
            return
        if src.is_file():
            with temporary_path(self.model_dir / "dataset.json") as tmp:
                shutil.copyfile(src, tmp)

    def _write_log(self) -> None:
        with temporary_path(self.output_dir / "log.csv") as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_LOG_FIELDS)
            writer.writeheader()
            for row in self.history:
                writer.writerow({k: row.get(k) for k in _LOG_FIELDS})

    def _plot_target(self, sigma: float) -> None:
        case = self.train_cases[0]
        c = next((c for c in case.centroids if c is not None), None)
        if c is None:
            return
        target = heatmap_targets(case.data.shape[1:], [c], sigma, self.configuration.spacing)[0]
        locator_plots.plot_heatmap_target(self.output_dir / f"heatmap_sigma_{sigma:.2f}.png",
                                          np.asarray(case.data[0]), target, c, sigma)

    def _plot_validation_case(self, case, result: dict) -> None:
        from segforge.cascade.validation_views import fullres_views

        ch = result["channels"][0]
        true = ch.get("true_voxel")
        fullres, crop = fullres_views(self.plans, case.name, ch["predicted_world"], ch.get("true_world"))
        locator_plots.plot_validation_case(
            self.output_dir / f"val_locator_{case.name}.png", case.name, np.asarray(case.data[0]),
            result["heatmap"][0], np.asarray(ch["predicted_voxel"]), None if true is None else np.asarray(true),
            fullres, crop)
