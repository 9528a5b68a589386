"""Check a raw dataset before anything is computed from it.

:func:`verify_dataset` opens every image and label once and returns all problems at once,
one line each, starting with the file it is about:

* layout: ``numTraining`` differing from ``imagesTr``, files with another ending or without
  the ``_0000`` channel suffix, label files without image, ``segforge_split`` naming unknown
  cases, a channel file missing;
* files (:func:`segforge.io.image.read_image`): unreadable, empty, truncated, corrupt, 2D or 4D
  where a 3D image is expected, NaN/inf voxels, a sheared direction, uneven DICOM slices;
* grids: channels of a case, and image vs label, must share shape, spacing, origin and
  direction;
* labels: present for every training case, integer valued, only values declared in
  ``dataset.json``.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segforge.errors import DatasetProblems, InputError
from segforge.workers import die_with_parent
from segforge.io.dataset import RawCase, RawDataset
from segforge.io.image import read_image, read_label

__all__ = ["verify_dataset", "verify_or_raise", "check_case"]


@dataclass
class _CaseCheck:
    case: RawCase
    num_channels: int
    label_values: tuple[int, ...]
    label_required: bool
    expected_label_file: Path


def verify_dataset(ds: RawDataset, num_processes: int = 2, progress: bool = True, pool=None) -> list[str]:
    """All problems of ``ds`` (training and test cases), one line each naming the file; [] if fine.

    ``pool``: a running ``multiprocessing`` pool to use instead of starting one.
    """
    problems = list(ds.stray_files())
    training, test = ds.training_cases(), ds.test_cases()
    json_path = ds.root / "dataset.json"
    if not training:
        problems.append(f"{ds.root / 'imagesTr'}: no training cases (expected imagesTr/CASE_0000{ds.file_ending})")
    declared = ds.dataset_json.get("numTraining")
    if declared is None:
        problems.append(f"{json_path}: numTraining missing (imagesTr holds {len(training)} cases)")
    elif isinstance(declared, bool) or not isinstance(declared, int):
        problems.append(f"{json_path}: numTraining must be a whole number, got {declared!r} "
                        f"({type(declared).__name__}); imagesTr holds {len(training)} cases, so write "
                        f'"numTraining": {len(training)}')
    elif declared != len(training):
        problems.append(f"{json_path}: numTraining is {declared} but imagesTr holds {len(training)} cases")
    problems += _check_split(ds, training, test)

    labels = tuple(ds.label_values)
    tasks = [_CaseCheck(c, ds.num_channels, labels, True, ds.root / "labelsTr" / f"{c.name}{ds.file_ending}")
             for c in training]
    tasks += [_CaseCheck(c, ds.num_channels, labels, False, ds.root / "labelsTs" / f"{c.name}{ds.file_ending}")
              for c in test]
    bar = dict(total=len(tasks), desc=f"verify {ds.name}", unit="case", disable=not progress or not tasks)
    if pool is not None:
        for lines in tqdm(pool.imap(_run_check, tasks), **bar):
            problems += lines
    elif num_processes > 1 and len(tasks) > num_processes:  # fewer cases are not worth starting processes
        # spawn, not fork: ITK's thread pool does not survive a fork
        with mp.get_context("spawn").Pool(min(num_processes, len(tasks)), initializer=die_with_parent) as own_pool:
            for lines in tqdm(own_pool.imap(_run_check, tasks), **bar):
                problems += lines
    else:
        for task in tqdm(tasks, **bar):
            problems += _run_check(task)
    return problems


def verify_or_raise(ds: RawDataset, num_processes: int = 2, progress: bool = True) -> None:
    """Raise :class:`DatasetProblems` listing every problem :func:`verify_dataset` finds."""
    problems = verify_dataset(ds, num_processes=num_processes, progress=progress)
    if problems:
        raise DatasetProblems(problems)


def check_case(case: RawCase, num_channels: int, label_values, label_required: bool,
               expected_label_file: Path | None = None) -> list[str]:
    """Problems of one case (its channel files and its label), one line each naming the file."""
    expected = expected_label_file or case.label_file or Path(f"{case.name} label")
    return _run_check(_CaseCheck(case, num_channels, tuple(label_values), label_required, expected))


def _run_check(task: _CaseCheck) -> list[str]:
    case, problems = task.case, []
    ref = None  # (geometry, path) of the first readable channel
    for c, f in enumerate(task.case.image_files):
        if c >= task.num_channels:
            problems.append(f"{f}: channel {c} of case {case.name} is not declared in dataset.json channel_names "
                            f"({task.num_channels} channel(s))")
            continue
        if not f.exists():
            problems.append(f"{f}: channel {c} file missing for case {case.name} "
                            f"({task.num_channels} channel(s) declared in dataset.json)")
            continue
        array, geometry = _read(f, problems)
        if array is None:
            continue
        if ref is None:
            ref = (geometry, f)
        elif not geometry.same_grid(ref[0]):
            problems.append(f"{f}: grid differs from channel 0 file {ref[1].name} "
                            f"({ref[0].describe_difference(geometry)})")
    if case.label_file is None:
        if task.label_required:
            problems.append(f"{task.expected_label_file}: label file missing for training case {case.name}")
        return problems
    label, geometry = _read(case.label_file, problems, read_label)
    if label is None:
        return problems
    found = np.unique(label).astype(np.int64)
    undeclared = sorted(set(found.tolist()) - set(task.label_values))
    if undeclared:
        problems.append(f"{case.label_file}: label values {undeclared} are not declared in dataset.json labels "
                        f"(declared: {list(task.label_values)})")
    if ref is not None and not geometry.same_grid(ref[0]):
        problems.append(f"{case.label_file}: label grid differs from image {ref[1].name} "
                        f"(image vs label: {ref[0].describe_difference(geometry)})")
    return problems


def _read(path: Path, problems: list[str], reader=read_image):
    """The validating reader's ``(array, geometry)``, or ``(None, None)`` with its problem added."""
    try:
        return reader(path)
    except InputError as exc:
        problems.append(str(exc))
    except Exception as exc:  # a reader crashing on a strange file is a problem of that file
        problems.append(f"{path}: cannot read image ({type(exc).__name__}: {exc})")
    return None, None


def _check_split(ds: RawDataset, training: list[RawCase], test: list[RawCase]) -> list[str]:
    try:
        split = ds.predefined_split()
    except InputError as exc:
        return [str(exc)]
    if split is None:
        return []
    json_path = ds.root / "dataset.json"
    train_names, test_names = {c.name for c in training}, {c.name for c in test}
    problems = []
    for subset, names in split.items():
        if subset not in ("train", "val", "test"):
            problems.append(f"{json_path}: segforge_split has an unknown subset {subset!r} (use train, val, test)")
            continue
        known = train_names | test_names if subset == "test" else train_names
        unknown = [n for n in names if n not in known]
        if unknown:
            where = "imagesTr or imagesTs" if subset == "test" else "imagesTr"
            problems.append(f"{json_path}: segforge_split {subset} names cases not in {where}: "
                            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
    return problems
