"""Full-resolution views of a locator result, for the validation pictures.

When the cascade's full-resolution configuration is preprocessed, the predicted and true
centroids (world mm) are shown on that grid, and the crop the cascade would cut around the
prediction is returned with its label, so a person sees whether the target stays inside.
"""

from __future__ import annotations

import json

import numpy as np

from segforge.cascade.crop import crop_box_around, crop_with_padding
from segforge.cascade.grids import world_to_preprocessed
from segforge.paths import preprocessed_dataset_dir
from segforge.planning.plans import Configuration, Plans

__all__ = ["cascade_configuration_for", "fullres_views"]


def cascade_configuration_for(plans: Plans, locator_name: str = "locator") -> Configuration | None:
    """The segmentation configuration whose cascade uses ``locator_name``, if any."""
    for c in plans.configurations.values():
        if c.cascade is not None and c.cascade.locator_configuration == locator_name:
            return c
    return None


def fullres_views(plans: Plans, case: str, predicted_world, true_world, locator_name: str = "locator"):
    """``((image, pred, true), (crop image, crop label, true centre in the crop))`` on the full-res grid.

    ``(None, None)`` when the full-resolution configuration is not planned or not preprocessed.
    """
    config = cascade_configuration_for(plans, locator_name)
    if config is None:
        return None, None
    folder = preprocessed_dataset_dir(plans.dataset_name) / config.data_identifier
    if not (folder / f"{case}.json").is_file():
        return None, None
    properties = json.loads((folder / f"{case}.json").read_text())
    image = np.load(folder / f"{case}.npy", mmap_mode="r", allow_pickle=False)[0]
    seg_path = folder / f"{case}_seg.npy"
    seg = np.load(seg_path, mmap_mode="r", allow_pickle=False) if seg_path.is_file() else np.zeros(image.shape, np.int16)
    pred = world_to_preprocessed(predicted_world, properties)
    true = None if true_world is None else world_to_preprocessed(true_world, properties)
    box = crop_box_around(pred, config.cascade.crop_size, image.shape)
    crop = (crop_with_padding(np.asarray(image), box), crop_with_padding(np.asarray(seg), box),
            (true if true is not None else pred) - np.array([b[0] for b in box]))
    return (np.asarray(image), pred, true), crop
