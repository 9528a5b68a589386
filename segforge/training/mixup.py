"""Mixup: train on convex combinations of two samples and of their one-hot targets.

``--mixup input`` (Zhang et al. 2018) mixes the images, ``--mixup manifold`` (Verma et al. 2019)
the features after a randomly chosen encoder stage (and, in a U-Net, the skip connections of
the stages before it, so the decoder sees no unmixed feature of either sample). Either way the
target is the same mixture of the two one-hot label maps, and the loss is Dice + CE on those
soft targets (:class:`~segforge.training.losses.DiceCELoss` takes them).

One draw per training batch (drawn from the global numpy stream, which the trainer seeds and
its checkpoints restore), then deterministic functions, so a draw can be replayed and tested:

* ``lam ~ Beta(alpha, alpha)``; ``alpha`` 0.2 puts most draws near 0 or 1 (mild mixing), 1 is
  uniform;
* ``partner``: sample ``i`` is mixed with sample ``partner[i]``, a random cyclic shift of a
  shuffled order, so no sample is mixed with itself (a batch of one is left as it is);
* ``stage``: for manifold mixup, the encoder stage (0 = the first, full resolution) after which
  the features are mixed, uniform over the network's stages.

``mix(x, draw) = lam * x + (1 - lam) * x[partner]``;
``mixed_targets(labels, K, draw) = lam * onehot(labels) + (1 - lam) * onehot(labels[partner])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["MIXUP_MODES", "MixupDraw", "draw_mixup", "mix", "mixed_targets", "one_hot"]

MIXUP_MODES = ("none", "input", "manifold")


@dataclass(frozen=True)
class MixupDraw:
    """What one batch's mixup drew: the weight of each sample itself, its partner, and the stage."""

    lam: float
    partner: tuple[int, ...]
    stage: int | None = None


def draw_mixup(batch_size: int, alpha: float, n_stages: int | None = None, rng=np.random) -> MixupDraw:
    """``lam ~ Beta(alpha, alpha)``, a partner for every sample, and (``n_stages`` given) a stage."""
    lam = float(rng.beta(alpha, alpha))
    order = rng.permutation(batch_size)
    partner = np.empty(batch_size, dtype=np.int64)
    partner[order] = np.roll(order, -1)  # order[i] is mixed with order[i + 1]
    stage = int(rng.randint(n_stages)) if n_stages is not None else None
    return MixupDraw(lam, tuple(int(p) for p in partner), stage)


def mix(x: torch.Tensor, draw: MixupDraw) -> torch.Tensor:
    """``lam * x + (1 - lam) * x[partner]`` along the batch axis."""
    partner = torch.as_tensor(draw.partner, device=x.device)
    return draw.lam * x + (1.0 - draw.lam) * x[partner]


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer labels ``(B, 1, *s)`` or ``(B, *s)`` -> float32 ``(B, K, *s)``."""
    if labels.ndim >= 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    index = labels.long().unsqueeze(1)
    return torch.zeros((labels.shape[0], num_classes, *labels.shape[1:]), device=labels.device).scatter_(1, index, 1.0)


def mixed_targets(labels: torch.Tensor, num_classes: int, draw: MixupDraw) -> torch.Tensor:
    """The soft target ``(B, K, *s)`` of a mixed batch: the same mixture of the one-hot label maps
    (of the class probabilities, when ``labels`` already are ``(B, K, *s)`` floats)."""
    soft = labels.is_floating_point() and labels.ndim >= 2 and labels.shape[1] == num_classes > 1
    return mix(labels.float() if soft else one_hot(labels, num_classes), draw)
