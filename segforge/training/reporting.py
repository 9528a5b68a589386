"""What a person watches during training: the progress bar, one line per epoch, log.csv, plots, TensorBoard."""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from segforge.errors import InputError
from segforge.io.atomic import write_json_atomic
from segforge.training import plots
from segforge.training.progress_log import TrainingLog

__all__ = ["EpochReporter", "write_json"]


write_json = write_json_atomic


class EpochReporter:
    """Writes ``log.csv`` and ``progress.png`` after every epoch, prints its summary line, and feeds TensorBoard.

    The pictures are drawn in one background thread (on copies of the data), so the next
    epoch starts while matplotlib renders; :meth:`close` waits for them and an error in
    drawing surfaces at the next call.
    """

    def __init__(self, folder: Path, class_names: list[str], options, log=print):
        self.folder = Path(folder)
        self.class_names = class_names
        self.show_bar = options.progress_bar
        self.total_epochs = options.epochs
        self.log = log
        self._painter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segforge-plots")
        self._pending: list[Future] = []
        self.writer = None
        if options.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(self.folder / "tensorboard"))

    def bar(self, epoch: int, iterations: int) -> tqdm:
        return tqdm(total=iterations, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, unit="it",
                    disable=not self.show_bar)

    def end_epoch(self, history: TrainingLog) -> None:
        i = len(history) - 1
        e = history.epoch[i]
        history.write_csv(self.folder / "log.csv", self.class_names)
        self._draw(plots.plot_progress, TrainingLog.from_dict(history.to_dict()), list(self.class_names),
                   self.folder / "progress.png")
        dice = ", ".join(f"{n} {_fmt(d)}" for n, d in zip(self.class_names, history.dice[i]))
        self.log(f"epoch {e}/{self.total_epochs - 1}: train loss {history.train_loss[i]:.4f}, val loss "
                 f"{history.val_loss[i]:.4f}, pseudo-Dice [{dice}], EMA {history.ema_dice[i]:.4f}, "
                 f"lr {history.lr[i]:.3g}, {history.epoch_seconds[i]:.1f} s, {history.iters_per_second[i]:.2f} it/s")
        if self.writer is not None:
            w = self.writer
            w.add_scalars("loss", {"train": history.train_loss[i], "val": history.val_loss[i]}, e)
            w.add_scalars("pseudo_dice", {n: d for n, d in zip(self.class_names, history.dice[i])
                                          if not math.isnan(d)}, e)
            w.add_scalar("pseudo_dice/ema", history.ema_dice[i], e)
            w.add_scalar("lr", history.lr[i], e)
            w.add_scalar("iters_per_second", history.iters_per_second[i], e)
            w.flush()

    def plot_validation(self, example: dict | None, num_classes: int) -> None:
        """``val_pred.png`` and ``val_truth.png``: the same slices of the first validation batch."""
        if example is None:
            return
        slices = plots.choose_slices(example["truth"]) if example["truth"].ndim == 4 else None
        self._draw(plots.plot_batch, example["image"], example["pred"], self.folder / "val_pred.png",
                   "validation: prediction", slices=slices, num_classes=num_classes)
        self._draw(plots.plot_batch, example["image"], example["truth"], self.folder / "val_truth.png",
                   "validation: truth", slices=slices, num_classes=num_classes)

    def _draw(self, function, *args, **kwargs) -> None:
        for done in [f for f in self._pending if f.done()]:
            self._pending.remove(done)
            done.result()  # re-raises a drawing error here, in the training thread
        self._pending.append(self._painter.submit(function, *args, **kwargs))

    def close(self) -> None:
        """Wait for the pictures still being drawn; close TensorBoard."""
        try:
            for f in self._pending:
                f.result()
        finally:
            self._pending.clear()
            self._painter.shutdown(wait=True)
            if self.writer is not None:
                self.writer.close()


def _fmt(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3f}"
