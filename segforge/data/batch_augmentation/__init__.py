"""Training augmentation of a whole batch in torch, on the device the network trains on.

``--augment-on gpu``: the loader's workers draw each sample's parameters
(:func:`draw_parameters`), read only the source box those parameters need
(:func:`source_box`) and ship it in compact dtypes; :class:`BatchAugmentation` then makes the
augmented patches on the device — rotation, scaling, elastic deformation and mirroring as one
sampling grid per sample, then Gaussian noise, Gaussian blur, brightness, contrast,
low-resolution simulation and gamma (inverted, then plain), in batchgenerators' order, with
the settings of :class:`~segforge.data.augmentation.AugmentationSettings`.

Rows a transform was not drawn for are left alone. Which rows those are is known on the host
(the parameters are numpy arrays), so nothing waits for the device. With ``static_shapes``
(the default on CUDA) every transform that any sample of the batch needs runs over the whole
batch and unselected rows are put back with ``torch.where``: shapes stay the same from batch
to batch. Without it (the default on the CPU, where the work counts) only the selected rows
are computed. Both give the same result.
"""

from __future__ import annotations

import numpy as np
import torch

from segforge.data.augmentation import AugmentationSettings
from segforge.data.batch_augmentation import intensity
from segforge.data.batch_augmentation.parameters import (
    AugmentationParameters,
    affine_matrix,
    draw_parameters,
    source_box,
    spatial_axes,
)
from segforge.data.batch_augmentation.spatial import sampling_positions, spatial_transform

__all__ = ["AugmentationParameters", "BatchAugmentation", "draw_parameters", "source_box", "affine_matrix",
           "spatial_axes", "sampling_positions", "unpack_boxes"]


def unpack_boxes(flat: torch.Tensor, box_sizes: np.ndarray, channels: int) -> list[torch.Tensor]:
    """Split a flat buffer of concatenated ``(channels, *box_b)`` arrays into views, one per sample."""
    sizes = [int(channels * np.prod(s)) for s in box_sizes]
    return [part.view(channels, *[int(v) for v in s]) for part, s in zip(torch.split(flat, sizes), box_sizes)]


class BatchAugmentation:
    """Applies drawn :class:`AugmentationParameters` to a batch on its device.

    ``patch_size`` ``(z, y, x)`` or ``(y, x)``; ``settings`` the ranges and probabilities (also
    used by :meth:`draw`); ``static_shapes`` None = True on CUDA, False elsewhere (see the module).
    """

    def __init__(self, patch_size, settings: AugmentationSettings | None = None, static_shapes: bool | None = None):
        self.patch_size = [int(p) for p in patch_size]
        self.settings = settings or AugmentationSettings()
        self.static_shapes = static_shapes
        axes = spatial_axes(self.patch_size)
        # batchgenerators leaves z alone in the low-resolution simulation of anisotropic patches
        self.low_res_axes = axes if len(self.patch_size) == 3 and len(axes) == 2 else tuple(range(len(self.patch_size)))

    # --- the random half -------------------------------------------------------------------------
    def draw(self, rng, batch_size: int, channels: int) -> AugmentationParameters:
        return draw_parameters(rng, batch_size, channels, self.patch_size, self.settings)

    def source_box(self, params: AugmentationParameters, index: int) -> tuple[np.ndarray, np.ndarray]:
        return source_box(params, index, self.patch_size)

    # --- the deterministic half ------------------------------------------------------------------
    def __call__(self, boxes: list[torch.Tensor], label_boxes: list[torch.Tensor] | None,
                 params: AugmentationParameters) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``boxes[b]`` ``(C, *box_b)``, ``label_boxes[b]`` ``(1, *box_b)`` (the boxes :meth:`source_box`
        gives) -> ``(data (B, C, *patch) float32, labels (B, 1, *patch))``."""
        data, labels = spatial_transform(boxes, label_boxes, params, self.patch_size)
        return self.intensity(data, params), labels

    def intensity(self, x: torch.Tensor, params: AugmentationParameters) -> torch.Tensor:
        """Noise, blur, brightness, contrast, low resolution, gamma (inverted, plain) of ``x (B, C, *patch)``."""
        b, c = x.shape[:2]
        static = self.static_shapes if self.static_shapes is not None else x.device.type == "cuda"
        x = self._noise(x, params)
        s = self.settings
        per_channel = lambda mask: np.broadcast_to(np.asarray(mask)[:, None], (b, c))  # noqa: E731
        rows = x.reshape(b * c, *x.shape[2:])
        steps = [
            (params.blur_sigma > 0, params.blur_sigma,
             lambda r, v: intensity.gaussian_blur(r, v, max(s.blur_sigma))),
            (params.brightness != 1, params.brightness, intensity.multiply),
            (per_channel(params.contrast_mask), params.contrast, intensity.contrast),
            (params.low_res_zoom != 1, params.low_res_zoom,
             lambda r, v: intensity.simulate_low_resolution(r, v, self.low_res_axes, max(1.0, s.low_resolution_zoom[1]))),
            (per_channel(params.gamma_inverted_mask), params.gamma_inverted,
             lambda r, v: intensity.gamma(r, v, invert=True)),
            (per_channel(params.gamma_mask), params.gamma, lambda r, v: intensity.gamma(r, v, invert=False)),
        ]
        for mask, values, fn in steps:
            rows = _apply_to_rows(rows, np.asarray(mask).reshape(-1), np.asarray(values).reshape(-1), fn, static)
        return rows.view_as(x)

    def _noise(self, x: torch.Tensor, params: AugmentationParameters) -> torch.Tensor:
        """Gaussian noise of each sample from its own seed (replayable; the same on every call)."""
        chosen = np.flatnonzero(params.noise_std > 0)
        if len(chosen) == 0:
            return x
        x = x.clone()
        for b in chosen:
            generator = torch.Generator(device=x.device)
            generator.manual_seed(int(params.noise_seed[b]))
            noise = torch.randn(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype)
            x[b] += float(params.noise_std[b]) * noise
        return x


def _apply_to_rows(rows: torch.Tensor, selected: np.ndarray, values: np.ndarray, fn, static: bool) -> torch.Tensor:
    """``fn(rows, values)`` on the selected rows only (the rest unchanged); nothing if none is selected."""
    if not selected.any():
        return rows
    device = rows.device
    if static:
        out = fn(rows, torch.as_tensor(values, dtype=torch.float32).to(device, non_blocking=True))
        mask = torch.as_tensor(selected).to(device, non_blocking=True).view(-1, *[1] * (rows.ndim - 1))
        return torch.where(mask, out, rows)
    index = np.flatnonzero(selected)
    index_t = torch.as_tensor(index).to(device, non_blocking=True)
    out = fn(rows.index_select(0, index_t), torch.as_tensor(values[index], dtype=torch.float32).to(device))
    return rows.index_copy(0, index_t, out)
