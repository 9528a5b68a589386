"""Additive attention gate on a U-Net skip connection (Oktay et al., "Attention U-Net", 2018).

The gating signal is the decoder's upsampled feature map, which already has the skip's
spatial shape, so no resampling is needed inside the gate:
``alpha = sigmoid(psi(relu(W_x skip + W_g gate)))``, output ``skip * alpha``.
"""

from __future__ import annotations

from torch import nn

from segforge.networks.blocks import conv_class

__all__ = ["AttentionGate"]


class AttentionGate(nn.Module):
    """``(skip (B, C_s, *s), gate (B, C_g, *s)) -> skip * alpha`` with ``alpha`` in (0, 1), shape (B, 1, *s)."""

    def __init__(self, skip_channels: int, gate_channels: int, dims: int, inter_channels: int | None = None):
        super().__init__()
        inter = inter_channels or max(1, skip_channels // 2)
        conv = conv_class(dims)
        self.w_skip = conv(skip_channels, inter, 1, bias=False)
        self.w_gate = conv(gate_channels, inter, 1, bias=True)
        self.psi = conv(inter, 1, 1, bias=True)
        self.act = nn.ReLU()

    def attention(self, skip, gate):
        """The coefficients ``alpha`` (B, 1, *s)."""
        return self.psi(self.act(self.w_skip(skip) + self.w_gate(gate))).sigmoid()

    def forward(self, skip, gate):
        return skip * self.attention(skip, gate)
