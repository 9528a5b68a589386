"""What a person watches during training: the progress bar, one line per epoch, log.csv, plots, TensorBoard.

One :class:`EpochReporter` serves every trainer: the trainer hands it the log, the line to print
and the pictures to draw; the reporter knows nothing about segmentation or locating.
"""

from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from segforge.errors import InputError
from segforge.io.atomic import write_json_atomic
from segforge.training.progress_log import TrainingLog

__all__ = ["EpochReporter", "write_json"]


write_json = write_json_atomic


class EpochReporter:
    """Writes ``log.csv`` after every epoch, prints the epoch's line, draws pictures, feeds TensorBoard.

    Pictures are drawn in one background thread (on copies of the data) so the next epoch
    starts while matplotlib renders. A picture asked for while the previous one of the same
    name is still being drawn is kept back and drawn when that one is done or at
    :meth:`close` (the latest wins), so a slow picture never piles up. A drawing error surfaces
    at the next call. With ``writes_files`` False (a process that is not the main one of a
    distributed run) nothing is written, drawn or printed.
    """

    def __init__(self, folder: Path, options, log: Callable[[str], None] = print, writes_files: bool = True):
        self.folder = Path(folder)
        self.show_bar = options.progress_bar and writes_files
        self.log = log if writes_files else (lambda line: None)
        self.writes_files = writes_files
        self._painter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segforge-plots")
        self._running: dict[str, Future] = {}
        self._waiting: dict[str, tuple] = {}
        self.writer = None
        if options.tensorboard and writes_files:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(str(self.folder / "tensorboard"))

    def bar(self, epoch: int, iterations: int) -> tqdm:
        return tqdm(total=iterations, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, unit="it",
                    disable=not self.show_bar)

    def end_epoch(self, log: TrainingLog, line: str, columns: list[str], list_names: dict[str, list[str]]) -> None:
        """``log.csv`` from ``log``, the epoch's ``line``, and the last row's numbers to TensorBoard."""
        if not self.writes_files:
            return
        log.write_csv(self.folder / "log.csv", columns, list_names)
        self.log(line)
        if self.writer is not None:
            row = log[-1]
            for key in columns:
                value = row.get(key)
                if key == "epoch" or value is None:
                    continue
                if isinstance(value, (list, tuple)):
                    names = list_names.get(key, [str(i) for i in range(len(value))])
                    self.writer.add_scalars(key, {n: v for n, v in zip(names, value)
                                                  if v is not None and not math.isnan(v)}, row["epoch"])
                elif isinstance(value, (int, float)) and not math.isnan(value):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def draw(self, name: str, function, *args, **kwargs) -> None:
        """Draw ``function(*args, **kwargs)`` in the background; ``name`` identifies the picture."""
        if not self.writes_files:
            return
        self._collect()
        if name in self._running:
            self._waiting[name] = (function, args, kwargs)
        else:
            self._running[name] = self._painter.submit(function, *args, **kwargs)

    def _collect(self) -> None:
        for name, future in list(self._running.items()):
            if future.done():
                del self._running[name]
                future.result()  # re-raises a drawing error here, in the training thread
                if name in self._waiting:
                    function, args, kwargs = self._waiting.pop(name)
                    self._running[name] = self._painter.submit(function, *args, **kwargs)

    def close(self) -> None:
        """Draw what was kept back, wait for the pictures; close TensorBoard."""
        try:
            while self._running:
                for future in list(self._running.values()):
                    future.result()
                self._collect()
        finally:
            self._running.clear()
            self._waiting.clear()
            self._painter.shutdown(wait=True)
            if self.writer is not None:
                self.writer.close()
