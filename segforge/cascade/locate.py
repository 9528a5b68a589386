"""Running the locator network(s) on one whole image: heatmaps and centroids.

Used by the locator trainer's validation and by the cascade predictor, so both read the
centroid out the same way. With ``loss="kl"`` the network outputs logits of a spatial
distribution (softmax over all voxels); with ``"mse"`` it outputs the heatmap itself.
Heatmaps of several networks (fold ensemble) are averaged before the readout.
"""

from __future__ import annotations

import numpy as np
import torch

from segforge.cascade.heatmaps import soft_argmax
from segforge.cascade.locator_data import centred_offset, locator_canvas, place_on_canvas
from segforge.planning.plans import Configuration

__all__ = ["heatmap_from_output", "network_heatmap", "predict_heatmap", "read_centroids"]


def network_heatmap(network: torch.nn.Module, canvas_batch: torch.Tensor, loss: str) -> torch.Tensor:
    """``(B, C, *canvas)`` -> heatmaps ``(B, K, *canvas)`` (a distribution per channel for ``kl``)."""
    return heatmap_from_output(network(canvas_batch), loss)


def heatmap_from_output(out, loss: str) -> torch.Tensor:
    """The network's full-resolution output as heatmaps (spatial softmax for ``kl``)."""
    if isinstance(out, (list, tuple)):
        out = out[0]
    out = out.float()
    if loss == "kl":
        flat = torch.softmax(out.flatten(2), dim=-1)
        out = flat.view_as(out)
    return out


def predict_heatmap(networks, data: np.ndarray, configuration: Configuration, device="cpu") -> np.ndarray:
    """Mean heatmap ``(K, z, y, x)`` float32 of ``networks`` over ``data (C, z, y, x)``.

    The image is centred on a canvas of its background value (:func:`locator_canvas`) and the result cut back
    to the image's own grid. ``kl`` heatmaps are scaled to a peak of 1 for display.
    """
    loss = configuration.locator.loss if configuration.locator else "mse"
    shape = data.shape[1:]
    canvas = locator_canvas(configuration, [shape])
    offset = centred_offset(shape, canvas)
    x = torch.from_numpy(place_on_canvas(np.asarray(data), canvas, offset))[None].to(device)
    total = None
    with torch.inference_mode():
        for net in networks:
            net.eval()
            h = network_heatmap(net, x, loss)[0]
            total = h if total is None else total + h
    h = (total / len(networks)).cpu().numpy()
    sl = tuple(slice(int(o), int(o) + n) for o, n in zip(offset, shape))
    h = h[(slice(None), *sl)]
    if loss == "kl":
        h = h / np.maximum(h.reshape(len(h), -1).max(axis=1), 1e-12)[:, None, None, None]
    return np.ascontiguousarray(h, dtype=np.float32)


def read_centroids(heatmap: np.ndarray) -> list[np.ndarray]:
    """Sub-voxel peak ``(3,)`` of every channel of ``heatmap (K, z, y, x)``."""
    return [soft_argmax(h) for h in heatmap]
