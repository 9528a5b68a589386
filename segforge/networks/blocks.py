"""Building blocks of the dynamic U-Net: conv-norm-nonlin, plain and residual stages.

Every block works for 2D and 3D (``dims``) and for anisotropic kernels/strides given per
axis (``(z, y, x)`` or ``(y, x)``). Normalisations and non-linearities are registered by
name (:data:`NORMS`, :data:`NONLINS`) so plans store names only.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segforge.registry import look_up

__all__ = ["InstanceNorm2d", "InstanceNorm3d", "NORMS", "NONLINS", "conv_class", "transposed_conv_class", "make_norm", "make_nonlin", "ConvNormAct", "PlainStage",
           "ResidualBlock", "ResidualStage", "STAGES"]


def _group_norm(channels: int, dims: int) -> nn.Module:
    groups = min(8, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels, affine=True)


class _GroupNormWhenNoGrad:
    """Instance normalisation computed as a group norm with one group per channel when no
    gradient is recorded (prediction, validation).

    The same numbers (to float rounding), but ``aten::instance_norm`` first copies a
    channels-last input to contiguous and then runs the batch-norm kernel on ``(1, B*C, ...)``:
    in a CPU forward pass of the planned U-Nets that copy and kernel took about as long as the
    convolutions, and the next convolution copied back to channels-last. ``group_norm`` keeps
    the layout and was 1.3-1.6x faster for the whole eval forward (docs/prediction.md). With
    gradients the stock kernel stays: its backward is what training was measured with.
    Parameters and state-dict keys are those of ``nn.InstanceNormNd`` (checkpoints load as before).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or self.track_running_stats:
            return super().forward(x)
        self._check_input_dim(x)
        unbatched = x.dim() == self._get_no_batch_dim()
        if unbatched:
            x = x.unsqueeze(0)
        out = F.group_norm(x, self.num_features, self.weight, self.bias, self.eps)
        return out.squeeze(0) if unbatched else out


class InstanceNorm2d(_GroupNormWhenNoGrad, nn.InstanceNorm2d):
    """``nn.InstanceNorm2d`` with the no-gradient fast path of :class:`_GroupNormWhenNoGrad`."""


class InstanceNorm3d(_GroupNormWhenNoGrad, nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` with the no-gradient fast path of :class:`_GroupNormWhenNoGrad`."""


# name -> (channels, dims) -> module
NORMS = {
    "instance": lambda c, d: (InstanceNorm2d if d == 2 else InstanceNorm3d)(c, eps=1e-5, affine=True),
    "batch": lambda c, d: (nn.BatchNorm2d if d == 2 else nn.BatchNorm3d)(c, eps=1e-5),
    "group": _group_norm,
}

# name -> () -> module, with the negative slope used for Kaiming initialisation
NONLINS = {
    "leaky_relu": lambda: nn.LeakyReLU(negative_slope=1e-2, inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "gelu": lambda: nn.GELU(),
}


def conv_class(dims: int) -> type[nn.Module]:
    if dims not in (2, 3):
        raise ValueError(f"networks are 2D or 3D, got dims={dims}")
    return nn.Conv2d if dims == 2 else nn.Conv3d


def transposed_conv_class(dims: int) -> type[nn.Module]:
    conv_class(dims)
    return nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d


def make_norm(name: str, channels: int, dims: int) -> nn.Module:
    return look_up(name, NORMS, "normalisation")(channels, dims)


def make_nonlin(name: str) -> nn.Module:
    return look_up(name, NONLINS, "non-linearity")()


class ConvNormAct(nn.Sequential):
    """Convolution (``same`` padding, optional stride) -> normalisation -> non-linearity.

    ``(B, in_ch, *s) -> (B, out_ch, *s / stride)``; ``nonlin=None`` leaves the activation out.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: Sequence[int], stride: Sequence[int], dims: int,
                 norm: str, nonlin: str | None):
        padding = [k // 2 for k in kernel]
        layers = [
            conv_class(dims)(in_ch, out_ch, tuple(kernel), stride=tuple(stride), padding=tuple(padding), bias=True),
            make_norm(norm, out_ch, dims),
        ]
        if nonlin is not None:
            layers.append(make_nonlin(nonlin))
        super().__init__(*layers)


class PlainStage(nn.Sequential):
    """``n_conv`` conv-norm-nonlin; the first one carries the stage's stride."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride, n_conv: int, dims: int, norm: str, nonlin: str):
        ones = [1] * dims
        super().__init__(*[
            ConvNormAct(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else ones, dims, norm, nonlin)
            for i in range(n_conv)
        ])


class ResidualBlock(nn.Module):
    """Two convolutions plus a shortcut: ``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``.

    The shortcut is the identity, or average pooling by the stride followed by a 1x1
    convolution and normalisation when the shape or channel count changes.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel, stride, dims: int, norm: str, nonlin: str):
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, kernel, stride, dims, norm, nonlin)
        self.conv2 = ConvNormAct(out_ch, out_ch, kernel, [1] * dims, dims, norm, None)
        strided = any(s != 1 for s in stride)
        if not strided and in_ch == out_ch:
            self.shortcut = nn.Identity()
        else:
            layers = []
            if strided:
                pool = nn.AvgPool2d if dims == 2 else nn.AvgPool3d
                layers.append(pool(tuple(stride), stride=tuple(stride)))
            layers += [conv_class(dims)(in_ch, out_ch, 1, bias=False), make_norm(norm, out_ch, dims)]
            self.shortcut = nn.Sequential(*layers)
        self.act = make_nonlin(nonlin)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class ResidualStage(nn.Sequential):
    """``max(1, n_conv // 2)`` residual blocks (two convolutions each); the first is strided."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride, n_conv: int, dims: int, norm: str, nonlin: str):
        n_blocks = max(1, n_conv // 2)
        ones = [1] * dims
        super().__init__(*[
            ResidualBlock(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else ones, dims, norm, nonlin)
            for i in range(n_blocks)
        ])


# topology.block -> encoder stage class (the decoder is always plain)
STAGES = {"plain": PlainStage, "residual": ResidualStage}
