"""Segmentation and heatmap losses.

* :class:`DiceCELoss`: soft Dice over the foreground classes (batch-wise) + cross-entropy; an
  ``ignore_index`` target value counts for neither.
* :class:`RegionDiceBCELoss`: region-based labels: soft Dice over the regions (sigmoid) + binary
  cross-entropy, with an optional ignore channel.
* :class:`DeepSupervisionLoss`: a weighted sum of a loss over the network's training outputs
  (full resolution first), with targets made by :func:`downsample_target` at the factors of
  :func:`~segforge.networks.unet.deep_supervision_scales`.
* :func:`heatmap_mse_loss`, :func:`relative_heatmap_mse`, :func:`heatmap_kl_loss`: the locator's losses.

Shapes: logits ``(B, K, *spatial)``; integer targets ``(B, 1, *spatial)`` or ``(B, *spatial)``
with labels in ``[0, K)`` (map padding labels such as -1 to 0 before the loss), or for
:class:`DiceCELoss` soft targets ``(B, K, *spatial)`` float (class probabilities per voxel).
Losses are computed in float32 even under autocast.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segforge.networks.unet import deep_supervision_scales

__all__ = [
    "DiceCELoss",
    "RegionDiceBCELoss",
    "DeepSupervisionLoss",
    "deep_supervision_weights",
    "deep_supervision_scales",
    "downsample_target",
    "in_graph",
    "downsample_probabilities",
    "heatmap_mse_loss",
    "relative_heatmap_mse",
    "heatmap_kl_loss",
]


def _as_index_target(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *s)`` or ``(B, *s)`` integer labels -> ``(B, *s)`` int64."""
    if target.ndim == logits.ndim:
        if target.shape[1] != 1:
            raise ValueError(f"target with a channel axis must have 1 channel, got shape {list(target.shape)}")
        target = target[:, 0]
    if target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"target shape {list(target.shape)} does not match logits {list(logits.shape)}")
    return target.long()


