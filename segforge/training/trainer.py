"""The one training loop. Every trainer is a :class:`Trainer` that fills in its own steps.

:class:`Trainer` owns what all trainers do alike:

* construction from ``(plans, configuration, fold, device, options)``; an option the trainer
  cannot honour is refused with one line (``refused_options``);
* seeding, determinism and CPU threads; the fold's cases (``splits.json``, or the split a
  ``dataset.json`` brought) and the check that they were preprocessed with these plans;
* the model folder's files (``plans.json``, ``dataset.json``, ``fold_K/training_options.json``);
* the optimiser (by name; the trainer's default) and the poly learning-rate schedule;
* mixed precision on CUDA for every trainer (bf16 where the GPU computes it natively, else
  fp16 with a gradient scaler: :mod:`segforge.devices`), gradient clipping;
* the epoch loop: ``iters_per_epoch`` training iterations with the loss summed on the device
  (no host sync per iteration), validation, one row per epoch in the log, ``best`` by the
  trainer's selection metric, and the decision to stop (time budget, patience) made in one
  method, :meth:`stop_reason`, asked after every iteration and after every epoch;
* one checkpoint format (``checkpoint_{latest,best,final}.pt``, loaded on the CPU with
  ``weights_only=True``; ``--continue`` resumes exactly);
* ``log.csv``, the progress bar, pictures drawn in a background thread, the experiment logger
  (TensorBoard or W&B; :class:`~segforge.training.reporting.EpochReporter`);
* the safeguards (:mod:`segforge.training.safeguards`): an incomplete preprocessing, a step that
  cannot fit the device, a fold trained with other plans than its model folder's other folds are
  refused before training; a run whose loss or weights stop being finite stops before saving.

A subclass gives its steps: :meth:`setup` (losses, data), :meth:`build_network`,
:meth:`make_training_loader`, :meth:`training_loss` (the train step's forward and loss; or
:meth:`train_step` whole), :meth:`validate` (-> a dict of metrics for the epoch's row),
:meth:`epoch_line`, :meth:`csv_columns`, :meth:`draw_progress`, and where it has some,
:meth:`extra_state` / :meth:`load_extra_state` (kept in the checkpoint), :meth:`on_start`,
:meth:`before_epoch`, :meth:`after_training`. Class attributes: ``name`` (the model folder is
``<name>__<configuration>``), ``configuration_kind``, ``default_optimizer``, ``best_metric``
with ``higher_is_better``, ``refused_options``, ``lr_spans_time_budget``.

Seams: :meth:`prepare_batch` (a loader's batch onto the device; ``--augment-on gpu`` augments
there), :meth:`stop_reason` (the one stop decision, per iteration), :meth:`wrap_network` (the
module the steps call: DDP, ``torch.compile``), :attr:`writes_files`.

Distributed runs (:mod:`segforge.training.distributed`; the process group is set up by whoever
starts the trainers, ``segforge.workflows.train``): every rank builds the same trainer; rank
``r`` trains on :attr:`batch_size` samples of each global batch with its own data streams,
validates every ``N``-th validation batch, and adds its sums to the others'; only rank 0
writes files (:attr:`writes_files`) and prints, and rank 0 alone decides when to stop
(:meth:`stop_reason` broadcasts the decision).
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from segforge import paths
from segforge.data import default_num_workers, fold_cases, list_preprocessed_cases, load_or_create_splits, parse_fold
from segforge.data.splits import check_preprocessing_complete
from segforge.devices import autocast_dtype, dtype_name, resolve_device
from segforge.errors import InputError
from segforge.io.atomic import temporary_path
from segforge.io.checkpoint import load_checkpoint, save_checkpoint
from segforge.io.json_file import read_json
from segforge.networks import to_device_layout
from segforge.planning.plans import Plans
from segforge.registry import look_up
from segforge.training.checkpoint import restore_rng_states, rng_states
from segforge.training.distributed import ProcessGroup, batch_share
from segforge.training.options import TrainingOptions, augment_on, changed_options, compile_network, cpu_threads
from segforge.training.progress_log import TrainingLog
from segforge.training.safeguards import check_finite_training, check_model_folder_plans, check_training_memory
from segforge.training.reporting import EpochReporter, write_json
from segforge.training.schedule import OPTIMIZERS, PolyLRSchedule, build_optimizer
from segforge.training.time_budget import (
    DEFAULT_ITERS_PER_EPOCH,
    DEFAULT_VAL_ITERS,
    SIZING_ITERATIONS,
    TimeBudget,
    budget_line,
    clock_text,
    describe_plan,
    size_epochs,
    validation_batch_seconds,
)

__all__ = ["Trainer", "STOP_SYNC_EVERY"]

# in a distributed run the ranks agree on stopping within an epoch every this many iterations
# (each agreement is a host sync); between epochs always
STOP_SYNC_EVERY = 10


class Trainer:
    """Train fold ``fold`` of configuration ``configuration_name``; :meth:`run` does everything."""

    name = "Trainer"
    configuration_kind = "segmentation"  # the Configuration.kind this trainer trains
    default_optimizer = "sgd"
    best_metric = "val_loss"  # the row key that picks checkpoint_best.pt and drives --patience
    best_metric_label = "validation loss"
    higher_is_better = False
    refused_options: dict[str, str] = {}  # TrainingOptions field -> why this trainer cannot honour it
    lr_spans_time_budget = False  # under --max-minutes, end the learning-rate decay when the time runs out
    budget_momentum = 0.99  # SGD's momentum under --max-minutes (without a budget always 0.99)
    budget_decay = (0.0, 0.9)  # under --max-minutes: (share of the steps held at the initial rate, decay exponent)
    compile_backend = "inductor"  # torch.compile's backend (tests use "eager": the wrapping without the compiler)

    def __init__(self, plans: Plans, configuration_name: str, fold: int | str, output_folder: str | Path | None = None,
                 device: str | torch.device | None = None, options: TrainingOptions | None = None,
                 preprocessed_dir: str | Path | None = None, log=print):
        self.plans = plans
        self.configuration = plans.configuration(configuration_name)
        self.check_configuration()
        self.fold = parse_fold(fold)
        self.options = options or TrainingOptions()
        self.check_options()
        self.dist = ProcessGroup.current()
        self.device = self.dist.device(resolve_device(device))
        self.log = log if self.dist.is_main else (lambda *_: None)
        self.preprocessed_dir = Path(preprocessed_dir or paths.preprocessed_root() / plans.dataset_name)
        self.data_folder = self.preprocessed_dir / self.configuration.data_identifier
        model_folder = paths.results_root() / plans.dataset_name / paths.model_folder_name(self.name,
                                                                                           self.configuration.name)
        self.output_folder = Path(output_folder) if output_folder else paths.fold_folder(model_folder, self.fold)
        self.model_folder = self.output_folder.parent
        self.num_workers = (self.options.num_workers if self.options.num_workers is not None
                            else default_num_workers(self.dist.local_world_size))
        self.augment_on = augment_on(self.options, self.device)  # "gpu": augmented on the training device
        self.compiled = compile_network(self.options, self.device)
        # this process's part of every global batch (all of it in a single process)
        self.batch_size = batch_share(self.configuration.batch_size, self.dist.rank, self.dist.world_size)
        self.writes_files = self.dist.is_main  # only the main process of a distributed run writes
        self.history = TrainingLog()
        self.start_epoch = 0
        self.best: float | None = None
        self.epochs_since_best = 0
        self.loaders: list = []
        self._stop: str | None = None
        # epochs: as given, else nnU-Net's; under --max-minutes sized from the measured iteration time
        self.iters_per_epoch = self.options.iters_per_epoch or DEFAULT_ITERS_PER_EPOCH
        self.val_iters = self.options.val_iters or DEFAULT_VAL_ITERS
        self.budget: TimeBudget | None = None  # under --max-minutes its clock starts now, with the trainer
        if self.options.max_minutes is not None:
            self.budget = TimeBudget(60 * self.options.max_minutes)
            self.budget.start()
        self._sized = self.options.max_minutes is None or self.options.iters_per_epoch is not None
        self._next_stop_check = 0  # distributed: the iteration (of this epoch) at which the ranks agree next
        self.pretrained: dict | None = None  # what --pretrained-weights loaded (training_options.json)

    # --- checks --------------------------------------------------------------------------------
    def check_configuration(self) -> None:
        kind = self.configuration.kind
        if kind != self.configuration_kind:
            raise InputError(f"configuration {self.configuration.name!r} is not a {self.configuration_kind} "
                             f"configuration (it is a {kind} one); {self.name} trains {self.configuration_kind} "
                             "configurations")

    def check_options(self) -> None:
        """Refuse, in one line, every option set to a value this trainer cannot honour."""
        refused = [n for n in changed_options(self.options) if n in self.refused_options]
        if refused:
            raise InputError(f"{self.name} cannot honour " + "; ".join(
                f"the option {n!r} ({self.refused_options[n]})" for n in refused) + "; leave it at its default")

    # --- set-up --------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Seeds, the fold's cases, network, optimiser, schedule, precision, then :meth:`setup`."""
        self.seed_everything()
        self.train_cases, self.val_cases = self.load_fold_cases()
        self.check_memory()
        self.plain_network = to_device_layout(self.build_network(), self.device)  # what checkpoints hold
        self.network = self.plain_network  # what the steps call: wrapped by wrap_network() in run()
        o = self.options
        if o.pretrained_weights:
            self.load_pretrained_weights(o.pretrained_weights)  # before any wrapping (DDP, compile)
        optimizer = o.optimizer or self.default_optimizer
        defaults = look_up(optimizer, OPTIMIZERS, "optimizer")
        self.initial_lr = o.initial_lr if o.initial_lr is not None else defaults.initial_lr
        self.momentum = self.budget_momentum if self.budget is not None else 0.99
        self.optimizer = build_optimizer(self.network.parameters(), optimizer, self.initial_lr, o.weight_decay,
                                         momentum=self.momentum)
        hold, exponent = self.budget_decay if self.budget is not None and self.lr_spans_time_budget else (0.0, 0.9)
        self.schedule = PolyLRSchedule(self.optimizer, self.initial_lr, o.epochs * self.iters_per_epoch, exponent,
                                       hold)
        self.amp_dtype = autocast_dtype(self.device)
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.setup()

    def load_pretrained_weights(self, path: str) -> None:
        """Fine-tuning: every checkpoint weight whose name and shape match (:mod:`segforge.training.pretrained`)."""
        from segforge.training.pretrained import load_pretrained_weights

        report = load_pretrained_weights(self.plain_network, path, self.configuration)
        for line in report.lines():
            self.log(line)
        self.pretrained = report.to_dict()

    def seed_everything(self) -> None:
        o = self.options
        self.seed_streams(o.seed)
        if o.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(o, self.num_workers, self.dist.local_world_size))

    def rank_seed(self, seed: int, epoch: int = 0) -> int:
        """``seed`` in a single process and on rank 0 from the start; a seed of its own for rank ``r`` of a
        distributed run (and for a rank other than 0 resuming at ``epoch``)."""
        if self.dist.rank or epoch:
            return int(np.random.SeedSequence([seed, self.dist.rank, epoch]).generate_state(1)[0])
        return int(seed)

    def seed_streams(self, seed: int, epoch: int = 0) -> None:
        """Python, numpy and torch random streams from :meth:`rank_seed`."""
        seed = self.rank_seed(seed, epoch)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def load_fold_cases(self) -> tuple[list[str], list[str]]:
        """``(training cases, validation cases)`` of this fold from ``splits.json`` (written once)."""
        cases = list_preprocessed_cases(self.data_folder)
        self.check_preprocessing(cases)
        splits = load_or_create_splits(self.preprocessed_dir, cases, self.predefined_split())
        return fold_cases(splits, self.fold, cases)

    def check_preprocessing(self, cases: list[str]) -> None:
        """Every case of the dataset was preprocessed, and with this configuration's settings: an
        interrupted preprocessing is refused, naming the missing cases, before splits are made."""
        from segforge.preprocessing.case import preprocessing_version

        if not cases:
            raise InputError("no preprocessed training cases; run segforge_plan_and_preprocess", self.data_folder)
        check_preprocessing_complete(self.preprocessed_dir, self.data_folder, cases,
                                     preprocessing_version(self.configuration))

    def check_memory(self) -> None:
        """Refuse, before the network is built, a training step that cannot fit the device."""
        check_training_memory(self.configuration, self.plans, self.device, autocast_dtype(self.device) is not None,
                              self.preprocessed_dir / "plans.json", self.batch_size)

    def predefined_split(self) -> dict | None:
        """``segforge_split`` of the dataset's ``dataset.json`` (preprocessed copy first, then raw), if any."""
        for path in (self.preprocessed_dir / "dataset.json", paths.raw_root() / self.plans.dataset_name / "dataset.json"):
            if path.is_file():
                return read_json(path).get("segforge_split")
        return None

    # --- what a subclass gives ------------------------------------------------------------------
    def setup(self) -> None:
        """Losses, case stores and whatever else the steps need (after network and optimiser)."""

    def build_network(self) -> torch.nn.Module:
        raise NotImplementedError

    def make_training_loader(self):
        """An endless iterator of training batches (dicts of tensors, moved by :meth:`prepare_batch`)."""
        raise NotImplementedError

    def training_loss(self, batch: dict) -> torch.Tensor:
        """Forward pass and loss of one device batch, under autocast (called by :meth:`train_step`)."""
        raise NotImplementedError

    def validate(self, epoch: int) -> dict:
        """The epoch's validation metrics: keys of its row in the log (``best_metric`` among them)."""
        raise NotImplementedError

    def epoch_line(self, row: dict) -> str:
        return (f"epoch {row['epoch']}/{self.options.epochs - 1}: train loss {row['train_loss']:.4f}, "
                f"lr {row['lr']:.3g}, {row['epoch_seconds']:.1f} s")

    def csv_columns(self) -> tuple[list[str], dict[str, list[str]]]:
        """``log.csv``'s columns, and names for the entries of list-valued ones."""
        return ["epoch", "train_loss", "lr", "epoch_seconds", "iters_per_second"], {}

    def draw_progress(self) -> None:
        """Ask the reporter for the progress pictures (drawn in the background)."""

    def extra_state(self) -> dict:
        """The trainer's own state for the checkpoint (plain values and tensors only)."""
        return {}

    def load_extra_state(self, checkpoint: dict) -> None:
        """Put back what :meth:`extra_state` saved."""

    def on_start(self) -> None:
        """Before the first epoch of this run (loaders running, checkpoint restored)."""

    def before_epoch(self, epoch: int) -> None:
        """Before the training iterations of ``epoch``."""

    def after_training(self) -> None:
        """After ``checkpoint_final.pt`` is written (loaders still running)."""

    def on_epochs_sized(self) -> None:
        """After :attr:`iters_per_epoch` / :attr:`val_iters` were sized to the time budget (first epoch)."""

    # --- one iteration ---------------------------------------------------------------------------
    def on_device(self, loader):
        """``loader`` with its batches copied to the GPU ahead of use (a side stream, a background thread);
        as it is on the CPU, and with no loader workers (whose in-process stream must stay in step with the
        checkpoint's random states)."""
        if self.device.type != "cuda" or self.num_workers == 0:
            return loader
        from segforge.data.device_prefetch import DevicePrefetcher

        return DevicePrefetcher(loader, self.device)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare_batch(self, batch: dict) -> dict:
        """A loader's batch on the device (non-blocking copies from pinned memory).

        The place for a transform that runs on the device between the loader and the train step."""
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def wrap_network(self) -> None:
        """The module the steps call: DistributedDataParallel across processes (the losses keep every
        output in the graph, :func:`~segforge.training.losses.in_graph`), then ``torch.compile``
        (:attr:`compiled`)."""
        network = self.plain_network
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            network = torch.nn.parallel.DistributedDataParallel(network, device_ids=ids)
        if self.compiled:
            network = torch.compile(network, backend=self.compile_backend)
        self.network = network

    def train_step(self, batch: dict) -> torch.Tensor:
        """Forward, backward, clip, step; returns the detached loss (no host sync)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.training_loss(batch)
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.options.grad_clip)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.schedule.step()
        return loss.detach()

    def stop_reason(self, epoch: int, iteration: int | None = None) -> str | None:
        """Why training stops now, or None: the one place that decides.

        Asked after every training iteration (``iteration``: iterations done in ``epoch``) and
        after every epoch (``iteration`` None, the epoch's row logged). The time budget, at both:
        stop when the next iteration (at the recent median time) would end past it, so training
        ends within one iteration of ``--max-minutes``, in the middle of an epoch if need be.
        Between epochs also patience (no better ``best_metric`` for ``patience`` epochs).
        In a distributed run rank 0 decides and every rank gets its answer (within an epoch every
        :data:`STOP_SYNC_EVERY` iterations, every iteration once the budget's end is that near),
        so all stop at the same step.
        """
        if not self.dist.enabled:
            return self.local_stop_reason(epoch, iteration)
        if iteration is not None and iteration < self._next_stop_check:
            return None
        answer = None
        if self.dist.is_main:
            fits = self.budget.iterations_left() if self.budget is not None else STOP_SYNC_EVERY
            answer = (self.local_stop_reason(epoch, iteration), max(1, min(STOP_SYNC_EVERY, fits)))
        reason, wait = self.dist.broadcast_object(answer)
        self._next_stop_check = (iteration or 0) + wait
        return reason

    def local_stop_reason(self, epoch: int, iteration: int | None = None) -> str | None:
        """:meth:`stop_reason` as this process sees it (its clock, its log)."""
        o = self.options
        if self.budget is not None and not self.budget.next_iteration_fits():
            cut = iteration is not None and iteration < self.iters_per_epoch
            where = f"in epoch {epoch} after {iteration} iterations" if cut else f"after epoch {epoch}"
            return (f"time budget: stopping {where} ({self.budget.elapsed / 60:.2f} of {o.max_minutes:g} minutes, "
                    f"{self.budget.iterations} iterations; the next would not fit)")
        if iteration is not None:
            return None
        if o.patience is not None and self.epochs_since_best >= o.patience:
            return f"early stop after epoch {epoch}: no better {self.best_metric_label} for {o.patience} epochs"
        return None

    def size_epochs_to_budget(self) -> None:
        """Once a few iterations are measured: the epoch and validation lengths for the time left
        (rank 0's measurement in a distributed run: every rank must run the same epochs)."""
        if self._sized or self.budget.iterations < SIZING_ITERATIONS:
            return
        self._sized = True
        sizing = None
        if self.dist.is_main:
            per = self.budget.seconds_per_iteration
            sizing = size_epochs(self.budget.left, per, validation_batch_seconds(per),
                                 max_val_iters=self.options.val_iters or DEFAULT_VAL_ITERS)
            self.log(budget_line(self.options.max_minutes, self.budget, sizing,
                                 self.predicted_seconds_per_iteration()))
            self.log(f"  epochs sized: {sizing.why}")
        sizing = self.dist.broadcast_object(sizing)
        self.iters_per_epoch = sizing.iters_per_epoch
        if self.options.val_iters is None:
            self.val_iters = sizing.val_iters
        self.on_epochs_sized()

    def predicted_seconds_per_iteration(self) -> float | None:
        """What the plan predicted for one iteration of this configuration on its device, if it did."""
        compute = self.plans.compute
        if compute is None:
            return None
        return compute.configurations.get(self.configuration.name, {}).get("predicted_seconds_per_iteration")

    # --- epochs ----------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """``iters_per_epoch`` train steps (fewer when :meth:`stop_reason` says so); returns
        (mean training loss, iterations per second). A run whose loss or weights stopped being
        finite is stopped here (:meth:`check_finite`), before anything of this epoch is saved."""
        self.network.train()
        loss_sum = torch.zeros((), device=self.device)
        nonfinite = torch.zeros((), dtype=torch.int64, device=self.device)
        bar = self.reporter.bar(epoch, self.iters_per_epoch)
        t0 = time.perf_counter()
        done = 0
        self._next_stop_check = 0
        if self.budget is not None:
            self.budget.mark()  # validation and checkpoints since the last iteration are not an iteration's time
        while done < self.iters_per_epoch:
            loss = self.train_step(self.prepare_batch(next(self.train_loader)))
            finite = torch.isfinite(loss)  # counted on the device: no host sync per iteration
            loss_sum += torch.where(finite, loss, torch.zeros_like(loss))
            nonfinite += (~finite).to(torch.int64)
            done += 1
            if self.budget is not None:
                if not self._sized or self.budget.left < 2 * (self.budget.seconds_per_iteration or 0.0):
                    loss_sum.item()  # timed to size the epochs, or near the end: wait for the device
                self.budget.iteration_done()
                if not self._sized:
                    self.size_epochs_to_budget()
                    bar.total = max(self.iters_per_epoch, done)
            bar.update(1)
            if done % 10 == 0 and not bar.disable:
                postfix = {"loss": f"{loss_sum.item() / done:.4f}"}  # a host sync every 10 iterations
                if self.budget is not None:
                    postfix["left"] = clock_text(self.budget.left)
                bar.set_postfix(postfix)
            self._stop = self.stop_reason(epoch, done)
            if self._stop is not None:
                break
        self.last_epoch_iterations = done
        # summed over the ranks of a distributed run, so every rank takes the same stop decision
        totals = self.dist.all_reduce(torch.stack([loss_sum.float(), nonfinite.float()]))
        iterations = done * self.dist.world_size
        bad = int(totals[1].item())
        mean_loss = (totals[0] / max(iterations - bad, 1)).item()
        seconds = time.perf_counter() - t0
        bar.close()
        self.check_finite(epoch, bad, iterations)
        return mean_loss, done / max(seconds, 1e-9)

    def check_finite(self, epoch: int, nonfinite_iterations: int, iterations: int) -> None:
        """Stop a run that diverged (weights, or every loss of the epoch, not finite) before it saves anything."""
        check_finite_training(self.network, epoch, nonfinite_iterations, iterations,
                              self.history[-1]["epoch"] if self.history else None, self.output_folder, self.initial_lr)

    def run(self, resume: bool = False) -> Path:
        """Train (or resume from ``checkpoint_latest.pt``); returns the fold folder.

        Under ``--max-minutes`` the clock started when the trainer was made: set-up, training and
        the epochs' validation count; the final checkpoint and what :meth:`after_training` does
        come after (timed and printed apart)."""
        self.initialize()
        latest = paths.checkpoint_file(self.output_folder, "latest")
        if resume and latest.is_file():
            self.load_checkpoint(latest)
            self.log(f"resuming fold {self.fold} at epoch {self.start_epoch} from {latest}")
        elif resume:
            self.log(f"no {latest.name} in {self.output_folder}; starting from scratch")
        self.wrap_network()
        self.write_model_folder_files()
        o = self.options
        self.log(f"{self.name}: {self.plans.dataset_name} {self.configuration.name} fold {self.fold}: "
                 f"{len(self.train_cases)} training / {len(self.val_cases)} validation cases, device {self.device}"
                 f"{f' ({torch.get_num_threads()} threads)' if self.device.type == 'cpu' else ''}, "
                 f"{self.num_workers} loader workers, epochs {self.start_epoch}..{o.epochs - 1}"
                 + (f", at most {o.max_minutes:g} minutes" if o.max_minutes is not None else ""))
        self.log(describe_plan(self.plans, self.configuration, self.device))
        self.reporter = EpochReporter(self.output_folder, o, self.log, self.writes_files)
        self.reporter.epoch = self.start_epoch
        epoch = self.start_epoch - 1
        try:
            self.train_loader = self.on_device(self.make_training_loader())
            self.loaders.append(self.train_loader)
            self.started = time.monotonic()
            self.on_start()
            for epoch in range(self.start_epoch, o.epochs):
                t0 = time.monotonic()
                lr = self.schedule.lr
                self.reporter.epoch = epoch  # pictures asked for from now on belong to this epoch
                self.before_epoch(epoch)
                train_loss, its = self.train_epoch(epoch)
                metrics = self.validate(epoch)
                self.end_epoch({"epoch": epoch, "train_loss": train_loss, **metrics, "lr": lr,
                                "epoch_seconds": time.monotonic() - t0, "iters_per_second": its})
                if self.budget is not None:
                    self.budget.epoch_ended()
                reason = self._stop or self.stop_reason(epoch)
                if reason is not None:
                    self.log(reason)
                    break
            finished, trained = time.monotonic(), self.budget.elapsed if self.budget is not None else 0.0
            self.save_checkpoint("final", max(epoch, 0))
            self.after_training()
            self.dist.barrier()  # rank 0's checkpoints are written before any rank goes on
        finally:
            for loader in self.loaders:
                loader.close()
            self.loaders.clear()
            self.reporter.close()
        if self.budget is not None:  # the loaders' and the pictures' end counted with the final checkpoint
            self.log(f"training: {self.budget.iterations} iterations in {trained / 60:.2f} of {o.max_minutes:g} "
                     f"minutes; then the final checkpoint and pictures in {time.monotonic() - finished:.1f} s")
        return self.output_folder

    def end_epoch(self, row: dict) -> None:
        """Log the row; keep the best; fit the learning rate to the time left; checkpoints, csv, pictures."""
        self.history.append(row)
        value = row.get(self.best_metric)
        improved = value is not None and not math.isnan(value) and (
            self.best is None or (value > self.best if self.higher_is_better else value < self.best))
        self.epochs_since_best = 0 if improved else self.epochs_since_best + 1
        if improved:
            self.best = float(value)
        if self.lr_spans_time_budget and self.budget is not None and self.budget.seconds_per_iteration:
            # the iterations still to come, at the measured time of an iteration and this epoch's share of the rest
            other = max(0.0, row["epoch_seconds"] / max(1, self.last_epoch_iterations)
                        - self.budget.seconds_per_iteration)
            self.schedule.fit_to_time(self.budget.left, self.budget.seconds_per_iteration + other)
            self.schedule.load_state_dict(self.dist.broadcast_object(self.schedule.state_dict()))  # rank 0's clock
        self.save_checkpoint("latest", row["epoch"])
        if improved:
            self.save_checkpoint("best", row["epoch"])
        columns, list_names = self.csv_columns()
        self.reporter.end_epoch(self.history, self.epoch_line(row), columns, list_names)
        self.draw_progress()

    # --- checkpoints and files -------------------------------------------------------------------
    def checkpoint_dict(self, epoch: int) -> dict:
        return {
            "trainer": self.name, "plans": self.plans.to_dict(), "configuration": self.configuration.name,
            "fold": str(self.fold), "plans_version": self.configuration.version(), "options": self.options.to_dict(),
            "amp_dtype": dtype_name(self.amp_dtype),
            "network_state": self.plain_network.state_dict(), "optimizer_state": self.optimizer.state_dict(),
            "scheduler_state": self.schedule.state_dict(), "grad_scaler_state": self.grad_scaler.state_dict(),
            "epoch": int(epoch), "rng_states": rng_states(), "log": self.history.to_list(),
            "best": self.best, "epochs_since_best": int(self.epochs_since_best),
            **self.extra_state(),
        }

    def save_checkpoint(self, which: str, epoch: int) -> None:
        if self.writes_files:
            save_checkpoint(paths.checkpoint_file(self.output_folder, which), self.checkpoint_dict(epoch))

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore everything :meth:`checkpoint_dict` saved; training goes on at ``epoch + 1``."""
        ckpt = load_checkpoint(path)  # on the CPU: RNG states must stay CPU tensors
        if ckpt.get("trainer") != self.name:
            raise InputError(f"checkpoint was written by {ckpt.get('trainer')!r}, not {self.name}; "
                             "train without --continue", path)
        if ckpt.get("plans_version") != self.configuration.version():
            raise InputError("the plans changed since this checkpoint was written; train without --continue", path)
        self.plain_network.load_state_dict(ckpt["network_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        self.schedule.load_state_dict(ckpt["scheduler_state"])
        if ckpt.get("grad_scaler_state"):
            self.grad_scaler.load_state_dict(ckpt["grad_scaler_state"])
        restore_rng_states(ckpt["rng_states"])  # rank 0's; the other ranks take fresh streams below
        self.history = TrainingLog.from_list(ckpt["log"])
        self.best = None if ckpt.get("best") is None else float(ckpt["best"])
        self.epochs_since_best = int(ckpt.get("epochs_since_best", 0))
        self.start_epoch = int(ckpt["epoch"]) + 1
        if not self.dist.is_main:
            self.seed_streams(self.options.seed, self.start_epoch)
        self.load_extra_state(ckpt)

    def check_model_folder_plans(self) -> None:
        """A model folder never holds folds trained with different plans (see training/safeguards.py)."""
        check_model_folder_plans(self.model_folder, self.fold, self.configuration.version())

    def write_model_folder_files(self) -> None:
        """``plans.json`` and ``dataset.json`` beside the folds (a model folder stands alone), and
        ``training_options.json`` of this run in the fold folder."""
        if not self.writes_files:
            return
        self.check_model_folder_plans()
        self.output_folder.mkdir(parents=True, exist_ok=True)
        self.plans.save(self.model_folder / "plans.json")
        source = next((p for p in (self.preprocessed_dir / "dataset.json",
                                   paths.raw_root() / self.plans.dataset_name / "dataset.json") if p.is_file()), None)
        target = self.model_folder / "dataset.json"
        if source is not None:
            with temporary_path(target) as tmp:
                shutil.copyfile(source, tmp)
        else:
            write_json(target, {"channel_names": self.plans.channel_names, **self.plans.label_scheme.to_dict()})
        write_json(self.output_folder / "training_options.json",
                   {"trainer": self.name, "configuration": self.configuration.name, "fold": str(self.fold),
                    "device": str(self.device), "num_workers": self.num_workers, "augment_on": self.augment_on,
                    "compile": self.compiled, "processes": self.dist.world_size,
                    "batch_size": self.configuration.batch_size,
                    "optimizer": self.options.optimizer or self.default_optimizer, "initial_lr": self.initial_lr,
                    "sgd_momentum": self.momentum,
                    "precision": dtype_name(self.amp_dtype), **{k: v for k, v in self.options.to_dict().items()
                                                                if k not in ("optimizer", "initial_lr", "augment_on", "compile")},
                    **({"pretrained": self.pretrained} if self.pretrained else {})})
