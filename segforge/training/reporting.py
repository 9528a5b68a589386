"""What a person watches during training: the progress bar, one line per epoch, log.csv, plots, and
an experiment logger (TensorBoard or Weights & Biases, :mod:`segforge.training.experiment_loggers`).

One :class:`EpochReporter` serves every trainer: the trainer hands it the log, the line to print
and the pictures to draw; the reporter knows nothing about segmentation or locating.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from segforge.io.atomic import write_json_atomic
from segforge.training.experiment_loggers import ExperimentLogger, create_logger, read_picture, row_scalars
from segforge.training.progress_log import TrainingLog

__all__ = ["EpochReporter", "write_json"]


write_json = write_json_atomic


class EpochReporter:
    """Writes ``log.csv`` after every epoch, prints the epoch's line, draws pictures, feeds the experiment logger.

    Pictures are drawn in one background thread (on copies of the data) so the next epoch
    starts while matplotlib renders. A picture asked for while the previous one of the same
    name is still being drawn is kept back and drawn when that one is done or at
    :meth:`close` (the latest wins), so a slow picture never piles up. A drawing error surfaces
    at the next call. A finished picture (the ``.png`` path among the drawing function's
    arguments) goes to the logger under its name, at the epoch it was asked for. With
    ``writes_files`` False (a process that is not the main one of a distributed run) nothing
    is written, drawn, logged or printed.
    """

    def __init__(self, folder: Path, options, log: Callable[[str], None] = print, writes_files: bool = True):
        self.folder = Path(folder)
        self.show_bar = options.progress_bar and writes_files
        self.log = log if writes_files else (lambda line: None)
        self.writes_files = writes_files
        self.epoch = 0  # the epoch pictures asked for now belong to
        self._painter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segforge-plots")
        self._running: dict[str, tuple[Future, int, Path | None]] = {}
        self._waiting: dict[str, tuple] = {}
        self.logger: ExperimentLogger = ExperimentLogger()
        if writes_files and options.logger != "none":
            run_name = f"{self.folder.parent.parent.name}/{self.folder.parent.name}/{self.folder.name}"
            self.logger = create_logger(options.logger, self.folder, run_name, options.to_dict())

    def bar(self, epoch: int, iterations: int) -> tqdm:
        return tqdm(total=iterations, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True, unit="it",
                    disable=not self.show_bar)

    def end_epoch(self, log: TrainingLog, line: str, columns: list[str], list_names: dict[str, list[str]]) -> None:
        """``log.csv`` from ``log``, the epoch's ``line``, and the last row's numbers to the logger."""
        if not self.writes_files:
            return
        log.write_csv(self.folder / "log.csv", columns, list_names)
        self.log(line)
        row = log[-1]
        self.epoch = int(row["epoch"])
        self.logger.scalars(row_scalars(row, columns, list_names), self.epoch)

    def picture(self, name: str, path: str | os.PathLike, epoch: int | None = None) -> None:
        """Hand a picture already written to ``path`` to the logger as ``name``."""
        if self.writes_files:
            self.logger.image(name, read_picture(path), self.epoch if epoch is None else epoch)

    def draw(self, name: str, function, *args, **kwargs) -> None:
        """Draw ``function(*args, **kwargs)`` in the background; ``name`` identifies the picture."""
        if not self.writes_files:
            return
        self._collect()
        if name in self._running:
            self._waiting[name] = (function, args, kwargs, self.epoch)
        else:
            self._start(name, function, args, kwargs, self.epoch)

    def _start(self, name, function, args, kwargs, epoch) -> None:
        path = next((Path(a) for a in (*args, *kwargs.values())
                     if isinstance(a, (str, os.PathLike)) and str(a).endswith(".png")), None)
        self._running[name] = (self._painter.submit(function, *args, **kwargs), epoch, path)

    def _collect(self) -> None:
        for name, (future, epoch, path) in list(self._running.items()):
            if future.done():
                del self._running[name]
                future.result()  # re-raises a drawing error here, in the training thread
                if path is not None:
                    self.picture(name, path, epoch)
                if name in self._waiting:
                    self._start(name, *self._waiting.pop(name))

    def close(self) -> None:
        """Draw what was kept back, wait for the pictures (and log them); close the logger."""
        try:
            while self._running:
                for future, _, _ in list(self._running.values()):
                    future.result()
                self._collect()
        finally:
            self._running.clear()
            self._waiting.clear()
            self._painter.shutdown(wait=True)
            self.logger.close()