class DiceCELoss(nn.Module):
    """``dice_weight * (1 - mean foreground soft Dice) + ce_weight * cross-entropy``.

    The target is integer labels, or soft targets: float class probabilities ``(B, K, *s)``
    (mixup's mixed one-hot maps); one-hot soft targets give exactly the loss of the labels.

    The soft Dice of class ``k`` sums over the whole batch and all voxels ("batch Dice"):
    ``(2 * sum(p_k * g_k) + smooth) / (sum(p_k) + sum(g_k) + smooth)`` with ``p`` the softmax.
    A class absent from both prediction and target scores Dice 1 thanks to ``smooth``.
    A perfect confident prediction gives ~0; the loss is never negative.

    Across the processes of a distributed run (each holding part of the batch) ``sum_terms``
    (:func:`segforge.training.distributed.sum_across_ranks`) adds the batch Dice's sums of every
    process, and ``ce_scale`` (``processes * local batch / global batch``) weighs the local
    cross-entropy so that DDP's mean of the gradients is the gradient of the whole batch's loss.
    """

    def __init__(self, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5,
                 batch_dice: bool = True, sum_terms: Callable | None = None, ce_scale: float = 1.0,
                 ignore_index: int | None = None):
        super().__init__()
        self.dice_weight, self.ce_weight, self.smooth, self.batch_dice = dice_weight, ce_weight, smooth, batch_dice
        self.sum_terms = sum_terms
        self.ce_scale = float(ce_scale)
        self.ignore_index = ignore_index  # target value of voxels that count for neither term (the ignore label)

    def soft_dice(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-foreground-class soft Dice, shape ``(K - 1,)`` (or ``(B, K - 1)`` without batch Dice).

        ``target``: ``(B, *s)`` int64 labels, or ``(B, K, *s)`` float class probabilities."""
        probs = torch.softmax(logits.float(), dim=1)
        if _is_soft(target, logits):
            onehot = target.float()[:, 1:]
        else:
            valid = None
            if self.ignore_index is not None:  # ignored voxels: no prediction, no truth
                valid = (target != self.ignore_index).unsqueeze(1)
                target = torch.where(valid[:, 0], target, torch.zeros_like(target))
                probs = probs * valid
            onehot = torch.zeros_like(probs).scatter_(1, target.unsqueeze(1), 1.0)[:, 1:]
            if valid is not None:
                onehot = onehot * valid
        probs = probs[:, 1:]
        axes = [0] + list(range(2, logits.ndim)) if self.batch_dice else list(range(2, logits.ndim))
        intersection = (probs * onehot).sum(axes)
        denominator = probs.sum(axes) + onehot.sum(axes)
        if self.sum_terms is not None and self.batch_dice:
            intersection, denominator = self.sum_terms(torch.stack([intersection, denominator])).unbind(0)
        return (2 * intersection + self.smooth) / (denominator + self.smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] < 2:
            raise ValueError(f"DiceCELoss needs at least 2 classes (background + 1), got {logits.shape[1]}")
        if _is_soft(target, logits):  # soft targets (mixup, probabilities): CE = -sum_k t_k log p_k
            target = target.float()
            ce = F.cross_entropy(logits.float(), target)
        elif self.ignore_index is not None:
            target = _as_index_target(target, logits)
            # the mean over annotated voxels only (0 when none is; no host sync to find out)
            per_voxel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
            ce = per_voxel.sum() / (target != self.ignore_index).sum().clamp(min=1)
        else:
            target = _as_index_target(target, logits)
            ce = F.cross_entropy(logits.float(), target)
        ce = ce * self.ce_scale
        dice = self.soft_dice(logits, target).mean()
        return self.dice_weight * (1 - dice) + self.ce_weight * ce


def _is_soft(target: torch.Tensor, logits: torch.Tensor) -> bool:
    """A float target with one channel per class (``(B, K, *s)``, like the logits) holds probabilities."""
    return target.is_floating_point() and target.shape == logits.shape and logits.shape[1] > 1


class RegionDiceBCELoss(nn.Module):
    """Region-based labels: ``dice_weight * (1 - mean soft Dice over regions) + bce_weight * BCE``.

    ``logits`` ``(B, R, *s)``; ``target`` ``(B, R, *s)`` with 1 where the voxel is in region ``r``, or
    ``(B, R + 1, *s)`` when ``has_ignore``: the last channel is 1 on ignored voxels, which count for
    neither term. Soft Dice per region over the batch with the sigmoid, as :class:`DiceCELoss`
    (``sum_terms`` and ``bce_scale`` as its ``sum_terms`` and ``ce_scale`` in a distributed run).
    """

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1e-5,
                 has_ignore: bool = False, sum_terms: Callable | None = None, bce_scale: float = 1.0):
        super().__init__()
        self.dice_weight, self.bce_weight, self.smooth, self.has_ignore = dice_weight, bce_weight, smooth, has_ignore
        self.sum_terms = sum_terms
        self.bce_scale = float(bce_scale)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        regions = logits.shape[1]
        expected = regions + (1 if self.has_ignore else 0)
        if target.ndim != logits.ndim or target.shape[1] != expected or target.shape[2:] != logits.shape[2:]:
            raise ValueError(f"region target of shape {list(target.shape)} does not fit logits {list(logits.shape)} "
                             f"({expected} channels expected)")
        target = target.float()
        valid = (1 - target[:, -1:]) if self.has_ignore else torch.ones_like(target[:, :1])
        target = target[:, :regions]
        logits = logits.float()
        n_valid = (valid.sum() * regions).clamp(min=1)  # nothing annotated: both sums below are 0 (no host sync)
        bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * valid).sum() / n_valid
        probs = torch.sigmoid(logits) * valid
        target = target * valid
        axes = [0] + list(range(2, logits.ndim))
        intersection, denominator = (probs * target).sum(axes), probs.sum(axes) + target.sum(axes)
        if self.sum_terms is not None:
            intersection, denominator = self.sum_terms(torch.stack([intersection, denominator])).unbind(0)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)
        return self.dice_weight * (1 - dice.mean()) + self.bce_weight * bce * self.bce_scale


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Weights ``1, 1/2, 1/4, ...`` (full resolution first), the lowest set to 0, normalised to sum 1.

    As in nnU-Net the coarsest output gets no weight; with a single output its weight is 1.
    """
    if n_outputs < 1:
        raise ValueError(f"need at least one output, got {n_outputs}")
    weights = [0.5**i for i in range(n_outputs)]
    if n_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


class DeepSupervisionLoss(nn.Module):
    """``sum_i weights[i] * loss(outputs[i], targets[i])``; outputs and targets full resolution first.

    ``weights=None`` uses :func:`deep_supervision_weights`. Terms with weight 0 are skipped. A
    single tensor output (eval mode, or no deep supervision) is scored against ``targets[0]``.
    ``keep_all_outputs``: a skipped output still enters the loss, times 0 (:func:`in_graph`), as
    DistributedDataParallel needs a gradient for every parameter that made an output.
    """

    def __init__(self, loss: Callable, weights: Sequence[float] | None = None, keep_all_outputs: bool = False):
        super().__init__()
        self.loss = loss
        self.weights = None if weights is None else [float(w) for w in weights]
        self.keep_all_outputs = keep_all_outputs

    def forward(self, outputs, targets) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if isinstance(targets, torch.Tensor):
            targets = [targets]
        if len(targets) < len(outputs):
            raise ValueError(
                f"{len(outputs)} outputs but only {len(targets)} targets; build them with downsample_target"
            )
        weights = self.weights if self.weights is not None else deep_supervision_weights(len(outputs))
        if len(weights) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs but {len(weights)} deep supervision weights")
        total = None
        for w, out, tgt in zip(weights, outputs, targets):
            if w == 0:
                continue
            term = w * self.loss(out, tgt)
            total = term if total is None else total + term
        if self.keep_all_outputs:
            total = total + in_graph([out for w, out in zip(weights, outputs) if w == 0])
        return total


def in_graph(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """0 with a (zero) gradient path to every tensor of ``outputs``: added to a loss, it gives each
    parameter that made an unused output a gradient of 0 instead of none, which
    DistributedDataParallel waits for (a parameter reached from the outputs but without gradient
    would stall its reduction)."""
    zero = torch.zeros(())
    for out in outputs:
        zero = zero.to(out.device) + out.float().sum() * 0.0
    return zero


def downsample_target(target: torch.Tensor, scales: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Integer labels at each deep-supervision scale, full resolution first.

    ``target``: ``(B, 1, *s)`` or ``(B, *s)`` integer labels; ``scales``: per-axis integer
    downsampling factors from :func:`deep_supervision_scales`. Each output keeps ``target``'s
    layout with ``*s / factor`` spatial shape. Downsampling is a max-pool over each
    ``factor``-sized block, so a structure of a single voxel survives at every scale (where
    two foreground labels share a block, the higher label wins). Labels must be < 2**24.
    """
    had_channel = target.ndim == len(scales[0]) + 2
    x = target if had_channel else target.unsqueeze(1)
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    outputs = []
    for factors in scales:
        factors = tuple(int(f) for f in factors)
        if len(factors) != x.ndim - 2:
            raise ValueError(f"scale {list(factors)} does not match a target of {x.ndim - 2} spatial axes")
        if all(f == 1 for f in factors):
            y = x
        else:
            if any(sz % f for sz, f in zip(x.shape[2:], factors)):
                raise ValueError(f"target shape {list(x.shape[2:])} is not divisible by the scale {list(factors)}")
            y = pool(x.float(), kernel_size=factors, stride=factors).to(target.dtype)
        outputs.append(y if had_channel else y[:, 0])
    return outputs


def downsample_probabilities(target: torch.Tensor, scales: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Soft targets ``(B, K, *s)`` at each deep-supervision scale, full resolution first: the mean of
    each ``factor``-sized block (class probabilities stay probabilities)."""
    pool = F.avg_pool2d if target.ndim == 4 else F.avg_pool3d
    outputs = []
    for factors in scales:
        factors = tuple(int(f) for f in factors)
        if len(factors) != target.ndim - 2:
            raise ValueError(f"scale {list(factors)} does not match a target of {target.ndim - 2} spatial axes")
        outputs.append(target if all(f == 1 for f in factors) else pool(target.float(), factors, factors))
    return outputs


def heatmap_mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and target heatmaps, both ``(B, C, *s)``; 0 iff equal."""
    if pred.shape != target.shape:
        raise ValueError(f"heatmap shapes differ: prediction {list(pred.shape)}, target {list(target.shape)}")
    return F.mse_loss(pred.float(), target.float())


def relative_heatmap_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`heatmap_mse_loss` divided by the MSE of the all-zero map (``mean(target^2)``).

    A plain MSE of a small blob is reached almost entirely by predicting zeros, and its
    scale changes with sigma; relative to the all-zero answer, 1 means "found nothing" at
    every sigma, so the locator's curriculum threshold means the same thing at every step.
    """
    return heatmap_mse_loss(pred, target) / target.float().pow(2).mean().clamp_min(1e-12)


def heatmap_kl_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL(target || prediction) between heatmaps normalised to spatial distributions.

    ``pred`` ``(B, C, *s)`` holds logits: a spatial softmax turns each map into a distribution
    (so the soft-argmax read-out is its mean). ``target`` ``(B, C, *s)`` is a non-negative
    heatmap (e.g. a Gaussian) divided by its sum. The loss is 0 exactly when
    ``softmax(pred)`` equals the normalised target (e.g. ``pred = log(target)``), positive
    otherwise; averaged over batch and channels.
    """
    if pred.shape != target.shape:
        raise ValueError(f"heatmap shapes differ: prediction {list(pred.shape)}, target {list(target.shape)}")
    log_p = torch.log_softmax(pred.float().flatten(2), dim=-1)
    t = target.float().flatten(2).clamp_min(0)
    t = t / t.sum(-1, keepdim=True).clamp_min(eps)
    kl = (torch.xlogy(t, t) - t * log_p).sum(-1)
    return kl.mean()
