"""The per-epoch training log: lists of numbers kept in the checkpoint and written as ``log.csv``."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field, fields

from segforge.io.atomic import write_text_atomic

__all__ = ["TrainingLog"]


@dataclass
class TrainingLog:
    """One entry per finished epoch in each list; ``dice`` holds one value per foreground class (NaN when
    a class appeared in neither prediction nor truth of the validation patches)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    dice: list[list[float]] = field(default_factory=list)
    mean_dice: list[float] = field(default_factory=list)
    ema_dice: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    iters_per_second: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epoch)

    def append(self, **row) -> None:
        for f in fields(self):
            getattr(self, f.name).append(row[f.name])

    def to_dict(self) -> dict:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingLog":
        return cls(**{f.name: list(d.get(f.name, [])) for f in fields(cls)})

    def write_csv(self, path: str | os.PathLike, class_names: list[str]) -> None:
        """``log.csv``: epoch, losses, one ``dice_<name>`` column per class, mean and EMA Dice, lr, timing."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["epoch", "train_loss", "val_loss", *[f"dice_{n}" for n in class_names], "mean_dice",
                    "ema_dice", "lr", "epoch_seconds", "iters_per_second"])
        for i in range(len(self)):
            w.writerow([self.epoch[i], _num(self.train_loss[i]), _num(self.val_loss[i]),
                        *[_num(d) for d in self.dice[i]], _num(self.mean_dice[i]), _num(self.ema_dice[i]),
                        repr(float(self.lr[i])), _num(self.epoch_seconds[i], 3), _num(self.iters_per_second[i], 3)])
        write_text_atomic(path, buf.getvalue())


def _num(v: float, digits: int = 6) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{float(v):.{digits}g}"
