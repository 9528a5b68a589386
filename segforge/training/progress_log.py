"""The per-epoch training log: one row dict per finished epoch, kept in the checkpoint and written as ``log.csv``.

Every trainer logs ``epoch``, ``train_loss``, ``lr``, ``epoch_seconds`` and ``iters_per_second``
plus its own validation metrics (the segmentation trainer: ``val_loss``, ``dice`` — one value
per foreground class —, ``mean_dice``, ``ema_dice``; the locator: ``sigma``, ``val_loss``,
centroid errors...). Values are numbers, None or lists of numbers, so the log fits a
``weights_only`` checkpoint.
"""

from __future__ import annotations

import csv
import io
import math
import os
from typing import Iterable

from segforge.io.atomic import write_text_atomic

__all__ = ["TrainingLog"]


class TrainingLog:
    """Rows of one training run, in epoch order."""

    def __init__(self, rows: Iterable[dict] = ()):
        self.rows: list[dict] = [dict(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainingLog) and self.rows == other.rows

    def append(self, row: dict) -> None:
        self.rows.append(dict(row))

    def column(self, name: str) -> list:
        """``[row[name] for row in rows]`` (None where a row lacks it)."""
        return [r.get(name) for r in self.rows]

    def to_list(self) -> list[dict]:
        return [dict(r) for r in self.rows]

    @classmethod
    def from_list(cls, rows: list[dict]) -> "TrainingLog":
        return cls(rows)

    def write_csv(self, path: str | os.PathLike, columns: list[str], list_names: dict[str, list[str]] | None = None,
                  digits: dict[str, int] | None = None) -> None:
        """``log.csv`` with ``columns`` in order; a list-valued column ``k`` becomes one column
        ``k_<name>`` per entry of ``list_names[k]`` (e.g. ``dice_liver``). Numbers are written
        with 6 significant digits (``digits`` overrides per column), ``lr`` exactly, None/NaN empty."""
        list_names, digits = list_names or {}, {"epoch_seconds": 3, "iters_per_second": 3, **(digits or {})}
        header = []
        for c in columns:
            header += [f"{c}_{n}" for n in list_names[c]] if c in list_names else [c]
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        for row in self.rows:
            cells = []
            for c in columns:
                value = row.get(c)
                if c in list_names:
                    values = list(value) if value is not None else []
                    values += [None] * (len(list_names[c]) - len(values))
                    cells += [_num(v) for v in values]
                elif c == "lr":
                    cells.append("" if value is None else repr(float(value)))
                elif c == "epoch":
                    cells.append(str(int(value)))
                else:
                    cells.append(_num(value, digits.get(c, 6)))
            w.writerow(cells)
        write_text_atomic(path, buf.getvalue())


def _num(v, digits: int = 6) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{float(v):.{digits}g}"
