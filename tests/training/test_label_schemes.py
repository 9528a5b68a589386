"""Ignore label: its voxels change neither the loss nor the metrics. Regions: training on nested regions
reaches the Dice of plain labels on the same data. Label subsets: dropped labels are background."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.fake_preprocessed import make_plans, write_fake_dataset
from segforge.evaluation.evaluate import evaluate_case
from segforge.io.geometry import Geometry
from segforge.io.image import write_image
from segforge.planning.plans import Plans
from segforge.training.losses import DiceCELoss, RegionDiceBCELoss
from segforge.training.options import TrainingOptions
from segforge.training.segmentation_trainer import SegmentationTrainer

NO_AUGMENTATION = dict(p_rotation=0, p_scale=0, p_elastic=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                       p_low_resolution=0, p_gamma=0, p_gamma_inverted=0)


def test_ignored_voxels_change_neither_loss():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 8, 8, 8))  # 0, 1 and the ignore index 2
    logits = torch.randn(2, 2, 8, 8, 8)
    changed = logits.clone()
    ignored = (target[:, 0] == 2).unsqueeze(1).expand_as(logits)
    changed[ignored] = torch.randn(int(ignored.sum())) * 10
    loss = DiceCELoss(ignore_index=2)
    assert torch.allclose(loss(logits, target), loss(changed, target))
    assert not torch.allclose(DiceCELoss()(logits, target.clamp(max=1)), DiceCELoss()(changed, target.clamp(max=1)))
    # the same loss as if the ignored voxels were not there: a target without any equals the plain loss
    plain = target.clamp(max=1)
    assert torch.allclose(DiceCELoss(ignore_index=2)(logits, plain), DiceCELoss()(logits, plain))

    regions = torch.randint(0, 2, (2, 3, 8, 8, 8))  # two regions + the ignore channel
    region_logits = torch.randn(2, 2, 8, 8, 8)
    region_changed = region_logits.clone()
    mask = regions[:, 2:].bool().expand_as(region_logits)
    region_changed[mask] = torch.randn(int(mask.sum())) * 10
    region_loss = RegionDiceBCELoss(has_ignore=True)
    assert torch.allclose(region_loss(region_logits, regions), region_loss(region_changed, regions))


def test_ignored_voxels_change_no_metric(tmp_path):
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), (6, 8, 8))
    reference = np.zeros((6, 8, 8), np.uint8)
    reference[1:5, 2:6, 2:6] = 1
    reference[:, :, 7] = 2  # not annotated
    prediction = (reference == 1).astype(np.uint8)
    other = prediction.copy()
    other[:, :, 7] = 1  # foreground where nothing was annotated
    write_image(reference, geometry, tmp_path / "ref.nii.gz")
    write_image(prediction, geometry, tmp_path / "a.nii.gz")
    write_image(other, geometry, tmp_path / "b.nii.gz")
    a = evaluate_case(tmp_path / "ref.nii.gz", tmp_path / "a.nii.gz", [1], ignore_label=2)["metrics"]["1"]
    b = evaluate_case(tmp_path / "ref.nii.gz", tmp_path / "b.nii.gz", [1], ignore_label=2)["metrics"]["1"]
    assert a == b and a["dice"] == 1.0
    assert evaluate_case(tmp_path / "ref.nii.gz", tmp_path / "b.nii.gz", [1])["metrics"]["1"]["dice"] < 1.0


def _nested_dataset(root, labels, regions_class_order=None, n_cases=4):
    """The fake dataset's balls, each with a brighter core (label 2) inside its shell (label 1); no cube."""
    folder = write_fake_dataset(root, plans=make_plans(with_cube=False), n_cases=n_cases, seed=3)
    plans = Plans.load(folder / "plans.json")
    plans = Plans.from_dict({**plans.to_dict(), "labels": labels, "regions_class_order": regions_class_order})
    plans.save(folder / "plans.json")
    for seg_file in sorted((folder / "3d_fullres").glob("*_seg.npy")):
        seg = np.load(seg_file)
        image = np.load(str(seg_file).replace("_seg", ""))
        centre = np.argwhere(seg == 1).mean(0)
        core = (((np.indices(seg.shape) - centre[:, None, None, None]) ** 2).sum(0) <= 2.5**2) & (seg == 1)
        seg[core] = 2
        image[0][core] += 1.5
        np.save(seg_file, seg)
        np.save(str(seg_file).replace("_seg", ""), image)
        props_file = seg_file.with_name(seg_file.name.replace("_seg.npy", ".json"))
        props = json.loads(props_file.read_text())
        props["class_locations"] = {str(k): np.argwhere(seg == k)[::2].tolist() for k in (1, 2)}
        props_file.write_text(json.dumps(props))
    return folder


