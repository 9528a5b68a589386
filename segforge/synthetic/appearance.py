"""How a tissue map looks in CT or MR.

* CT: Hounsfield units stored as ``int16``; air -1000 inside the scanned cylinder, 0
  (padding, as in datasets padded to a fixed size) outside it; slight partial-volume blur,
  a faint smooth texture and Gaussian noise. Channel 1 is a non-contrast phase.
* MR: ``float32`` with no fixed units (a random scale per case), a smooth multiplicative
  bias field and Rician noise; everything outside the body is 0 (background-masked
  export). Channel 0 is T1-like, channel 1 T2-like.

Channels beyond the tables' length reuse them with a shifted contrast (``2`` looks like
``0`` with the order of tissues perturbed), so any channel count is possible.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from segforge.synthetic.phantoms import PhantomGrid, Tissue, smooth_field

__all__ = ["CT_HU", "MR_SIGNAL", "render_ct", "render_mr"]

T = Tissue
# tissue -> value per channel: (contrast-enhanced, native) HU
CT_HU = {
    T.PADDING: (0, 0), T.AIR: (-1000, -1000), T.SOFT: (40, 40), T.FAT: (-100, -100), T.BONE: (600, 600),
    T.LIVER: (140, 60), T.GALLBLADDER: (-30, 5), T.KIDNEY: (260, 35), T.LESION: (70, 30),
    T.TARGET: (110, 50), T.VESSEL: (110, 45), T.NODE: (75, 40),
}
# tissue -> relative signal per channel: (T1-like, T2-like)
MR_SIGNAL = {
    T.PADDING: (0.0, 0.0), T.AIR: (0.0, 0.0), T.SOFT: (0.45, 0.35), T.FAT: (0.95, 0.70), T.BONE: (0.15, 0.10),
    T.LIVER: (0.72, 0.22), T.GALLBLADDER: (0.18, 0.95), T.KIDNEY: (0.60, 0.62), T.LESION: (0.38, 0.80),
    T.TARGET: (0.80, 0.55), T.VESSEL: (0.80, 0.92), T.NODE: (0.58, 0.48),
}


def _lookup(table: dict, tissue: np.ndarray, channel: int) -> np.ndarray:
    column = channel % 2
    values = np.zeros(max(int(t) for t in table) + 1, dtype=np.float32)
    for t, per_channel in table.items():
        values[int(t)] = per_channel[column]
    if channel >= 2:  # extra channels: same tissues, a different contrast
        shift = np.random.default_rng(channel).uniform(0.8, 1.2, size=values.shape).astype(np.float32)
        values *= shift
    return values[tissue]


def render_ct(tissue: np.ndarray, grid: PhantomGrid, channel: int, rng: np.random.Generator) -> np.ndarray:
    """``tissue (Z, Y, X)`` -> HU ``(Z, Y, X)`` int16; padding stays exactly 0."""
    hu = _lookup(CT_HU, tissue, channel)
    hu = ndimage.gaussian_filter(hu, sigma=0.6, mode="nearest", truncate=2.0)
    hu += 6.0 * smooth_field(rng, grid.axes_mm, correlation_mm=6.0)
    hu += 12.0 * rng.standard_normal(hu.shape, dtype=np.float32)
    hu[tissue == Tissue.PADDING] = 0
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def render_mr(tissue: np.ndarray, grid: PhantomGrid, channel: int, rng: np.random.Generator) -> np.ndarray:
    """``tissue (Z, Y, X)`` -> signal ``(Z, Y, X)`` float32; 0 outside the body."""
    signal = _lookup(MR_SIGNAL, tissue, channel)
    signal = ndimage.gaussian_filter(signal, sigma=0.6, mode="nearest", truncate=2.0)
    signal *= 1.0 + 0.03 * smooth_field(rng, grid.axes_mm, correlation_mm=6.0)
    extent = max(n * s for n, s in zip(grid.shape, grid.spacing))
    signal *= np.exp(0.2 * smooth_field(rng, grid.axes_mm, correlation_mm=0.5 * extent))
    sigma = 0.025
    real = signal + sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    imag = sigma * rng.standard_normal(signal.shape, dtype=np.float32)
    signal = np.sqrt(real**2 + imag**2) * np.float32(rng.uniform(200.0, 1000.0))
    signal[(tissue == Tissue.PADDING) | (tissue == Tissue.AIR)] = 0.0
    return signal.astype(np.float32)
