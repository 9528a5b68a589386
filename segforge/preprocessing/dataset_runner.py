"""Preprocess every training case of a dataset for some configurations, resumably.

Layout (docs/architecture.md, "Preprocessed cases"):
``segforge_preprocessed/DatasetNNN_Name/<data_identifier>/CASE.npy`` (float32
``(C, z, y, x)``, plain ``np.save``: it memory-maps), ``CASE_seg.npy`` (int16
``(z, y, x)``) and ``CASE.json`` (properties), each written under a temporary name and
renamed, the JSON last. A case is done when its JSON carries the configuration's
``preprocessing_version`` and its arrays are whole and of the recorded shape; anything else
is redone, so a crashed or interrupted run resumes where it stopped and a changed plan
redoes what it changes.

Cases run through :func:`segforge.execution.run_cases` (local processes, a Ray cluster, or
one ``--part`` of a SLURM array): workers read their case from disk themselves and send
back nothing but their status, so memory stays around one case per worker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from segforge.errors import DatasetProblems, InputError
from segforge.execution import CaseStage, CaseTask, ExecutionSettings, RunSummary, run_cases
from segforge.io.atomic import TMP_PREFIX, save_npy_atomic, write_text_atomic
from segforge.io.dataset import RawCase, RawDataset
from segforge.paths import preprocessed_root
from segforge.planning.plans import Configuration, Plans
from segforge.preprocessing.case import (
    case_seed,
    preprocess_case,
    preprocessing_version,
)

__all__ = ["TMP_PREFIX", "preprocess_dataset", "preprocess_raw_case", "case_is_done", "case_files", "write_case",
           "preprocessing_stage"]


def case_files(folder: Path, case: str) -> tuple[Path, Path, Path]:
    """``(CASE.npy, CASE_seg.npy, CASE.json)`` in ``folder``."""
    return folder / f"{case}.npy", folder / f"{case}_seg.npy", folder / f"{case}.json"


def case_is_done(folder: Path, case: str, version: str, has_label: bool) -> bool:
    """True when ``CASE.json`` says ``preprocessing_version == version`` and the arrays are whole
    ``.npy`` files (only their headers are read) of the shape the JSON records."""
    data_file, seg_file, json_file = case_files(folder, case)
    try:
        properties = json.loads(json_file.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(properties, dict) or properties.get("preprocessing_version") != version:
        return False
    shape = tuple(properties.get("preprocessed_shape") or ())
    if not _whole_array(data_file, shape, np.float32):
        return False
    return _whole_array(seg_file, shape, np.int16) if has_label else True


def _whole_array(path: Path, shape: tuple, dtype) -> bool:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)  # a truncated file does not map
    except (OSError, ValueError):
        return False
    return array.dtype == dtype and tuple(array.shape[-3:]) == shape


def write_case(folder: Path, case: str, data: np.ndarray, seg: np.ndarray | None, properties: dict) -> None:
    """Write one case: the old JSON goes first, then the arrays, then the new JSON."""
    data_file, seg_file, json_file = case_files(folder, case)
    json_file.unlink(missing_ok=True)  # from here until the end the case is "not done"
    save_npy_atomic(data_file, np.ascontiguousarray(data, dtype=np.float32))
    if seg is not None:
        save_npy_atomic(seg_file, np.ascontiguousarray(seg, dtype=np.int16))
    else:
        seg_file.unlink(missing_ok=True)
    write_text_atomic(json_file, json.dumps(properties))


def preprocess_raw_case(case: RawCase, configuration: Configuration, folder: Path) -> None:
    """Read one raw case from its files, preprocess it and write it into ``folder``."""
    from segforge.io import read_image, read_multichannel

    image, geometry = read_multichannel(case.image_files)
    label = None
    if case.label_file is not None:
        label, label_geometry = read_image(case.label_file)
        if not label_geometry.same_grid(geometry):
            raise InputError(
                f"label grid differs from the image: {label_geometry.describe_difference(geometry)}", case.label_file
            )
    data, seg, properties = preprocess_case(
        image, geometry, configuration, label, rng_seed=case_seed(case.name), case_name=case.name
    )
    write_case(folder, case.name, data, seg, properties)


def preprocessing_stage(identifier: str) -> CaseStage:
    """The per-case stage: payload ``(RawCase, Configuration, folder)``."""
    return CaseStage(f"preprocessing {identifier}", _preprocess_task)


def _preprocess_task(context, payload: tuple[RawCase, Configuration, str]) -> None:
    case, configuration, folder = payload
    preprocess_raw_case(case, configuration, Path(folder))


def preprocess_dataset(
    dataset: RawDataset | str | int | Path,
    plans: Plans,
    configurations: list[str],
    num_processes: int = 2,
    cases: list[str] | None = None,
    progress: bool = True,
    execution: ExecutionSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """Preprocess the training cases (all, or those named in ``cases``) for each configuration.

    Finished cases are skipped; returns ``{data_identifier: [cases preprocessed now]}``.
    Configurations sharing a ``data_identifier`` are preprocessed once (they must then
    preprocess alike). ``execution``: executor, workers and part (default: ``num_processes``
    local processes); ``log`` gets each run's summary line. Problems with cases are collected
    and raised together as :class:`DatasetProblems` after all other cases are written.
    """
    ds = dataset if isinstance(dataset, RawDataset) else RawDataset.open(dataset)
    raw_cases = ds.training_cases()
    if cases is not None:
        known = {c.name for c in raw_cases}
        unknown = [c for c in cases if c not in known]
        if unknown:
            raise InputError(f"no training case named {', '.join(unknown)}", ds.root / "imagesTr")
        wanted = set(cases)
        raw_cases = [c for c in raw_cases if c.name in wanted]

    by_identifier: dict[str, Configuration] = {}
    for name in configurations:
        configuration = plans.configuration(name)
        first = by_identifier.setdefault(configuration.data_identifier, configuration)
        if preprocessing_version(first) != preprocessing_version(configuration):
            raise InputError(
                f"configurations {first.name!r} and {name!r} share the folder {configuration.data_identifier!r} "
                "but preprocess differently; give them different data_identifier values"
            )

    settings = execution or ExecutionSettings(workers=max(1, int(num_processes)))
    done_now: dict[str, list[str]] = {}
    problems: list[str] = []
    for identifier, configuration in by_identifier.items():
        summary = _preprocess_folder(ds, identifier, configuration, raw_cases, settings, progress, log)
        done_now[identifier] = summary.done
        problems += summary.failure_lines()
    if problems:
        raise DatasetProblems(problems)
    return done_now


def _preprocess_folder(ds: RawDataset, identifier: str, configuration: Configuration, raw_cases: list[RawCase],
                       settings: ExecutionSettings, progress: bool, log) -> RunSummary:
    folder = preprocessed_root() / ds.name / identifier
    folder.mkdir(parents=True, exist_ok=True)
    version = preprocessing_version(configuration)
    labelled = {c.name: c.label_file is not None for c in raw_cases}
    tasks = [CaseTask(c.name, (c, configuration, str(folder))) for c in raw_cases]
    return run_cases(
        preprocessing_stage(identifier), tasks, settings,
        is_done=lambda task: case_is_done(folder, task.name, version, labelled[task.name]),
        output_folder=folder, progress=progress, log=log,
    )
