"""Running the locator network(s) on one whole image: heatmaps and centroids.

Used by the locator trainer's validation and by the cascade predictor, so both read the
centroid out the same way. With ``loss="kl"`` the network outputs logits of a spatial
distribution (softmax over all voxels); with ``"mse"`` it outputs the heatmap itself.
Heatmaps of several networks (fold ensemble) are averaged before the readout.
"""

from __future__ import annotations

import numpy as np
import torch

from segforge.cascade.grids import effective_spacing, preprocessed_to_world
from segforge.cascade.heatmaps import soft_argmax
from segforge.cascade.locator_data import LocatorCase, centred_offset, locator_canvas, place_on_canvas
from segforge.planning.plans import Configuration

__all__ = ["heatmap_from_output", "network_heatmap", "predict_heatmap", "read_centroids", "centroid_errors",
           "summarise_errors"]


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


def centroid_errors(case: LocatorCase, heat: np.ndarray) -> dict:
    """Predicted vs true centroids of one case from its heatmap ``(K, z, y, x)`` on the case's grid.

    ``{"case", "heatmap", "error_mm", "error_zyx_mm", "channels": [{"predicted_voxel",
    "predicted_world", "true_voxel", "true_world", "error_mm", "error_zyx_mm"}, ...]}``: voxels
    on the case's grid, world points in mm; a case's error is the mean over its channels
    (None when no channel has a true centroid).
    """
    preds = read_centroids(heat)
    out = {"case": case.name, "heatmap": heat, "error_mm": None, "error_zyx_mm": None, "channels": []}
    errs, zyx = [], []
    for p, t in zip(preds, case.centroids):
        entry = {"predicted_voxel": [float(v) for v in p],
                 "predicted_world": [float(v) for v in preprocessed_to_world(p, case.properties)]}
        if t is not None:
            tw = preprocessed_to_world(t, case.properties)
            d = (p - t) * effective_spacing(case.properties)
            entry.update(true_voxel=[float(v) for v in t], true_world=[float(v) for v in tw],
                         error_mm=float(np.linalg.norm(np.asarray(entry["predicted_world"]) - tw)),
                         error_zyx_mm=[float(v) for v in d])
            errs.append(entry["error_mm"])
            zyx.append(d)
        out["channels"].append(entry)
    if errs:
        out["error_mm"] = float(np.mean(errs))
        out["error_zyx_mm"] = [float(v) for v in np.mean(zyx, axis=0)]
    return out


def summarise_errors(errors_mm: list[float], errors_zyx: list[list[float]]) -> dict:
    """Mean/median/max of the distances and the per-axis standard deviation and RMS (mm)."""
    e = np.asarray(errors_mm, dtype=np.float64)
    zyx = np.asarray(errors_zyx, dtype=np.float64).reshape(-1, 3)
    if len(e) == 0:
        return {"n": 0, "mean_mm": None, "median_mm": None, "max_mm": None, "std_zyx_mm": None, "rms_zyx_mm": None}
    return {
        "n": int(len(e)),
        "mean_mm": float(e.mean()),
        "median_mm": float(np.median(e)),
        "max_mm": float(e.max()),
        "std_zyx_mm": [float(v) for v in zyx.std(axis=0)],
        "rms_zyx_mm": [float(v) for v in np.sqrt((zyx**2).mean(axis=0))],
    }
