"""Helpers of the inference tests: a tiny model folder in the real checkpoint format, images."""

import json

import numpy as np
import torch

from segforge.io.geometry import Geometry
from segforge.io.image import write_image
from segforge.planning.plans import Plans

from helpers.plans import tiny_configuration
from helpers.plans import tiny_plans as plans_of

DATASET = "Dataset987_Tiny"
SPACING = (2.5, 0.8, 1.1)  # anisotropic (z, y, x) mm
FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def tiny_plans(spacing=SPACING, patch=(8, 16, 16), channels=1, crop=False) -> Plans:
    configuration = tiny_configuration("3d_fullres", patch, spacing=spacing, channels=channels,
                                       median_shape=(10, 20, 20), crop_to_nonzero=crop)
    return plans_of(configuration, labels={"background": 0, "blob": 1}, channels=channels, dataset=DATASET)


def write_model_folder(results_root, plans: Plans, folds=("0",), checkpoint="final", seed=0, config="3d_fullres",
                       trainer="SegmentationTrainer", outputs=None):
    """``results/DatasetNNN/<trainer>__<config>`` with untrained weights in the real checkpoint format
    (``outputs``: the network's output channels, default the plans' classes)."""
    from segforge.networks import build_network

    folder = results_root / plans.dataset_name / f"{trainer}__{config}"
    folder.mkdir(parents=True, exist_ok=True)
    plans.save(folder / "plans.json")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": plans.channel_names, "labels": plans.labels,
                                                     "numTraining": 3, "file_ending": ".nii.gz"}))
    configuration = plans.configuration(config)
    outputs = outputs or plans.num_classes
    for i, fold in enumerate(folds):
        torch.manual_seed(seed + i)
        network = build_network(configuration, plans.num_channels, outputs)
        (folder / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save({"plans": plans.to_dict(), "configuration": configuration.name, "fold": fold,
                    "trainer": trainer, "network_state": network.state_dict(), "epoch": 1, "n_heatmaps": outputs},
                   folder / f"fold_{fold}" / f"checkpoint_{checkpoint}.pt")
    return folder


def blob_image(shape=(10, 20, 18), seed=0) -> np.ndarray:
    """A bright box on noise, ``(Z, Y, X)`` float32."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 0.1, size=shape).astype(np.float32)
    image[3:7, 5:14, 4:12] += 2.0
    return image


def odd_geometry(shape=(10, 20, 18)) -> Geometry:
    return Geometry(SPACING, (-10.5, 20.25, 5.0), FLIPPED, shape)


def write_case(folder, name, image=None, geometry=None, ending=".nii.gz"):
    image = blob_image() if image is None else image
    geometry = geometry or odd_geometry(image.shape)
    path = folder / f"{name}_0000{ending}"
    write_image(image, geometry, path)
    return path
