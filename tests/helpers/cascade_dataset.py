"""Tiny preprocessed cascade datasets built in code (no planner or preprocessing needed)."""

from __future__ import annotations

import json

import numpy as np

from segforge.io.geometry import Geometry
from segforge.planning.plans import (
    CascadeSettings,
    ChannelNormalization,
    Configuration,
    LocatorSettings,
    NetworkTopology,
    Plans,
    ResamplingSettings,
)

DATASET = "Dataset950_CascadeTiny"


def tiny_topology(n_stages: int = 3, features: int = 8) -> NetworkTopology:
    return NetworkTopology(
        features_per_stage=[features * 2**i for i in range(n_stages)],
        kernel_sizes=[[3, 3, 3]] * n_stages,
        strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
        deep_supervision=True,
    )


def tiny_plans(loc_shape=(32, 32, 32), full_shape=(64, 64, 64), crop=(32, 32, 32), classes: int = 1,
               **locator_kw) -> Plans:
    norm = [ChannelNormalization("zscore")]
    locator = Configuration(
        name="locator", kind="locator", spacing=[2.0, 2.0, 2.0], patch_size=list(loc_shape), batch_size=2,
        network=tiny_topology(), normalization=norm, resampling=ResamplingSettings(), median_shape=list(loc_shape),
        crop_to_nonzero=False,
        locator=LocatorSettings(**{"sigma_start": 4.0, "sigma_min": 1.5, "shrink_patience": 3, **locator_kw}),
    )
    fullres = Configuration(
        name="cascade_fullres", kind="segmentation", spacing=[1.0, 1.0, 1.0], patch_size=[16, 16, 16], batch_size=2,
        network=tiny_topology(), normalization=norm, resampling=ResamplingSettings(), median_shape=list(full_shape),
        crop_to_nonzero=False,
        cascade=CascadeSettings(crop_size=list(crop), expected_locator_error_mm=2.0),
    )
    labels = {"background": 0, "target": 1, **({"second": 2} if classes == 2 else {})}
    return Plans(DATASET, {"0": "MR"}, labels,
                 {"locator": locator, "cascade_fullres": fullres}, "cascade_fullres", 8.0)


def phantom(rng, shape, radius, classes: int = 1):
    """A noisy ellipsoid body with one bright ball (label 1) and, with ``classes=2``, a dark ball
    (label 2) on the other side: ``(image (z,y,x), label)``."""
    grid = np.indices(shape).astype(np.float32)
    c0 = (np.asarray(shape) - 1) / 2
    body = (((grid - c0[:, None, None, None]) / (0.42 * np.asarray(shape))[:, None, None, None]) ** 2).sum(0) < 1
    offset = rng.uniform(-0.22, 0.22, 3) * np.asarray(shape)
    centre = c0 + offset
    ball = ((grid - centre[:, None, None, None]) ** 2).sum(0) < radius**2
    image = body * 1.0 + ball * 2.0 + rng.normal(0, 0.2, shape)
    label = ball.astype(np.int16)
    if classes == 2:
        other = c0 - offset  # mirrored through the body's centre
        dark = ((grid - other[:, None, None, None]) ** 2).sum(0) < radius**2
        image -= dark * 1.5
        label[dark] = 2
    return image.astype(np.float32), label


def _every_nth(points: np.ndarray, keep: int) -> list:
    """About ``keep`` of ``points`` (N, 3), evenly spaced in order."""
    return points[:: max(1, len(points) // keep)].tolist()


def write_case(folder, name, image, label, configuration, full_geometry: Geometry):
    """Save one preprocessed case on ``configuration``'s grid of a whole image ``full_geometry``."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{name}.npy", ((image - image.mean()) / image.std())[None].astype(np.float32))
    np.save(folder / f"{name}_seg.npy", label.astype(np.int16))
    idx = np.argwhere(label > 0)
    scale = np.asarray(full_geometry.shape) / np.asarray(image.shape)
    centroid_orig = (idx.mean(0) + 0.5) * scale - 0.5 if len(idx) else None
    props = {
        "case": name, "configuration": configuration.name, "plans_version": configuration.version(),
        "original_geometry": full_geometry.to_dict(),
        "crop_box": [[0, n] for n in full_geometry.shape], "shape_after_crop": list(full_geometry.shape),
        "preprocessed_shape": list(image.shape), "preprocessed_spacing": list(configuration.spacing),
        "class_locations": {str(k): _every_nth(np.argwhere(label == k), 50) for k in range(1, int(label.max()) + 1)},
        "centroid_voxel": None if centroid_orig is None else (idx.mean(0)).tolist(),
        "centroid_world": None if centroid_orig is None else full_geometry.index_to_world(centroid_orig).tolist(),
    }
    (folder / f"{name}.json").write_text(json.dumps(props))


def make_cascade_dataset(root, n_cases=6, seed=0, with_fullres=True, classes: int = 1, **locator_kw) -> Plans:
    """Preprocessed locator (32^3 at 2 mm) and cascade_fullres (64^3 at 1 mm) cases of balls
    (``classes`` 2: a second, dark ball with label 2)."""
    rng = np.random.default_rng(seed)
    plans = tiny_plans(classes=classes, **locator_kw)
    ds = root / DATASET
    ds.mkdir(parents=True, exist_ok=True)
    plans.save(ds / "plans.json")
    geometry = Geometry((1.0, 1.0, 1.0), (-10.0, 5.0, 3.0), np.eye(3).ravel(), (64, 64, 64))
    for i in range(n_cases):
        image, label = phantom(rng, (64, 64, 64), radius=5.0, classes=classes)
        name = f"case_{i:03d}"
        if with_fullres:
            write_case(ds / "cascade_fullres", name, image, label, plans.configurations["cascade_fullres"], geometry)
        small = image.reshape(32, 2, 32, 2, 32, 2).mean((1, 3, 5))
        small_label = np.zeros((32, 32, 32), np.int16)
        for k in range(1, classes + 1):  # a voxel takes the class covering at least half of it
            small_label[(label == k).reshape(32, 2, 32, 2, 32, 2).mean((1, 3, 5)) >= 0.5] = k
        write_case(ds / "locator", name, small, small_label, plans.configurations["locator"], geometry)
    return plans
