"""The generic segmentation trainer: one fold of one segmentation configuration.

``segforge_results/DatasetNNN_Name/SegmentationTrainer__<configuration>/fold_K/`` receives
``checkpoint_{latest,best,final}.pt``, ``log.csv``, ``progress.png``, ``train_example.png``,
``val_pred.png``/``val_truth.png``, ``training_options.json`` (and ``tensorboard/``); the
model folder above it gets copies of ``plans.json`` and ``dataset.json``.

An epoch is ``iters_per_epoch`` training iterations (Dice + cross-entropy with deep
supervision, SGD with poly learning rate, gradient clipping, mixed precision on CUDA) and
``val_iters`` validation iterations on the same patches every epoch (loss and per-class
pseudo-Dice from true/false positives/negatives summed over all of them). The exponential
moving average (EMA) of the mean pseudo-Dice picks ``checkpoint_best.pt``.

Subclasses change one piece by overriding a method: :meth:`build_network`,
:meth:`build_training_sampler`, :meth:`build_validation_sampler`,
:meth:`training_transforms`, :meth:`compute_loss`, :meth:`train_step`, :meth:`validation_step`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from segforge import paths
from segforge.data import (
    CaseStore,
    PatchSampler,
    TrainingBatches,
    ValidationBatches,
    default_num_workers,
    fold_cases,
    list_preprocessed_cases,
    load_or_create_splits,
    make_loader,
    parse_fold,
    sample_region_size,
    training_transforms,
    validation_transforms,
    worker_seeds,
)
from segforge.errors import InputError
from segforge.io.atomic import temporary_path
from segforge.networks import build_network, to_device_layout
from segforge.planning.plans import Plans
from segforge.training import plots
from segforge.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from segforge.training.losses import DeepSupervisionLoss, DiceCELoss, deep_supervision_scales, downsample_target
from segforge.training.options import TrainingOptions, cpu_threads, resolve_device
from segforge.training.progress_log import TrainingLog
from segforge.training.schedule import OPTIMIZERS, PolyLRSchedule, build_optimizer
from segforge.training.reporting import EpochReporter, write_json

__all__ = ["SegmentationTrainer"]


class SegmentationTrainer:
    """Train fold ``fold`` of segmentation configuration ``configuration_name``; :meth:`run` does everything."""

    name = "SegmentationTrainer"

    def __init__(self, plans: Plans, configuration_name: str, fold: int | str, output_folder: str | Path | None = None,
                 device: str | torch.device | None = None, options: TrainingOptions | None = None,
                 preprocessed_dir: str | Path | None = None, log=print):
        self.plans = plans
        self.configuration = plans.configuration(configuration_name)
        if self.configuration.kind != "segmentation":
            raise InputError(f"configuration {configuration_name!r} is a {self.configuration.kind} configuration; "
                             f"{self.name} trains segmentation configurations")
        self.fold = parse_fold(fold)
        self.options = options or TrainingOptions()
        self.device = resolve_device(device)
        self.log = log
        self.preprocessed_dir = Path(preprocessed_dir or paths.preprocessed_root() / plans.dataset_name)
        model_folder = paths.results_root() / plans.dataset_name / f"{self.name}__{self.configuration.name}"
        self.output_folder = Path(output_folder) if output_folder else model_folder / f"fold_{self.fold}"
        self.model_folder = self.output_folder.parent
        self.num_classes = plans.num_classes
        names = {v: k for k, v in plans.labels.items()}
        self.class_names = [names.get(k, f"class_{k}") for k in range(1, self.num_classes)]
        self.num_workers = self.options.num_workers if self.options.num_workers is not None else default_num_workers()
        self.history = TrainingLog()
        self.start_epoch = 0
        self.best_ema = -math.inf
        self._epochs_since_best = 0

    # --- set-up -----------------------------------------------------------------------------
    def initialize(self) -> None:
        """Seeds, network, optimiser, schedule, losses, the fold's cases. Loaders come in :meth:`run`."""
        o = self.options
        random.seed(o.seed)
        np.random.seed(o.seed % 2**32)
        torch.manual_seed(o.seed)
        if o.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(o, self.num_workers))
        self.network = to_device_layout(self.build_network(), self.device)
        defaults = OPTIMIZERS.get(o.optimizer)
        initial_lr = o.initial_lr if o.initial_lr is not None else (defaults.initial_lr if defaults else 1e-2)
        self.optimizer = build_optimizer(self.network.parameters(), o.optimizer, initial_lr, o.weight_decay)
        self.schedule = PolyLRSchedule(self.optimizer, initial_lr, o.epochs * o.iters_per_epoch)
        self.scales = deep_supervision_scales(self.configuration.network)
        self.train_loss_fn = DeepSupervisionLoss(DiceCELoss())
        self.val_loss_fn = DiceCELoss()
        self.amp_dtype = None
        if self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.data_folder = self.preprocessed_dir / self.configuration.data_identifier
        cases = list_preprocessed_cases(self.data_folder)
        self._check_preprocessing(cases)
        splits = load_or_create_splits(self.preprocessed_dir, cases, self._predefined_split())
        self.train_cases, self.val_cases = fold_cases(splits, self.fold, cases)
        self.store = CaseStore(self.data_folder)

    def _check_preprocessing(self, cases: list[str]) -> None:
        """The first case must have been preprocessed with this configuration's settings."""
        from segforge.preprocessing.case import preprocessing_version

        if not cases:
            raise InputError("no preprocessed training cases; run segforge_plan_and_preprocess", self.data_folder)
        path = self.data_folder / f"{cases[0]}.json"
        try:
            made_with = json.loads(path.read_text()).get("preprocessing_version")
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read case properties ({exc})", path) from None
        if made_with is not None and made_with != preprocessing_version(self.configuration):
            raise InputError("preprocessed with other plans; run segforge_plan_and_preprocess again", path)

    def build_network(self) -> torch.nn.Module:
        return build_network(self.configuration, self.plans.num_channels, self.num_classes)

    def build_training_sampler(self) -> PatchSampler:
        """Random patches (1/3 around foreground) at the size spatial augmentation needs."""
        patch = self.configuration.patch_size
        return PatchSampler(self.store, self.train_cases, patch, self.configuration.batch_size,
                            sample_size=sample_region_size(patch, self.options.augmentation))

    def build_validation_sampler(self) -> PatchSampler:
        return PatchSampler(self.store, self.val_cases, self.configuration.patch_size, self.configuration.batch_size)

    def training_transforms(self):
        return training_transforms(self.configuration.patch_size, self.options.augmentation)

    def _predefined_split(self) -> dict | None:
        for path in (self.preprocessed_dir / "dataset.json", paths.raw_root() / self.plans.dataset_name / "dataset.json"):
            if path.is_file():
                try:
                    return json.loads(path.read_text()).get("segforge_split")
                except json.JSONDecodeError as exc:
                    raise InputError(f"dataset.json is not valid JSON ({exc})", path) from None
        return None

    def _start_loaders(self) -> None:
        pin = self.device.type == "cuda"
        n = self.num_workers
        self.train_loader = make_loader(TrainingBatches(self.build_training_sampler()), self.training_transforms(), n,
                                        worker_seeds(self.options.seed, self.start_epoch, n, 0), pin)
        n_val = max(1, n // 2) if n > 0 else 0
        val_batches = ValidationBatches(self.build_validation_sampler(), self.options.val_iters,
                                        seed=self.options.seed + 1, num_workers=max(1, n_val))
        self.val_loader = make_loader(val_batches, validation_transforms(), n_val,
                                      worker_seeds(self.options.seed, 0, n_val, 1), pin)

    # --- one step ---------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return (batch["data"].to(self.device, non_blocking=True),
                batch["target"].to(self.device, non_blocking=True))

    def compute_loss(self, outputs, target: torch.Tensor) -> torch.Tensor:
        """Deep-supervision Dice + CE of the training outputs (full resolution first) against ``target`` (B, 1, ...)."""
        return self.train_loss_fn(outputs, downsample_target(target, self.scales))

    def train_step(self, batch: dict) -> torch.Tensor:
        """Forward, backward, clip, step; returns the detached loss (no host sync)."""
        data, target = self._to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.network(data)
            loss = self.compute_loss(outputs, target)
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.options.grad_clip)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.schedule.step()
        return loss.detach()

    @torch.no_grad()
    def validation_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, the predicted labels (B, *patch) and the K x K confusion matrix (truth rows), all on the device."""
        data, target = self._to_device(batch)
        with self._autocast():
            logits = self.network(data)
            loss = self.val_loss_fn(logits, target)
        pred = logits.argmax(1)
        k = self.num_classes
        confusion = torch.bincount((target[:, 0].long() * k + pred).flatten(), minlength=k * k).view(k, k)
        return loss.detach(), pred, confusion

    # --- epochs -----------------------------------------------------------------------------
    def train_epoch(self, epoch: int, reporter: EpochReporter) -> tuple[float, float]:
        """Returns (mean training loss, iterations per second)."""
        self.network.train()
        n = self.options.iters_per_epoch
        loss_sum = torch.zeros((), device=self.device)
        bar = reporter.bar(epoch, n)
        t0 = time.perf_counter()
        for i in range(n):
            loss_sum += self.train_step(next(self.train_loader))
            bar.update(1)
            if (i + 1) % 10 == 0 and not bar.disable:
                bar.set_postfix(loss=f"{loss_sum.item() / (i + 1):.4f}")  # a host sync every 10 iterations
        mean_loss = (loss_sum / n).item()
        seconds = time.perf_counter() - t0
        bar.close()
        return mean_loss, n / max(seconds, 1e-9)

    def validate_epoch(self, keep_example: bool, max_batches: int | None = None) -> tuple[float, list[float], dict | None]:
        """Mean validation loss, per-class pseudo-Dice (NaN where a class is absent), and the first batch if asked."""
        self.network.eval()
        k = self.num_classes
        n = min(self.options.val_iters, max_batches or self.options.val_iters)
        loss_sum = torch.zeros((), device=self.device)
        confusion = torch.zeros((k, k), dtype=torch.int64, device=self.device)
        example = None
        for i in range(n):
            batch = next(self.val_loader)
            loss, pred, conf = self.validation_step(batch)
            loss_sum += loss
            confusion += conf
            if i == 0 and keep_example:
                example = {"image": batch["data"].numpy(), "truth": batch["target"][:, 0].numpy(),
                           "pred": pred.cpu().numpy()}
        c = confusion.cpu().numpy().astype(np.float64)  # the one host sync of validation
        tp = np.diag(c)[1:]
        fp = c.sum(0)[1:] - tp
        fn = c.sum(1)[1:] - tp
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(denominator > 0, 2 * tp / denominator, np.nan)
        return (loss_sum / n).item(), [float(d) for d in dice], example

    def run(self, resume: bool = False) -> Path:
        """Train (or resume from ``checkpoint_latest.pt``); returns the fold folder.

        Predicting and scoring the fold's validation cases comes after, from the train
        workflow (:mod:`segforge.workflows.train`): the trainer does not run the predictor."""
        self.initialize()
        self.output_folder.mkdir(parents=True, exist_ok=True)
        latest = self.output_folder / "checkpoint_latest.pt"
        if resume and latest.is_file():
            self.load_checkpoint(latest)
            self.log(f"resuming fold {self.fold} at epoch {self.start_epoch} from {latest}")
        elif resume:
            self.log(f"no {latest.name} in {self.output_folder}; starting from scratch")
        self._write_model_folder_files()
        o = self.options
        self.log(f"{self.name}: {self.plans.dataset_name} {self.configuration.name} fold {self.fold}: "
                 f"{len(self.train_cases)} training / {len(self.val_cases)} validation cases, device {self.device}, "
                 f"{self.num_workers} loader workers, epochs {self.start_epoch}..{o.epochs - 1}")
        reporter = EpochReporter(self.output_folder, self.class_names, o, self.log)
        self._start_loaders()
        started = time.monotonic()
        epoch, plot_val = self.start_epoch - 1, False
        try:
            if self.start_epoch == 0:
                example = next(self.train_loader)
                plots.plot_batch(example["data"].numpy(), example["target"][:, 0].numpy(),
                                 self.output_folder / "train_example.png", "augmented training batch (labels on top)",
                                 num_classes=self.num_classes)
            for epoch in range(self.start_epoch, o.epochs):
                t0 = time.monotonic()
                lr = self.schedule.lr
                train_loss, its = self.train_epoch(epoch, reporter)
                plot_val = (epoch + 1) % o.val_plot_every == 0 or epoch == o.epochs - 1 or epoch == self.start_epoch
                val_loss, dice, example = self.validate_epoch(keep_example=plot_val)
                self._end_epoch(epoch, train_loss, val_loss, dice, lr, time.monotonic() - t0, its, reporter, example)
                if self._should_stop(epoch, started):
                    break
            if self.history.epoch and not plot_val:
                _, _, example = self.validate_epoch(keep_example=True, max_batches=1)
                reporter.plot_validation(example, self.num_classes)
            self.save_checkpoint("final", max(epoch, 0))
        finally:
            self.train_loader.close()
            self.val_loader.close()
            reporter.close()
        return self.output_folder

    def _end_epoch(self, epoch, train_loss, val_loss, dice, lr, seconds, its, reporter, example) -> None:
        valid = [d for d in dice if not math.isnan(d)]
        mean = float(np.mean(valid)) if valid else 0.0
        m = self.options.ema_momentum
        ema = mean if not self.history.ema_dice else m * self.history.ema_dice[-1] + (1 - m) * mean
        self.history.append(epoch=epoch, train_loss=train_loss, val_loss=val_loss, dice=dice, mean_dice=mean,
                            ema_dice=ema, lr=lr, epoch_seconds=seconds, iters_per_second=its)
        improved = ema > self.best_ema
        self._epochs_since_best = 0 if improved else self._epochs_since_best + 1
        if improved:
            self.best_ema = ema
        self.save_checkpoint("latest", epoch)
        if improved:
            self.save_checkpoint("best", epoch)
        reporter.end_epoch(self.history)
        if example is not None:
            reporter.plot_validation(example, self.num_classes)

    def _should_stop(self, epoch: int, started: float) -> bool:
        o = self.options
        if o.patience is not None and self._epochs_since_best >= o.patience:
            self.log(f"early stop after epoch {epoch}: no better EMA pseudo-Dice for {o.patience} epochs")
            return True
        if o.max_minutes is not None:
            elapsed = time.monotonic() - started
            if elapsed + self.history.epoch_seconds[-1] > 60 * o.max_minutes and epoch < o.epochs - 1:
                self.log(f"time budget: stopping after epoch {epoch} ({elapsed / 60:.1f} of {o.max_minutes} minutes; "
                         "another epoch would not fit)")
                return True
        return False

    # --- checkpoints and files ----------------------------------------------------------------
    def checkpoint_dict(self, epoch: int) -> dict:
        return {
            "plans": self.plans.to_dict(), "configuration": self.configuration.name, "fold": str(self.fold),
            "trainer": self.name, "plans_version": self.configuration.version(),
            "network_state": self.network.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.schedule.state_dict(), "grad_scaler_state": self.grad_scaler.state_dict(),
            "epoch": int(epoch), "rng_states": rng_states(), "log": self.history.to_dict(),
            "best_ema": float(self.best_ema), "epochs_since_best": int(self._epochs_since_best),
            "options": self.options.to_dict(), "class_names": list(self.class_names),
        }

    def save_checkpoint(self, which: str, epoch: int) -> None:
        save_checkpoint(self.output_folder / f"checkpoint_{which}.pt", self.checkpoint_dict(epoch))

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore network, optimiser, schedule, grad scaler, RNG states and log; training goes on at epoch + 1."""
        ckpt = load_checkpoint(path)  # on the CPU: RNG states must stay CPU tensors
        if ckpt.get("plans_version") != self.configuration.version():
            raise InputError("the plans changed since this checkpoint was written; train without --continue", path)
        self.network.load_state_dict(ckpt["network_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.schedule.load_state_dict(ckpt["scheduler_state"])
        if ckpt.get("grad_scaler_state"):
            self.grad_scaler.load_state_dict(ckpt["grad_scaler_state"])
        restore_rng_states(ckpt["rng_states"])
        self.history = TrainingLog.from_dict(ckpt["log"])
        self.best_ema = float(ckpt.get("best_ema", -math.inf))
        self._epochs_since_best = int(ckpt.get("epochs_since_best", 0))
        self.start_epoch = int(ckpt["epoch"]) + 1

    def _write_model_folder_files(self) -> None:
        self.model_folder.mkdir(parents=True, exist_ok=True)
        self.plans.save(self.model_folder / "plans.json")
        source = next((p for p in (self.preprocessed_dir / "dataset.json",
                                   paths.raw_root() / self.plans.dataset_name / "dataset.json") if p.is_file()), None)
        target = self.model_folder / "dataset.json"
        if source is not None:
            with temporary_path(target) as tmp:
                shutil.copyfile(source, tmp)
        else:
            write_json(target, {"channel_names": self.plans.channel_names, "labels": self.plans.labels})
        write_json(self.output_folder / "training_options.json",
                   {"trainer": self.name, "configuration": self.configuration.name, "fold": str(self.fold),
                    "device": str(self.device), "num_workers": self.num_workers, **self.options.to_dict()})