def _trained(folder, iterations):
    torch.set_num_threads(1)
    options = TrainingOptions(epochs=1, iters_per_epoch=iterations, val_iters=4, num_workers=0, cpu_threads=1,
                              progress_bar=False, plots=False, seed=0, augmentation=NO_AUGMENTATION)
    trainer = SegmentationTrainer(Plans.load(folder / "plans.json"), "3d_fullres", 0,
                                  output_folder=folder.parent / "results" / "fold_0", device="cpu", options=options,
                                  preprocessed_dir=folder, log=lambda *_: None)
    trainer.run()
    return trainer


def _label_map_dice(trainer) -> dict[int, float]:
    """Dice of label values 1 and 2 of the label maps the trainer's network predicts on its validation patches."""
    trainer.network.eval()
    counts = {v: [0, 0, 0] for v in (1, 2)}
    trainer.val_loader = trainer.make_training_loader() and trainer.val_loader
    for _ in range(4):
        batch = next(trainer.val_loader)
        _, pred, _ = trainer.validation_step(trainer.prepare_batch(batch))
        truth = batch["target"][:, 0].long()
        for v in counts:
            counts[v][0] += int(((pred == v) & (truth == v)).sum())
            counts[v][1] += int((pred == v).sum())
            counts[v][2] += int((truth == v).sum())
    for loader in trainer.loaders:
        loader.close()
    return {v: 2 * tp / max(1, p + t) for v, (tp, p, t) in counts.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_nested_regions_reach_the_dice_of_plain_labels(tmp_path):
    # 500 iterations: the region of the small core is learnt later than its plain label (its pseudo-Dice
    # 0 at 100 iterations, 0.36 at 200, 0.89 at 300); at 60 neither scheme had learnt the core
    plain = _trained(_nested_dataset(tmp_path / "plain", {"background": 0, "shell": 1, "core": 2}), 500)
    regions = _trained(_nested_dataset(tmp_path / "regions", {"background": 0, "ball": [1, 2], "core": [2]}, [1, 2]),
                       500)
    assert regions.history[0]["dice"] and len(regions.history[0]["dice"]) == 2  # region pseudo-Dice, per region
    plain_dice, region_dice = _label_map_dice(plain), _label_map_dice(regions)
    print("label-map Dice plain", plain_dice, "regions", region_dice)
    for v in (1, 2):
        assert region_dice[v] > 0.6 and abs(region_dice[v] - plain_dice[v]) < 0.15, (plain_dice, region_dice)


def test_ignore_and_dropped_labels_become_targets_the_loss_understands(tmp_path):
    plans = make_plans()  # ball 1, cube 2
    plans = Plans.from_dict({**plans.to_dict(), "labels": {"background": 0, "cube": 2, "ignore": 1}})
    folder = write_fake_dataset(tmp_path, plans=plans)
    options = TrainingOptions(epochs=1, iters_per_epoch=1, val_iters=1, num_workers=0, progress_bar=False,
                              plots=False)
    trainer = SegmentationTrainer(Plans.load(folder / "plans.json"), "3d_fullres", 0, device="cpu",
                                  output_folder=tmp_path / "out", options=options, preprocessed_dir=folder,
                                  log=lambda *_: None)
    trainer.initialize()
    raw = torch.tensor([0, 1, 2]).view(1, 1, 3, 1, 1)
    # cube (value 2) is output 1; the ignore label (value 1) is the ignore index 2
    assert trainer.make_target(raw).flatten().tolist() == [0, 2, 1] and trainer.num_classes == 2
    assert trainer.class_names == ["cube"]
    sample = trainer.build_validation_sampler().sample_batch(np.random.RandomState(0))
    batch = {"data": torch.as_tensor(sample["data"]), "target": torch.as_tensor(sample["seg"])}
    trainer.network.eval()
    _, pred, counts = trainer.validation_step(batch)
    truth = batch["target"]
    assert set(torch.unique(pred).tolist()) <= {0, 2}  # label values (cube is 2), never the ignore label 1
    assert int(counts[0, 0] + counts[0, 2]) == int((truth == 2).sum())  # tp + fn: every cube voxel, no ignored one
    # false positives: cube predicted on background only, never on the voxels nobody annotated
    assert int(counts[0, 1]) == int(((pred == 2) & (truth[:, 0] == 0)).sum())
    assert int(((pred == 2) & (truth[:, 0] == 1)).sum()) > 0  # (cube was predicted on some ignored voxels)
