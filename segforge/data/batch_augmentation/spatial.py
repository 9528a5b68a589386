"""Rotation, scaling, elastic deformation and mirroring as one sampling grid per sample.

Each sample arrives as its source box (:func:`~segforge.data.batch_augmentation.parameters.source_box`):
a sample that is only mirrored is its box flipped (exact), any other is read from its box by
``grid_sample`` at ``centre + M @ (F @ x~ + d(x~))`` — linear interpolation for images, nearest
for labels, zeros outside the box (outside the image the box already holds zeros). The
elastic displacement ``d`` is the coarse field of the parameters, interpolated linearly to
the patch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from segforge.data.batch_augmentation.parameters import (
    AugmentationParameters,
    affine_matrix,
    source_box,
    spatial_axes,
)

__all__ = ["sampling_positions", "spatial_transform"]

_GRID_CACHE: dict = {}


def _centred_grid(patch_size, device) -> torch.Tensor:
    """``(D, *patch)`` float32 centred voxel coordinates ``x - (P - 1) / 2`` (cached per device)."""
    key = (tuple(patch_size), str(device))
    grid = _GRID_CACHE.get(key)
    if grid is None:
        axes = [torch.arange(p, dtype=torch.float32, device=device) - (p - 1) / 2 for p in patch_size]
        grid = torch.stack(torch.meshgrid(*axes, indexing="ij"))
        _GRID_CACHE.clear()  # one patch size per run: keep one entry
        _GRID_CACHE[key] = grid
    return grid


def sampling_positions(params: AugmentationParameters, index: int, patch_size, device) -> torch.Tensor:
    """``(D, *patch)`` source positions of every output voxel, in voxels of the sample's box."""
    patch_size = [int(p) for p in patch_size]
    dims = len(patch_size)
    v = _centred_grid(patch_size, device)
    signs = torch.tensor([-1.0 if f else 1.0 for f in params.mirror[index]], device=device).view(dims, *[1] * dims)
    v = v * signs
    field = params.elastic[index]
    if field is not None:
        axes = spatial_axes(patch_size)
        coarse = torch.as_tensor(field, device=device)[None]
        mode = "trilinear" if len(axes) == 3 else "bilinear"
        d = F.interpolate(coarse, size=[patch_size[a] for a in axes], mode=mode, align_corners=True)[0]
        if len(axes) < dims:  # anisotropic: the in-plane field is the same on every slice
            d = d[:, None].expand(len(axes), patch_size[0], *d.shape[1:])
        v = v.clone()
        for k, a in enumerate(axes):
            v[a] += d[k]
    m = torch.as_tensor(affine_matrix(params, index, patch_size), dtype=torch.float32, device=device)
    lower, _ = source_box(params, index, patch_size)
    centre = torch.as_tensor((np.asarray(patch_size) - 1) / 2 - lower, dtype=torch.float32, device=device)
    return torch.einsum("ij,j...->i...", m, v) + centre.view(dims, *[1] * dims)


def _flip(x: torch.Tensor, mirror: np.ndarray) -> torch.Tensor:
    dims = [a + 1 for a in np.flatnonzero(mirror)]  # x is (C, *spatial)
    return torch.flip(x, dims) if dims else x


def spatial_transform(boxes: list[torch.Tensor], label_boxes: list[torch.Tensor] | None,
                      params: AugmentationParameters, patch_size) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``boxes[b]`` ``(C, *box_b)`` (any float dtype), ``label_boxes[b]`` ``(1, *box_b)`` integers ->
    ``(data (B, C, *patch) float32, labels (B, 1, *patch) of the labels' dtype)``."""
    patch_size = [int(p) for p in patch_size]
    dims = len(patch_size)
    spatial = params.spatial
    data_out, label_out = [], []
    for b, box in enumerate(boxes):
        box = box.float()
        labels = None if label_boxes is None else label_boxes[b]
        if not spatial[b]:
            if tuple(box.shape[1:]) != tuple(patch_size):
                raise ValueError(f"sample {b}: a box of {list(box.shape[1:])} for a plain crop of {patch_size}")
            data_out.append(_flip(box, params.mirror[b]))
            if labels is not None:
                label_out.append(_flip(labels, params.mirror[b]))
            continue
        positions = sampling_positions(params, b, patch_size, box.device)
        size = torch.tensor(box.shape[1:], dtype=torch.float32, device=box.device).view(dims, *[1] * dims)
        normalised = (2 * positions + 1) / size - 1  # align_corners=False: voxel centres
        grid = normalised.flip(0).movedim(0, -1)[None]  # grid_sample wants (x, y, z) last
        data_out.append(F.grid_sample(box[None], grid, mode="bilinear", padding_mode="zeros",
                                      align_corners=False)[0])
        if labels is not None:
            sampled = F.grid_sample(labels[None].float(), grid, mode="nearest", padding_mode="zeros",
                                    align_corners=False)[0]
            label_out.append(sampled.to(labels.dtype))
    data = torch.stack(data_out)
    return data, (torch.stack(label_out) if label_boxes is not None else None)
