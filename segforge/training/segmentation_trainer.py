"""The generic segmentation trainer: one fold of one segmentation configuration.

``segforge_results/DatasetNNN_Name/SegmentationTrainer__<configuration>/fold_K/`` receives
``checkpoint_{latest,best,final}.pt``, ``log.csv``, ``progress.png``, ``train_example.png``,
``val_pred.png``/``val_truth.png``, ``training_options.json`` (and ``tensorboard/`` or ``wandb/`` with ``--logger``); the
model folder above it gets copies of ``plans.json`` and ``dataset.json``.

An epoch is ``iters_per_epoch`` training iterations (Dice + cross-entropy with deep
supervision, SGD with poly learning rate, gradient clipping, mixed precision on CUDA) and
``val_iters`` validation iterations on the same patches every epoch (loss and per-class
pseudo-Dice from true/false positives/negatives summed over all of them). The exponential
moving average (EMA) of the mean pseudo-Dice picks ``checkpoint_best.pt``. The loop itself is
:class:`~segforge.training.trainer.Trainer`'s.

Subclasses change one piece by overriding a method: :meth:`build_network`,
:meth:`build_training_sampler`, :meth:`build_validation_sampler`,
:meth:`training_transforms`, :meth:`training_loss`, :meth:`validation_step`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from segforge.data import (
    CaseStore,
    PatchSampler,
    TrainingBatches,
    ValidationBatches,
    make_loader,
    sample_region_size,
    training_transforms,
    validation_transforms,
    worker_seeds,
)
from segforge.data.batch_augmentation import BatchAugmentation, unpack_boxes
from segforge.data.region_batches import RegionBatches, label_dtype
from segforge.errors import InputError
from segforge.networks import build_network
from segforge.preprocessing.pseudo_labels import PSEUDO_PREFIX, prepare_pseudo_labelled_cases
from segforge.training import plots
from segforge.training.distributed import sum_across_ranks
from segforge.training.losses import (
    DeepSupervisionLoss,
    DiceCELoss,
    RegionDiceBCELoss,
    deep_supervision_scales,
    downsample_probabilities,
    downsample_target,
)
from segforge.training.mixup import draw_mixup, mix, mixed_targets
from segforge.training.progress_log import TrainingLog
from segforge.training.trainer import Trainer

__all__ = ["SegmentationTrainer", "confusion_matrix"]


def confusion_matrix(truth: torch.Tensor, pred: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """``(K, K)`` int64 counts, truth rows, prediction columns, on the device without a host sync
    (``torch.bincount`` asks the device for the largest value to size its output: a sync per batch).
    Voxels whose truth is ``ignore_index`` are counted nowhere."""
    k = num_classes
    index = (truth.long() * k + pred.long()).flatten()
    if ignore_index is not None:  # into one extra bin, dropped
        index = torch.where(truth.flatten() == ignore_index, torch.full_like(index, k * k), index)
    counts = torch.zeros(k * k + 1, dtype=torch.int64, device=index.device)
    return counts.scatter_add_(0, index, torch.ones_like(index))[: k * k].view(k, k)


class SegmentationTrainer(Trainer):
    """Patches, Dice + CE with deep supervision, pseudo-Dice validation; ``best`` by the EMA pseudo-Dice."""

    name = "SegmentationTrainer"
    configuration_kind = "segmentation"
    default_optimizer = "sgd"
    best_metric = "ema_dice"
    best_metric_label = "EMA pseudo-Dice"
    # under --max-minutes SGD's momentum is 0.9 and the rate is not decayed over the budget: held-out Dice
    # 0.92 at 400 iterations against 0.54 with momentum 0.99, 0.90 / 0.66 decayed (docs/planning.md
    # "The learning rate over a budget")
    budget_momentum = 0.9
    higher_is_better = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # what the network predicts: softmax labels or sigmoid regions, an ignore label (segforge.io.labels)
        self.labels = self.plans.label_scheme
        self.num_classes = self.labels.num_outputs
        self.input_channels = self.configuration.network_input_channels(self.plans.num_channels)  # 2.5d: x k slices
        self.class_names = list(self.labels.foreground_names)
        # one past the largest raw value of the label files (a --labels subset's dropped labels included)
        dropped = [x for v in self.plans.dropped_labels.values() for x in (v if isinstance(v, list) else [v])]
        self.raw_label_range = max(self.labels.raw_values + dropped) + 1

    # --- set-up --------------------------------------------------------------------------------
    def setup(self) -> None:
        self.scales = deep_supervision_scales(self.configuration.network)
        world = self.dist.world_size
        share = world * self.batch_size / self.configuration.batch_size  # weighs this process's cross-entropy
        ranks = dict(sum_terms=sum_across_ranks) if self.dist.enabled else {}
        if self.labels.is_regions:
            has_ignore = self.labels.ignore_label is not None
            loss = RegionDiceBCELoss(has_ignore=has_ignore, bce_scale=share if ranks else 1.0, **ranks)
            self.val_loss_fn = RegionDiceBCELoss(has_ignore=has_ignore)
        else:
            loss = DiceCELoss(ignore_index=self.labels.ignore_index, ce_scale=share if ranks else 1.0, **ranks)
            self.val_loss_fn = DiceCELoss(ignore_index=self.labels.ignore_index)
        self.train_loss_fn = DeepSupervisionLoss(loss, keep_all_outputs=self.dist.enabled)
        # raw label values of the preprocessed cases -> training targets (none needed for plain labels 0..K-1)
        self.target_lookup = None if self.labels.is_identity else torch.as_tensor(
            self.labels.training_lookup(self.raw_label_range), device=self.device)
        self.region_values = [torch.as_tensor(values, device=self.device) for values in self.labels.targets
                              ] if self.labels.is_regions else []
        self.output_values = torch.as_tensor(self.labels.output_values, device=self.device)
        if self.options.mixup != "none" and (self.labels.is_regions or self.labels.ignore_label is not None):
            raise InputError("--mixup mixes one-hot label maps: it does not go with region-based labels or an "
                             "ignore label")
        if self.options.pseudo_labels and (self.labels.is_regions or not self.labels.is_identity):
            raise InputError("--pseudo-labels takes label maps of plain labels 0..K-1: it does not go with "
                             "region-based labels, an ignore label or a --labels subset")
        self.pseudo_cases: list[str] = []  # keys of the pseudo-labelled training cases (--pseudo-labels)
        self.soft_classes = None  # K when the batches carry class probabilities (pseudo-labels saved with them)
        elsewhere = {}
        if self.options.pseudo_labels:
            folder, names = self._prepare_pseudo_labels()
            elsewhere = {PSEUDO_PREFIX + n: folder / n for n in names}
            self.pseudo_cases = sorted(elsewhere)
            if any((folder / f"{n}_soft.npy").is_file() for n in names):
                self.soft_classes = self.num_classes
            self.log(f"{len(names)} pseudo-labelled training case(s) from {self.options.pseudo_labels} (weight "
                     f"{self.options.pseudo_weight:g}, "
                     f"{'soft targets from their probabilities' if self.soft_classes else 'their predicted labels'})")
        self.store = CaseStore(self.data_folder, elsewhere=elsewhere)
        self.batch_augmentation = (BatchAugmentation(self.configuration.patch_size, self.options.augmentation)
                                   if self.augment_on == "gpu" else None)
        self.last_mixup = None  # the latest batch's mixup draw (segforge.training.mixup)
        if self.options.mixup == "manifold" and not getattr(self.plain_network, "mixes_features", False):
            raise InputError(f"--mixup manifold needs a network that mixes its encoder features (the U-Net does); "
                             f"{self.configuration.network.name!r} does not: use --mixup input")

    def _prepare_pseudo_labels(self):
        """Preprocess the --pseudo-labels cases (rank 0 first in a distributed run; the others then find them done)."""
        def prepare():
            return prepare_pseudo_labelled_cases(self.options.pseudo_labels, self.configuration, self.plans.labels,
                                                 self.preprocessed_dir, log=self.log)
        if self.dist.is_main:
            prepared = prepare()
            self.dist.barrier()
            return prepared
        self.dist.barrier()
        return prepare()

    def build_network(self) -> torch.nn.Module:
        return build_network(self.configuration, self.plans.num_channels, self.num_classes)

    def training_sample_size(self) -> list[int]:
        """The region a training sample starts from: the patch with ``--augment-on gpu`` (the loader then
        reads each sample's own source box), else the region any rotation and zoom-out needs."""
        patch = list(self.configuration.patch_size)
        return patch if self.augment_on == "gpu" else sample_region_size(patch, self.options.augmentation)

    def training_cases(self) -> tuple[list[str], list[float] | None]:
        """The fold's training cases and the pseudo-labelled ones, with their sampling weights (None: all alike)."""
        if not self.pseudo_cases:
            return list(self.train_cases), None
        cases = list(self.train_cases) + self.pseudo_cases
        return cases, [1.0] * len(self.train_cases) + [self.options.pseudo_weight] * len(self.pseudo_cases)

    def build_training_sampler(self) -> PatchSampler:
        """Random patches (1/3 around foreground) at :meth:`training_sample_size`, from the fold's training
        cases and the pseudo-labelled ones."""
        cases, weights = self.training_cases()
        return PatchSampler(self.store, cases, self.configuration.patch_size, self.batch_size,
                            sample_size=self.training_sample_size(), input_slices=self.configuration.input_slices,
                            case_weights=weights, soft_classes=self.soft_classes)

    def build_validation_sampler(self) -> PatchSampler:
        return PatchSampler(self.store, self.val_cases, self.configuration.patch_size, self.configuration.batch_size,
                            input_slices=self.configuration.input_slices)

    def training_transforms(self):
        return training_transforms(self.configuration.patch_size, self.options.augmentation)

    def make_training_loader(self):
        """Training batches (augmented in ``num_workers`` processes, or drawn and read there and augmented
        on the device by :meth:`prepare_batch`) and the fixed validation batches."""
        pin = self.device.type == "cuda"
        n = self.num_workers
        seeds = worker_seeds(self.options.seed, self.start_epoch, n, 0, self.dist.rank)
        training, validation = self.build_training_sampler(), self.build_validation_sampler()
        if not self.labels.is_identity:  # foreground patches only on labels trained on (not ignore, not dropped)
            training.foreground_labels = validation.foreground_labels = list(self.labels.foreground_values)
        if self.batch_augmentation is not None:
            # raw label values travel (float16: with the probabilities of pseudo-labels)
            labels = np.float16 if self.soft_classes else label_dtype(self.raw_label_range)
            batches = RegionBatches(training, self.batch_augmentation, self.input_channels, labels=labels)
            loader = make_loader(batches, None, n, seeds, pin)
        else:
            loader = make_loader(TrainingBatches(training), self.training_transforms(), n, seeds, pin)
        self.make_validation_loader(validation)
        return loader

    def make_validation_loader(self, validation=None) -> None:
        """The ``val_iters`` fixed validation batches, the same every epoch (in half the workers)."""
        n_val = max(1, self.num_workers // 2) if self.num_workers > 0 else 0
        if validation is None:
            validation = self.build_validation_sampler()
            if not self.labels.is_identity:
                validation.foreground_labels = list(self.labels.foreground_values)
        val_batches = ValidationBatches(validation, self.val_iters,
                                        seed=self.options.seed + 1, num_workers=max(1, n_val), rank=self.dist.rank,
                                        world_size=self.dist.world_size)
        self.val_loader = self.on_device(make_loader(val_batches, validation_transforms(), n_val,
                                                     worker_seeds(self.options.seed, 0, n_val, 1),
                                                     self.device.type == "cuda"))
        self._val_loader_batches = self.val_iters
        self.loaders.append(self.val_loader)

    def on_epochs_sized(self) -> None:
        """A validation set of the sized length (each epoch must see the same batches)."""
        if self._val_loader_batches != self.val_iters:
            self.val_loader.close()
            self.loaders.remove(self.val_loader)
            self.make_validation_loader()

    # --- one step ------------------------------------------------------------------------------
    def prepare_batch(self, batch: dict) -> dict:
        """On the device; a batch of source boxes (``--augment-on gpu``) is augmented here."""
        batch = super().prepare_batch(batch)
        if "augmentation" not in batch:
            return batch
        boxes = unpack_boxes(batch["data"], batch["box_sizes"], self.input_channels)
        labels = unpack_boxes(batch["target"], batch["box_sizes"], 1 + (self.soft_classes or 0))
        data, target = self.batch_augmentation(boxes, labels, batch["augmentation"])
        out = {"data": data, "target": target, "keys": batch["keys"], "augmentation": batch["augmentation"]}
        if self.soft_classes:  # labels, then probabilities; outside the image (all 0) background, like the labels
            soft = target[:, 1:].float()
            soft[:, :1] += (soft.sum(1, keepdim=True) <= 0).float()
            out["target"], out["soft"] = target[:, :1].round().to(torch.int16), soft
        return out

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Deep-supervision Dice + CE of the training outputs (full resolution first) against ``target`` (B, 1, ...)
        or, with pseudo-labels' probabilities, ``soft`` (B, K, ...); with ``--mixup``, of the mixed batch
        against the mixed one-hot targets (soft)."""
        if "soft" in batch:  # class probabilities of pseudo-labelled cases (one-hot for the others)
            targets = downsample_probabilities(batch["soft"].float(), self.scales)
        else:
            targets = downsample_target(self.make_target(batch["target"]), self.scales)
        mode = self.options.mixup
        if mode == "none":
            return self.train_loss_fn(self.network(batch["data"]), targets)
        n_stages = self.configuration.network.n_stages if mode == "manifold" else None
        draw = self.last_mixup = draw_mixup(len(batch["data"]), self.options.mixup_alpha, n_stages)
        if mode == "input":
            outputs = self.network(mix(batch["data"], draw))
        else:
            outputs = self.network(batch["data"], mix_stage=draw.stage, mix=lambda t: mix(t, draw))
        return self.train_loss_fn(outputs, [mixed_targets(t, self.num_classes, draw) for t in targets])

    def make_target(self, target: torch.Tensor) -> torch.Tensor:
        """The loss's target from a batch's raw label values ``(B, 1, ...)``: plain labels -> output indices
        ``(B, 1, ...)`` (ignore -> ``ignore_index``); regions -> ``(B, R [+ 1 ignore], ...)`` masks."""
        if self.target_lookup is not None:
            target = self.target_lookup[target.long().clamp(0, len(self.target_lookup) - 1)]
        if not self.labels.is_regions:
            return target
        channels = [torch.isin(target, values) for values in self.region_values]
        if self.labels.ignore_label is not None:
            channels.append(target == self.labels.ignore_index)
        return torch.cat(channels, dim=1).to(torch.uint8)

    @torch.no_grad()
    def validation_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss, the predicted label values (B, *patch) and per scored target ``[tp, fp, fn]`` voxel counts
        ``(n_targets, 3)`` (ignored voxels left out), all on the device."""
        data = batch["data"]
        target = self.make_target(batch["target"])
        with self.autocast():
            logits = self.network(data)
            loss = self.val_loss_fn(logits, target)
        if self.labels.is_regions:
            regions = logits.shape[1]
            predicted, truth = logits > 0, target[:, :regions].bool()
            valid = ~target[:, regions:].bool() if target.shape[1] > regions else torch.ones_like(truth[:, :1])
            axes = [0] + list(range(2, logits.ndim))
            counts = torch.stack([(predicted & truth & valid).sum(axes), (predicted & ~truth & valid).sum(axes),
                                  (~predicted & truth & valid).sum(axes)], dim=1)
            pred = torch.zeros_like(target[:, 0], dtype=torch.int64)
            for r in range(regions):  # painted in regions_class_order (torch.where: no host sync)
                pred = torch.where(predicted[:, r], self.output_values[r], pred)
            return loss.detach(), pred, counts
        pred = logits.argmax(1)
        if self.labels.ignore_index is None:
            confusion = confusion_matrix(target[:, 0], pred, self.num_classes)
        else:
            confusion = confusion_matrix(target[:, 0], pred, self.num_classes, self.labels.ignore_index)
        tp = torch.diagonal(confusion)[1:]
        counts = torch.stack([tp, confusion.sum(0)[1:] - tp, confusion.sum(1)[1:] - tp], dim=1)
        return loss.detach(), self.output_values[pred], counts

    # --- epochs --------------------------------------------------------------------------------
    def on_start(self) -> None:
        if self.start_epoch == 0 and self.writes_files and self.options.plots:
            example = self.prepare_batch(next(self.train_loader))
            plots.plot_batch(self.shown_channel(example["data"].float().cpu().numpy()),
                             example["target"][:, 0].cpu().numpy(),
                             self.output_folder / "train_example.png", "augmented training batch (labels on top)",
                             num_classes=self.raw_label_range)
            self.reporter.picture("train_example", self.output_folder / "train_example.png")
        self._plotted_last = False

    def validate(self, epoch: int) -> dict:
        o = self.options
        keep = o.plots and ((epoch + 1) % o.val_plot_every == 0 or epoch == o.epochs - 1 or epoch == self.start_epoch)
        val_loss, dice, example = self.validate_patches(keep_example=keep)
        if example is not None:
            self.plot_validation(example)
        self._plotted_last = example is not None
        valid = [d for d in dice if not math.isnan(d)]
        mean = float(np.mean(valid)) if valid else 0.0
        previous = self.history.column("ema_dice")
        m = o.ema_momentum
        ema = mean if not previous else m * previous[-1] + (1 - m) * mean
        return {"val_loss": val_loss, "dice": dice, "mean_dice": mean, "ema_dice": ema}

    def validate_patches(self, keep_example: bool, max_batches: int | None = None) -> tuple[float, list[float], dict | None]:
        """Mean validation loss, per-class pseudo-Dice (NaN where a class is absent), and the first batch if asked.

        In a distributed run each process validates its batches (``rank``, ``rank + N``, ...) and the
        sums are added: every process gets the numbers of the whole validation set."""
        self.network.eval()
        n = min(self.val_iters, max_batches or self.val_iters)
        loss_sum = torch.zeros((), device=self.device)
        counts = torch.zeros((len(self.class_names), 3), dtype=torch.int64, device=self.device)
        example = None
        for i in range(len(range(self.dist.rank, n, self.dist.world_size))):
            batch = next(self.val_loader)
            loss, pred, batch_counts = self.validation_step(self.prepare_batch(batch))
            loss_sum += loss
            counts += batch_counts
            if i == 0 and keep_example:
                example = {"image": self.shown_channel(batch["data"].float().cpu().numpy()),
                           "truth": batch["target"][:, 0].cpu().numpy(),
                           "pred": pred.cpu().numpy()}
        self.dist.all_reduce(loss_sum)
        self.dist.all_reduce(counts)
        c = counts.cpu().numpy().astype(np.float64)  # the one host sync of validation
        tp, fp, fn = c[:, 0], c[:, 1], c[:, 2]
        denominator = 2 * tp + fp + fn
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(denominator > 0, 2 * tp / denominator, np.nan)
        return (loss_sum / n).item(), [float(d) for d in dice], example

    def shown_channel(self, images: np.ndarray) -> np.ndarray:
        """The images of a batch as pictures show them: for 2.5d, channel 0 of the predicted (middle) slice."""
        middle = self.configuration.input_slices // 2
        return images[:, middle:middle + 1] if middle else images

    def plot_validation(self, example: dict) -> None:
        """``val_pred.png`` and ``val_truth.png``: the same slices of the first validation batch."""
        slices = plots.choose_slices(example["truth"]) if example["truth"].ndim == 4 else None
        self.reporter.draw("val_pred", plots.plot_batch, example["image"], example["pred"],
                           self.output_folder / "val_pred.png", "validation: prediction", slices=slices,
                           num_classes=self.raw_label_range)
        self.reporter.draw("val_truth", plots.plot_batch, example["image"], example["truth"],
                           self.output_folder / "val_truth.png", "validation: truth", slices=slices,
                           num_classes=self.raw_label_range)

    def after_training(self) -> None:
        """The validation pictures of the final network, when the last epoch did not draw them."""
        if self.options.plots and len(self.history) and not self._plotted_last:
            _, _, example = self.validate_patches(keep_example=True, max_batches=1)
            self.plot_validation(example)

    # --- what a person reads ------------------------------------------------------------------
    def epoch_line(self, row: dict) -> str:
        dice = ", ".join(f"{n} {'n/a' if math.isnan(d) else f'{d:.3f}'}" for n, d in zip(self.class_names, row["dice"]))
        return (f"epoch {row['epoch']}/{self.options.epochs - 1}: train loss {row['train_loss']:.4f}, val loss "
                f"{row['val_loss']:.4f}, pseudo-Dice [{dice}], EMA {row['ema_dice']:.4f}, lr {row['lr']:.3g}, "
                f"{row['epoch_seconds']:.1f} s, {row['iters_per_second']:.2f} it/s")

    def csv_columns(self) -> tuple[list[str], dict[str, list[str]]]:
        return (["epoch", "train_loss", "val_loss", "dice", "mean_dice", "ema_dice", "lr", "epoch_seconds",
                 "iters_per_second"], {"dice": list(self.class_names)})

    def draw_progress(self) -> None:
        if not self.options.plots:
            return
        self.reporter.draw("progress", plots.plot_progress, TrainingLog(self.history.to_list()),
                           list(self.class_names), self.output_folder / "progress.png")

    def extra_state(self) -> dict:
        return {"class_names": list(self.class_names)}
