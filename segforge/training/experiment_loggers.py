"""Experiment loggers: where a run's numbers and pictures go besides ``log.csv`` and the PNG files.

``--logger tensorboard|wandb|none`` picks one from :data:`LOGGERS`. Both real loggers receive
the same things from :class:`~segforge.training.reporting.EpochReporter`:

* after every epoch, the row's numbers as scalars (:func:`row_scalars`: a list-valued column
  such as ``dice`` becomes one scalar per entry, ``dice/liver``), at step = epoch;
* every picture the trainer draws (``progress``, ``val_pred``, ``val_truth``,
  ``train_example``, the locator's), as an image at the epoch it was asked for.

TensorBoard events go to ``fold_K/tensorboard/``. Weights & Biases runs OFFLINE unless
``WANDB_MODE`` says otherwise: no account and no network are needed, the run is written to
``fold_K/wandb/offline-run-*/`` and can be uploaded later with ``wandb sync`` (docs/training.md).
A resumed run (``--continue``) goes on in the same W&B run (its id is kept in
``fold_K/wandb/run_id``) and appends to the same TensorBoard folder.
"""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path
from typing import Callable

import numpy as np

from segforge.errors import InputError
from segforge.io.atomic import write_text_atomic
from segforge.registry import look_up

__all__ = ["ExperimentLogger", "TensorBoardLogger", "WandbLogger", "LOGGERS", "create_logger", "row_scalars",
           "read_picture"]


class ExperimentLogger:
    """Logs nothing (``--logger none``); the real loggers override the three methods."""

    def scalars(self, values: dict[str, float], epoch: int) -> None:
        """``values``: tag -> number, at step ``epoch``."""

    def image(self, tag: str, picture: np.ndarray, epoch: int) -> None:
        """``picture``: ``(H, W, 3)`` uint8 RGB."""

    def close(self) -> None:
        """Flush and close (called once, at the end of the run)."""


class TensorBoardLogger(ExperimentLogger):
    """Events in ``folder/tensorboard`` (``tensorboard --logdir segforge_results``)."""

    def __init__(self, folder: Path, run_name: str, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise InputError("--logger tensorboard needs the tensorboard package: "
                             "pip install tensorboard (or segforge[tensorboard])") from None
        self.writer = SummaryWriter(str(Path(folder) / "tensorboard"))

    def scalars(self, values, epoch):
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def image(self, tag, picture, epoch):
        self.writer.add_image(tag, picture, epoch, dataformats="HWC")
        self.writer.flush()

    def close(self):
        self.writer.close()


class WandbLogger(ExperimentLogger):
    """A Weights & Biases run in ``folder/wandb``, offline unless ``WANDB_MODE`` is set.

    Every logged dict carries ``epoch``, declared as the step of every metric, so a picture
    finished drawing after the next epoch's numbers still lands at its own epoch.
    """

    def __init__(self, folder: Path, run_name: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise InputError("--logger wandb needs the wandb package: pip install wandb (or segforge[wandb])") from None
        self.wandb = wandb
        root = Path(folder) / "wandb"
        root.mkdir(parents=True, exist_ok=True)
        id_file = root / "run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        write_text_atomic(id_file, run_id + "\n")
        mode = os.environ.get("WANDB_MODE") or "offline"  # never asks for an account unless told to go online
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, x_save_requirements=False,
                                  disable_git=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "segforge", name=run_name, id=run_id,
                              resume="allow", dir=str(Path(folder)), mode=mode, config=config, settings=settings,
                              reinit="create_new")
        self.run.define_metric("epoch")
        self.run.define_metric("*", step_metric="epoch")

    def scalars(self, values, epoch):
        self.run.log({"epoch": epoch, **values})

    def image(self, tag, picture, epoch):
        self.run.log({"epoch": epoch, tag: self.wandb.Image(picture)})

    def close(self):
        self.run.finish()
        self.wandb.teardown()  # finish() can return before the service has written the run's file out


# name -> constructor(fold folder, run name, config dict) -> ExperimentLogger
LOGGERS: dict[str, Callable[..., ExperimentLogger]] = {
    "none": lambda folder, run_name, config: ExperimentLogger(),
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
}


def create_logger(name: str, folder: Path, run_name: str, config: dict) -> ExperimentLogger:
    """The logger ``name`` (``"none"``, ``"tensorboard"``, ``"wandb"``; "did you mean" otherwise)."""
    return look_up(name, LOGGERS, "logger")(Path(folder), run_name, config)


def row_scalars(row: dict, columns: list[str], list_names: dict[str, list[str]]) -> dict[str, float]:
    """The numbers of a log row to log: ``columns`` but ``epoch``; list entries as ``column/name``;
    None and NaN left out."""
    values = {}
    for key in columns:
        value = row.get(key)
        if key == "epoch" or value is None:
            continue
        if isinstance(value, (list, tuple)):
            names = list_names.get(key) or [str(i) for i in range(len(value))]
            for name, v in zip(names, value):
                if v is not None and not math.isnan(v):
                    values[f"{key}/{name}"] = float(v)
        elif isinstance(value, (int, float)) and not math.isnan(value):
            values[key] = float(value)
    return values


def read_picture(path: str | os.PathLike) -> np.ndarray:
    """A PNG as ``(H, W, 3)`` uint8 RGB."""
    import matplotlib.image

    picture = matplotlib.image.imread(str(path))
    if picture.dtype != np.uint8:
        picture = np.clip(picture * 255 + 0.5, 0, 255).astype(np.uint8)
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=2)
    return np.ascontiguousarray(picture[..., :3])
