"""The matrix of bad input and faults (issue 18): every kind refused with one line, nothing changed.

Each row sets up one kind of bad input (or fault) on top of a healthy workspace, runs the
command in process and checks, the same way for every row (:func:`harness.assert_refused`):

* the exit code (2: refused or stopped, 1: some cases failed and the others were done);
* exactly one ``prog: error:`` (or ``prog: failed:``) line, naming the file and the problem;
* no traceback;
* no earlier output changed: every file that existed before the command (the raw dataset,
  earlier plans, checkpoints, predictions, summaries) has the same bytes after it.

docs/reliability.md lists the same matrix as a table (input -> answer).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from harness import assert_refused, run, tree_hashes
from helpers.inference_fixtures import odd_geometry, tiny_plans, write_case, write_model_folder
from segforge.io.geometry import Geometry
from segforge.io.image import write_image

RAW = "Dataset961_Matrix"


# ------------------------------------------------------------------------------ workspace
@pytest.fixture(scope="session")
def pristine(tmp_path_factory) -> Path:
    """A raw dataset (3 training cases) and a fake preprocessed dataset, made once and copied per row."""
    from helpers.fake_preprocessed import write_fake_dataset

    from segforge.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("pristine")
    make_synthetic_dataset(961, "Matrix", num_train=3, num_test=0, shape=(12, 24, 24), raw_root=root / "raw")
    write_fake_dataset(root / "pre", n_cases=4)
    return root


class Workspace:
    """Healthy folders for one row; each method adds a part and returns its path."""

    def __init__(self, root: Path, pristine: Path):
        self.root = root
        self.raw, self.pre, self.res = root / "raw", root / "preprocessed", root / "results"  # the SEGFORGE_* ones
        shutil.copytree(pristine / "raw", self.raw)
        shutil.copytree(pristine / "pre", self.pre)
        self.res.mkdir()
        self.ds = self.raw / RAW
        self._model = None

    # raw dataset parts
    def image(self, case: int = 1) -> Path:
        return self.ds / "imagesTr" / f"case_{case:03d}_0000.nii.gz"

    def label(self, case: int = 1) -> Path:
        return self.ds / "labelsTr" / f"case_{case:03d}.nii.gz"

    def edit_dataset_json(self, edit: Callable[[dict], None]) -> Path:
        path = self.ds / "dataset.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return path

    def earlier_plans(self) -> None:
        """An earlier plan of the raw dataset (what a refused re-plan must leave alone)."""
        folder = self.pre / RAW
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plans.json").write_text('{"earlier": "plans"}\n')

    # prediction parts
    def model(self) -> Path:
        if self._model is None:
            self._model = write_model_folder(self.res, tiny_plans())
        return self._model

    def images(self) -> Path:
        folder = self.root / "in"
        if not folder.is_dir():
            for name in ("a", "b", "c"):
                write_case(folder, name)
        return folder

    def out(self) -> Path:
        """The output folder, holding an earlier prediction that must survive."""
        out = self.root / "out"
        if not out.is_dir():
            write_image(np.zeros((10, 20, 18), np.uint8), odd_geometry(), out / "earlier.nii.gz")
        return out

    def checkpoint(self, fold: str = "0") -> Path:
        return self.model() / f"fold_{fold}" / "checkpoint_final.pt"

    def edit_model_plans(self, edit: Callable[[dict], None]) -> Path:
        path = self.model() / "plans.json"
        data = json.loads(path.read_text())
        edit(data)
        path.write_text(json.dumps(data))
        return path

    # training parts
    @property
    def fake(self) -> Path:
        return self.pre / "Dataset999_Fake"

    def earlier_fold(self) -> Path:
        """An earlier trained fold of the fake dataset that a refused training must leave alone."""
        folder = self.res / "Dataset999_Fake" / "SegmentationTrainer__3d_fullres"
        if not (folder / "fold_1").is_dir():
            (folder / "fold_1").mkdir(parents=True)
            shutil.copyfile(self.fake / "plans.json", folder / "plans.json")
            torch.save({"network_state": {}, "epoch": 3}, folder / "fold_1" / "checkpoint_final.pt")
        return folder

    # evaluation parts
    def ref_pred(self) -> tuple[Path, Path]:
        ref, pred = self.root / "ref", self.root / "pred"
        if not ref.is_dir():
            g = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), np.eye(3).ravel(), (8, 10, 12))
            label = np.zeros(g.shape, np.uint8)
            label[2:6, 3:7, 4:9] = 1
            for name in ("a", "b"):
                write_image(label, g, ref / f"{name}.nii.gz")
                write_image(label, g, pred / f"{name}.nii.gz")
            (pred / "summary.json").write_text('{"earlier": "summary"}\n')
        return ref, pred


@dataclass
class Row:
    id: str
    command: str
    setup: Callable[[Workspace], list]  # makes the fault, returns argv
    code: int
    names: Callable[[Workspace], object] | str | None  # the file the line must name
    problem: str  # regular expression the line must match
    kind: str = "error"


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _cut(path: Path, keep: float = 0.4) -> Path:
    data = path.read_bytes()
    return _write_bytes(path, data[: int(len(data) * keep)])


def _rewrite(path: Path, array, geometry: Geometry | None = None) -> Path:
    from segforge.io.image import read_geometry

    write_image(np.asarray(array), geometry or read_geometry(path), path)
    return path


def _sheared(path: Path) -> Path:
    import nibabel as nib

    img = nib.load(str(path))
    affine = img.affine.copy()
    affine[0, 1] += 0.4
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), affine)
    out.set_qform(None, code=0)
    out.set_sform(affine, code=2)
    nib.save(out, str(path))
    return path


def _with_nan(path: Path) -> Path:
    from segforge.io.image import read_geometry

    array = np.ones(read_geometry(path).shape, np.float32)
    array[2, 3, 4] = np.nan
    return _rewrite(path, array)


def _edit_checkpoint(path: Path, edit: Callable[[dict], None]) -> Path:
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, path)
    return path


def _nan_weights(checkpoint: dict) -> None:
    name = next(iter(checkpoint["network_state"]))
    checkpoint["network_state"][name] = torch.full_like(checkpoint["network_state"][name], float("nan"))


def _other_plans(checkpoint: dict) -> None:
    plans = dict(checkpoint["plans"])
    plans["configurations"]["3d_fullres"]["spacing"] = [9.0, 9.0, 9.0]
    checkpoint["plans"] = plans


def _plan(ws: Workspace, *extra) -> list:
    ws.earlier_plans()
    return ["-d", "961", "-np", "1", "--verify", *extra]


def _plan_only(ws: Workspace, *extra) -> list:
    ws.earlier_plans()
    return ["-d", "961", "-np", "1", "--plan-only", *extra]


def _predict(ws: Workspace, *extra, inp=None, out=None) -> list:
    ws.model()
    return ["-i", inp or ws.images(), "-o", out or ws.out(), "-d", "987", "--disable-tta", *extra]


def _train(ws: Workspace, *extra, fold: str = "0") -> list:
    ws.earlier_fold()
    return ["999", fold, "--epochs", "1", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0",
            "--no-progress-bar", "--no-validation", "--device", "cpu", *extra]


def _evaluate(ws: Workspace, *extra) -> list:
    ref, pred = ws.ref_pred()
    return ["-ref", ref, "-pred", pred, "-np", "1", *extra]


def _import_source(ws: Workspace) -> Path:
    source = ws.root / "source"
    if not source.is_dir():
        (source / "images").mkdir(parents=True)
        (source / "labels").mkdir()
        for case in range(3):
            shutil.copyfile(ws.image(case), source / "images" / f"p{case}.nii.gz")
            shutil.copyfile(ws.label(case), source / "labels" / f"p{case}.nii.gz")
    return source


def _import(ws: Workspace, *extra) -> list:
    return ["-i", _import_source(ws), "-d", "970", "-n", "Imported", "--modality", "CT", "-np", "1", *extra]


# ------------------------------------------------------------------------------ the matrix
ROWS = [
    # --- segforge_plan_and_preprocess: the raw dataset (verified before anything is computed)
    Row("plan-unknown-dataset", "plan", lambda ws: ["-d", "955", "--verify"], 2, None, r"no dataset with id 955"),
    Row("plan-dataset-json-missing", "plan", lambda ws: (ws.ds / "dataset.json").unlink() or _plan(ws), 2,
        "dataset.json", r"dataset.json not found"),
    Row("plan-dataset-json-invalid", "plan", lambda ws: _write_bytes(ws.ds / "dataset.json", b"{oops") and _plan(ws),
        2, "dataset.json", r"not valid JSON"),
    Row("plan-dataset-json-list", "plan", lambda ws: _write_bytes(ws.ds / "dataset.json", b"[1, 2]") and _plan(ws),
        2, "dataset.json", r"must hold a JSON object"),
    Row("plan-no-channel-names", "plan", lambda ws: ws.edit_dataset_json(lambda d: d.pop("channel_names"))
        and _plan(ws), 2, "dataset.json", r'needs "channel_names"'),
    Row("plan-no-labels", "plan", lambda ws: ws.edit_dataset_json(lambda d: d.pop("labels")) and _plan(ws), 2,
        "dataset.json", r'needs "labels"'),
    Row("plan-negative-label", "plan", lambda ws: ws.edit_dataset_json(lambda d: d["labels"].update(liver=-1))
        and _plan(ws), 2, "dataset.json", r"label 'liver' must be a non-negative integer"),
    Row("plan-no-background", "plan", lambda ws: ws.edit_dataset_json(lambda d: d["labels"].pop("background"))
        and _plan(ws), 2, "dataset.json", r"background as 0"),
    Row("plan-file-ending", "plan", lambda ws: ws.edit_dataset_json(lambda d: d.update(file_ending=".png"))
        and _plan(ws), 2, "dataset.json", r"file_ending '.png' is not one of"),
    Row("plan-numtraining-string", "plan", lambda ws: ws.edit_dataset_json(lambda d: d.update(numTraining="3"))
        and _plan(ws), 2, "dataset.json", r"numTraining must be a whole number, got '3' \(str\)"),
    Row("plan-numtraining-wrong", "plan", lambda ws: ws.edit_dataset_json(lambda d: d.update(numTraining=5))
        and _plan(ws), 2, "dataset.json", r"numTraining is 5 but imagesTr holds 3 cases"),
    Row("plan-image-truncated", "plan", lambda ws: _cut(ws.image()) and _plan(ws), 2, lambda ws: ws.image(),
        r"truncated"),
    Row("plan-image-empty", "plan", lambda ws: _write_bytes(ws.image(), b"") and _plan(ws), 2,
        lambda ws: ws.image(), r"empty file"),
    Row("plan-image-garbage", "plan", lambda ws: _write_bytes(ws.image(), b"not an image" * 40) and _plan(ws), 2,
        lambda ws: ws.image(), r"(cannot read|corrupt)"),
    Row("plan-image-nan", "plan", lambda ws: _with_nan(ws.image()) and _plan(ws), 2, lambda ws: ws.image(),
        r"1 NaN and 0 infinite voxels"),
    Row("plan-image-sheared", "plan", lambda ws: _sheared(ws.image()) and _plan(ws), 2, lambda ws: ws.image(),
        r"direction matrix is not orthonormal"),
    Row("plan-image-2d", "plan", lambda ws: _rewrite(ws.image(), np.zeros((1, 24, 24), np.float32),
                                                     Geometry.identity((1, 24, 24))) and _plan(ws), 2,
        lambda ws: ws.image(), r"2D image"),
    Row("plan-label-missing", "plan", lambda ws: ws.label().unlink() or _plan(ws), 2, lambda ws: ws.label(),
        r"label file missing for training case case_001"),
    Row("plan-label-undeclared", "plan", lambda ws: _rewrite(ws.label(), np.full((12, 24, 24), 7, np.uint8))
        and _plan(ws), 2, lambda ws: ws.label(), r"label values \[7\] are not declared"),
    Row("plan-label-fractional", "plan", lambda ws: _rewrite(ws.label(), np.full((12, 24, 24), 0.5, np.float32))
        and _plan(ws), 2, lambda ws: ws.label(), r"non-integer values"),
    Row("plan-label-other-grid", "plan", lambda ws: _rewrite(ws.label(), np.zeros((12, 24, 20), np.uint8),
                                                              Geometry.identity((12, 24, 20))) and _plan(ws), 2,
        lambda ws: ws.label(), r"label grid differs from image"),
    Row("plan-channel-missing", "plan", lambda ws: _second_channel(ws, cases=(0, 2)) and _plan(ws), 2,
        "case_001_0001.nii.gz", r"channel 1 file missing for case case_001"),
    Row("plan-split-unknown-case", "plan", lambda ws: ws.edit_dataset_json(
        lambda d: d.update(segforge_split={"train": ["case_000", "nobody"], "val": ["case_001"]})) and _plan(ws), 2,
        "dataset.json", r"segforge_split train names cases not in imagesTr: nobody"),
    Row("plan-patch-not-16", "plan", lambda ws: _plan_only(ws, "--patch-size", "40", "48", "48"), 2, None,
        r"patch size edge 40 is not a positive multiple of 16"),
    Row("plan-patch-too-big", "plan", lambda ws: _plan_only(ws, "--patch-size", "1024", "1024", "1024"), 2, None,
        r"needs about [\d.]+ GB of training activations \(estimate\), but the plan's budget is"),
    Row("plan-spacing-nan", "plan", lambda ws: _plan_only(ws, "--spacing", "nan", "1", "1"), 2, None,
        r"spacing override must be 3 positive numbers"),
    Row("plan-gpu-memory-nan", "plan", lambda ws: _plan_only(ws, "--gpu-memory-gb", "nan"), 2, None,
        r"--gpu-memory-gb must be a positive number"),
    Row("plan-np-zero", "plan", lambda ws: _plan_only(ws, "-np", "0"), 2, None, r"-np must be at least 1"),
    Row("plan-batch-zero", "plan", lambda ws: _plan_only(ws, "--batch-size", "0"), 2, None,
        r"batch size override must be a positive integer"),
    Row("plan-default-typo", "plan", lambda ws: _plan_only(ws, "--default-configuration", "3d_fulres"), 2, None,
        r"did you mean '3d_fullres'"),
    Row("plan-unknown-configuration", "plan", lambda ws: ["-d", "961", "-np", "1", "-c", "3d_lowres"], 2, None,
        r"configuration '3d_lowres' is not in the plans"),
    Row("plan-argument-syntax", "plan", lambda ws: ["-d", "961", "--spacing", "1", "x", "1"], 2, None,
        r"argument --spacing: invalid float value: 'x' \(see segforge_plan_and_preprocess -h\)"),

    # --- segforge_predict: where the outputs go, the model, its checkpoints, the inputs
    Row("predict-output-is-a-file", "predict", lambda ws: _predict(ws, out=_write_bytes(ws.root / "afile", b"x")), 2,
        "afile", r"output folder is a file, not a folder"),
    Row("predict-output-under-a-file", "predict", lambda ws: _predict(
        ws, out=_write_bytes(ws.root / "afile", b"x") / "sub"), 2, "afile", r"cannot create the folder: .*is a file"),
    Row("predict-output-is-input", "predict", lambda ws: _predict(ws, out=ws.images()), 2, "in",
        r"output folder is the input folder"),
    Row("predict-input-missing", "predict", lambda ws: _predict(ws, inp=ws.root / "nowhere"), 2, "nowhere",
        r"input not found"),
    Row("predict-input-no-images", "predict", lambda ws: _predict(ws, inp=(ws.root / "empty").mkdir() or
                                                                  ws.root / "empty"), 2, "empty", r"no images found"),
    Row("predict-not-a-model-folder", "predict", lambda ws: ["-i", ws.images(), "-o", ws.out(), "-m", ws.root], 2,
        lambda ws: ws.root, r"not a model folder"),
    Row("predict-unknown-dataset", "predict", lambda ws: ws.model() and ["-i", ws.images(), "-o", ws.out(), "-d",
                                                                          "955"], 2, None, r"no dataset with id 955"),
    Row("predict-plans-invalid-json", "predict", lambda ws: _write_bytes(ws.model() / "plans.json", b"{") and
        _predict(ws), 2, "plans.json", r"plans file is not valid"),
    Row("predict-plans-field-typo", "predict", lambda ws: ws.edit_model_plans(
        lambda p: p["configurations"]["3d_fullres"].update(pach_size=[8, 16, 16])) and _predict(ws), 2, "plans.json",
        r"unknown Configuration fields: pach_size"),
    Row("predict-plans-name-typo", "predict", lambda ws: ws.edit_model_plans(
        lambda p: p["configurations"]["3d_fullres"]["network"].update(norm="instanse")) and _predict(ws), 2,
        "plans.json", r"unknown normalisation 'instanse'; did you mean 'instance'"),
    Row("predict-plans-patch-too-big", "predict", lambda ws: ws.edit_model_plans(
        lambda p: p["configurations"]["3d_fullres"].update(patch_size=[1024, 1024, 1024])) and _predict(ws), 2,
        "plans.json", r"prediction with patch 1024x1024x1024 .* needs about .* \(estimate\), but the cpu has"),
    Row("predict-checkpoint-garbage", "predict", lambda ws: _write_bytes(ws.checkpoint(), b"garbage" * 10) and
        _predict(ws), 2, "checkpoint_final.pt", r"cannot load checkpoint"),
    Row("predict-checkpoint-state-list", "predict", lambda ws: _edit_checkpoint(
        ws.checkpoint(), lambda c: c.update(network_state=[1, 2, 3])) and _predict(ws), 2, "checkpoint_final.pt",
        r"network_state is list, not a mapping of weight names to tensors"),
    Row("predict-checkpoint-nan-weights", "predict", lambda ws: _edit_checkpoint(ws.checkpoint(), _nan_weights)
        and _predict(ws), 2, "checkpoint_final.pt", r"NaN/infinite weights"),
    Row("predict-checkpoint-other-plans", "predict", lambda ws: _edit_checkpoint(ws.checkpoint(), _other_plans)
        and _predict(ws), 2, "checkpoint_final.pt", r"trained with other plans"),
    Row("predict-checkpoint-no-network", "predict", lambda ws: _edit_checkpoint(
        ws.checkpoint(), lambda c: c.pop("network_state")) and _predict(ws), 2, "checkpoint_final.pt",
        r"not a segforge checkpoint"),
    Row("predict-fold-not-trained", "predict", lambda ws: _predict(ws, "-f", "3"), 2, "fold_3",
        r"no checkpoint_final.pt for fold 3"),
    Row("predict-step-nan", "predict", lambda ws: _predict(ws, "--step", "nan"), 2, None, r"--step must be in"),
    Row("predict-prefetch-negative", "predict", lambda ws: _predict(ws, "--prefetch", "-1"), 2, None,
        r"--prefetch must be 0 or more"),
    Row("predict-device-unknown", "predict", lambda ws: _predict(ws, "--device", "tpu9"), 2, None,
        r"unknown device 'tpu9'"),
    Row("predict-case-truncated", "predict", lambda ws: _cut(ws.images() / "b_0000.nii.gz") and _predict(ws), 1,
        "b_0000.nii.gz", r"^segforge_predict: failed: b: .*truncated", "failed"),
    Row("predict-case-nan", "predict", lambda ws: _with_nan(ws.images() / "b_0000.nii.gz") and _predict(ws), 1,
        "b_0000.nii.gz", r"1 NaN and 0 infinite voxels", "failed"),
    Row("predict-case-sheared", "predict", lambda ws: _sheared(ws.images() / "b_0000.nii.gz") and _predict(ws), 1,
        "b_0000.nii.gz", r"direction matrix is not orthonormal", "failed"),
    Row("predict-case-4d", "predict", lambda ws: _write_4d(ws.images() / "b_0000.nii.gz") and _predict(ws), 1,
        "b_0000.nii.gz", r"(4D|components per voxel)", "failed"),

    Row("predict-dicom-missing-slice", "predict", lambda ws: _dicom_cases(ws, missing=True), 1, "ct_b",
        r"failed: ct_b: .*DICOM series has irregular slice spacing: .*missing slice", "failed"),

    # --- segforge_evaluate
    Row("evaluate-output-is-a-folder", "evaluate", lambda ws: _evaluate(ws, "-o", ws.root), 2, lambda ws: ws.root,
        r"-o is a folder; give the summary file's path"),
    Row("evaluate-reference-missing", "evaluate", lambda ws: ["-ref", ws.root / "noref", "-pred", ws.ref_pred()[1]],
        2, "noref", r"folder not found"),
    Row("evaluate-non-integer-prediction", "evaluate", lambda ws: [
        _rewrite(ws.ref_pred()[1] / p, np.full((8, 10, 12), 0.5, np.float32)) for p in ("a.nii.gz", "b.nii.gz")]
        and _evaluate(ws, "-o", ws.root / "s.json"), 2, "a.nii.gz", r"non-integer values"),
    Row("evaluate-other-grid", "evaluate", lambda ws: [
        _rewrite(ws.ref_pred()[1] / p, np.zeros((8, 10, 11), np.uint8), Geometry.identity((8, 10, 11)))
        for p in ("a.nii.gz", "b.nii.gz")] and _evaluate(ws, "-o", ws.root / "s.json"), 2, None,
        r"case a: prediction grid differs from the reference \(shape"),
    Row("evaluate-tolerance-nan", "evaluate", lambda ws: _evaluate(ws, "--tolerance", "nan"), 2, None,
        r"tolerance must be a finite number"),
    Row("evaluate-np-zero", "evaluate", lambda ws: _evaluate(ws, "-np", "0"), 2, None, r"-np must be at least 1"),
    Row("evaluate-one-case-truncated", "evaluate", lambda ws: _cut(ws.ref_pred()[1] / "b.nii.gz") and
        _evaluate(ws, "-o", ws.root / "s.json"), 1, "b.nii.gz", r"^segforge_evaluate: failed: b: .*file is truncated",
        "failed"),

    # --- segforge_train (a hand-made preprocessed dataset, Dataset999_Fake)
    Row("train-lr-negative", "train", lambda ws: _train(ws, "--lr", "-1"), 2, None, r"--lr must be a positive"),
    Row("train-lr-nan", "train", lambda ws: _train(ws, "--lr", "nan"), 2, None, r"--lr must be a positive finite"),
    Row("train-seed-negative", "train", lambda ws: _train(ws, "--seed", "-1"), 2, None,
        r"--seed must be a whole number from 0"),
    Row("train-max-minutes-nan", "train", lambda ws: _train(ws, "--max-minutes", "nan"), 2, None,
        r"--max-minutes must be a positive number"),
    Row("train-epochs-zero", "train", lambda ws: _train(ws, "--epochs", "0"), 2, None, r"--epochs must be at least 1"),
    Row("train-workers-negative", "train", lambda ws: _train(ws, "--num-workers", "-1"), 2, None,
        r"--num-workers must be 0 or more"),
    Row("train-fold-missing", "train", lambda ws: _train(ws, fold="7"), 2, None, r"fold 7 does not exist"),
    Row("train-fold-word", "train", lambda ws: _train(ws, fold="first"), 2, None, r"fold must be a number"),
    Row("train-not-planned", "train", lambda ws: shutil.rmtree(ws.fake) or ["999", "0"], 2, None,
        r"no dataset with id 999"),
    Row("train-plans-name-typo", "train", lambda ws: _edit_json(ws.fake / "plans.json", lambda p: p["configurations"][
        "3d_fullres"]["network"].update(nonlin="leaky_rel")) and _train(ws), 2, "plans.json",
        r"unknown non-linearity 'leaky_rel'; did you mean 'leaky_relu'"),
    Row("train-configuration-unknown", "train", lambda ws: _train(ws, "-c", "3d_lowres"), 2, None,
        r"configuration '3d_lowres' is not in the plans"),
    Row("train-splits-other-cases", "train", lambda ws: _write_bytes(ws.fake / "splits.json", json.dumps(
        {"source": "kfold", "seed": 1, "cases": ["case_000", "case_001"],
         "folds": [{"train": ["case_000"], "val": ["case_001"]}]}).encode()) and _train(ws), 2, "splits.json",
        r"its folds were made from 2 cases but 4 are preprocessed now"),
    Row("train-splits-invalid", "train", lambda ws: _write_bytes(ws.fake / "splits.json", b"{") and _train(ws), 2,
        "splits.json", r"splits file is not valid"),
    Row("train-device-cuda-missing", "train", lambda ws: _train(ws)[:-2] + ["--device", "cuda"], 2, None,
        r"no CUDA device is available"),
    Row("train-resume-nan-checkpoint", "train", lambda ws: _nan_latest(ws) and _train(ws, "--continue"), 2,
        "checkpoint_latest.pt", r"NaN/infinite weights"),
    Row("train-preprocessing-incomplete", "train", lambda ws: _fingerprint_of(ws, 5) and _train(ws), 2, "3d_fullres",
        r"preprocessing is incomplete: 1 of 5 cases are missing \(case_004\)"),
    Row("train-preprocessed-other-plans", "train", lambda ws: _edit_json(
        ws.fake / "3d_fullres" / "case_002.json", lambda d: d.update(preprocessing_version="0ther0ther00"))
        and _train(ws), 2, "3d_fullres", r"1 of 4 cases were preprocessed with other plans \(case_002\)"),
    Row("train-fold-of-other-plans", "train", lambda ws: _old_fold(ws) and _train(ws), 2,
        "SegmentationTrainer__3d_fullres", r"fold\(s\) 1 in this model folder were trained with other plans"),
    Row("train-one-case-fold-0", "train", lambda ws: _keep_cases(ws, 1) and _train(ws), 2, None,
        r"fold 0 does not exist: 1 training case: too few for cross-validation; only fold 'all' trains"),
    Row("train-patch-too-big", "train", lambda ws: _edit_json(ws.fake / "plans.json", lambda p: p["configurations"][
        "3d_fullres"].update(patch_size=[1024, 1024, 1024])) and _train(ws, fold="all"), 2, "plans.json",
        r"training 3d_fullres with patch 1024x1024x1024 at batch 2 needs about .* \(estimate\), but the cpu has"),
    Row("train-argument-syntax", "train", lambda ws: ["999", "0", "--epochs", "ten"], 2, None,
        r"argument --epochs: invalid int value: 'ten'"),

    # --- segforge_import
    Row("import-source-missing", "import", lambda ws: ["-i", ws.root / "nosource", "-d", "970", "-n", "X"], 2,
        "nosource", r"(not found|no image files)"),
    Row("import-id-taken", "import", lambda ws: ["-i", _import_source(ws), "-d", "961", "-n", "Other"], 2, None,
        r"dataset id 961 is already used by Dataset961_Matrix"),
    Row("import-split-bad", "import", lambda ws: _import(ws, "--split", "70,30"), 2, None,
        r"--split must be three non-negative numbers"),
    Row("import-labels-bad", "import", lambda ws: _import(ws, "--labels", "liver:1"), 2, None,
        r"--labels must look like liver=1"),
    Row("import-modality-count", "import", lambda ws: _import(ws)[:-4] + ["--modality", "CT,MR", "-np", "1"], 2, None,
        r"--modality names 2 channels but the cases have 1"),
    Row("import-label-truncated", "import", lambda ws: _cut(_import_source(ws) / "labels" / "p1.nii.gz") and
        _import(ws), 2, "p1.nii.gz", r"truncated"),
    Row("import-image-nan", "import", lambda ws: _with_nan(_import_source(ws) / "images" / "p2.nii.gz") and
        _import(ws), 2, "p2.nii.gz", r"1 NaN and 0 infinite voxels"),
    Row("import-into-source", "import", lambda ws: ["-i", ws.raw, "-d", "970", "-n", "X"], 2, None,
        r"overlap"),
]


def _fingerprint_of(ws: Workspace, n: int) -> Path:
    """A fingerprint naming ``n`` training cases (the fake dataset has 4 preprocessed)."""
    path = ws.fake / "fingerprint.json"
    path.write_text(json.dumps({"cases": [{"name": f"case_{i:03d}"} for i in range(n)]}))
    return path


def _old_fold(ws: Workspace) -> Path:
    """Fold 1 of the model folder trained with older plans."""
    path = ws.earlier_fold() / "fold_1" / "checkpoint_final.pt"
    torch.save({"network_state": {}, "epoch": 3, "plans_version": "01d01d01d01d"}, path)
    return path


def _keep_cases(ws: Workspace, n: int) -> Path:
    for p in (ws.fake / "3d_fullres").iterdir():
        if int(p.name[len("case_"):len("case_") + 3]) >= n:
            p.unlink()
    return ws.fake


def _edit_json(path: Path, edit) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


def _second_channel(ws: Workspace, cases) -> Path:
    """Declare two channels and give the second to ``cases`` only."""
    for case in cases:
        shutil.copyfile(ws.image(case), ws.ds / "imagesTr" / f"case_{case:03d}_0001.nii.gz")
    return ws.edit_dataset_json(lambda d: d.update(channel_names={"0": "CT", "1": "CT"}))


def _dicom_cases(ws: Workspace, missing: bool) -> list:
    """Two DICOM series folders as inputs; ``ct_b`` lost a slice in the middle."""
    from helpers.dicom_writer import write_dicom_series

    folder = ws.root / "dicom"
    hu = (np.arange(10 * 16 * 16).reshape(10, 16, 16) % 200 - 100).astype(np.int16)
    for name in ("ct_a", "ct_b"):
        write_dicom_series(folder / name, hu, (2.5, 0.8, 1.1), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    if missing:
        (folder / "ct_b" / "slice_005.dcm").unlink()
    return _predict(ws, inp=folder)


def _write_4d(path: Path) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.zeros((10, 20, 18, 3), np.float32), isVector=True)
    sitk.WriteImage(image, str(path))
    return path


def _nan_latest(ws: Workspace) -> Path:
    """A checkpoint_latest.pt of fold 0 whose weights went NaN (a run that diverged)."""
    from segforge.networks import build_network
    from segforge.planning.plans import Plans

    plans = Plans.load(ws.fake / "plans.json")
    network = build_network(plans.configuration("3d_fullres"), 1, plans.num_classes)
    state = network.state_dict()
    state[next(iter(state))].fill_(float("nan"))
    folder = ws.earlier_fold() / "fold_0"
    folder.mkdir(exist_ok=True)
    torch.save({"network_state": state, "plans_version": plans.configuration("3d_fullres").version(), "epoch": 0},
               folder / "checkpoint_latest.pt")
    return folder / "checkpoint_latest.pt"


def test_the_matrix_is_large_enough_and_documented():
    assert len(ROWS) >= 60 and len({r.id for r in ROWS}) == len(ROWS)
    page = (Path(__file__).parents[2] / "docs" / "reliability.md").read_text(encoding="utf-8")
    undocumented = [r.id for r in ROWS if f"`{r.id}`" not in page]
    assert not undocumented, f"rows missing from docs/reliability.md: {undocumented}"


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_refused_cleanly(row: Row, pristine, tmp_path):
    torch.set_num_threads(1)
    ws = Workspace(tmp_path, pristine)
    argv = row.setup(ws)
    before = tree_hashes(tmp_path)
    answer = run(row.command, argv)
    names = row.names(ws) if callable(row.names) else row.names
    assert_refused(answer, row.code, names, row.problem, row.kind)
    after = tree_hashes(tmp_path)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"earlier files changed or removed: {changed}"
