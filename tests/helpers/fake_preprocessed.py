"""A tiny preprocessed dataset written by hand (np.save + JSON), following docs/architecture.md.

Each case is a (1, Z, Y, X) image with a bright ball (label 1) and a darker cube (label 2)
on noise: easy for a tiny U-Net to learn in a few dozen iterations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from segforge.planning.plans import Plans

from helpers.plans import tiny_configuration, tiny_plans

DATASET = "Dataset999_Fake"


def make_plans(patch_size=(16, 32, 32), features=(4, 8, 16), batch_size=2, with_cube: bool = True) -> Plans:
    common = dict(features=features, median_shape=(20, 40, 40))
    c3 = tiny_configuration("3d_fullres", patch_size, batch_size=batch_size, **common)
    c2 = tiny_configuration("2d", patch_size[1:], batch_size=batch_size * 2, data_identifier="3d_fullres", **common)
    return tiny_plans(c3, c2, labels={"background": 0, "ball": 1, **({"cube": 2} if with_cube else {})},
                      dataset=DATASET)


def make_case(rng: np.random.RandomState, shape=(20, 40, 40), with_cube: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(1, Z, Y, X) float32 image and (Z, Y, X) int16 labels."""
    seg = np.zeros(shape, np.int16)
    zz, yy, xx = np.indices(shape)
    c = [rng.randint(6, s - 6) for s in shape]
    r = rng.uniform(4, 6)
    seg[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r] = 1
    lo = [rng.randint(1, s - 6) for s in shape]
    cube = tuple(slice(a, a + 4) for a in lo)
    if with_cube:
        seg[cube][seg[cube] == 0] = 2
    image = rng.normal(0, 0.3, shape).astype(np.float32)
    image[seg == 1] += 2.0
    image[seg == 2] -= 1.5
    return image[None], seg


def write_fake_dataset(root: Path, n_cases: int = 6, seed: int = 0, plans: Plans | None = None,
                       split: dict | None = None) -> Path:
    """Write ``root/Dataset999_Fake`` (plans.json, dataset.json, 3d_fullres/ cases); return that folder."""
    plans = plans or make_plans()
    with_cube = "cube" in plans.labels
    folder = Path(root) / DATASET
    cases_dir = folder / "3d_fullres"
    cases_dir.mkdir(parents=True, exist_ok=True)
    plans.save(folder / "plans.json")
    dataset_json = {"channel_names": plans.channel_names, "labels": plans.labels, "numTraining": n_cases,
                    "file_ending": ".nii.gz"}
    if split is not None:
        dataset_json["segforge_split"] = split
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    rng = np.random.RandomState(seed)
    version = plans.configurations["3d_fullres"].version()
    for i in range(n_cases):
        name = f"case_{i:03d}"
        image, seg = make_case(rng, with_cube=with_cube)
        np.save(cases_dir / f"{name}.npy", image)
        np.save(cases_dir / f"{name}_seg.npy", seg)
        locations = {str(k): np.argwhere(seg == k)[::3].tolist() for k in sorted(set(plans.labels.values()) - {0})}
        fg = np.argwhere(seg > 0).mean(0).tolist()
        props = {"case": name, "configuration": "3d_fullres", "plans_version": version,
                 "crop_box": [[0, s] for s in seg.shape], "shape_after_crop": list(seg.shape),
                 "preprocessed_shape": list(seg.shape), "preprocessed_spacing": [1.0, 1.0, 1.0],
                 "class_locations": locations, "centroid_voxel": fg, "centroid_world": fg[::-1]}
        (cases_dir / f"{name}.json").write_text(json.dumps(props))
    return folder
