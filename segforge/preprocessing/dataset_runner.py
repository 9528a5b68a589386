"""Preprocess every training case of a dataset for some configurations, resumably.

Layout (docs/architecture.md, "Preprocessed cases"):
``segforge_preprocessed/DatasetNNN_Name/<data_identifier>/CASE.npy`` (float32
``(C, z, y, x)``, plain ``np.save``: it memory-maps), ``CASE_seg.npy`` (int16
``(z, y, x)``) and ``CASE.json`` (properties), each written under a temporary name and
renamed, the JSON last. A case is done when its JSON carries the configuration's
``preprocessing_version`` and its arrays exist; anything else is redone, so a crashed or
interrupted run resumes where it stopped and a changed plan redoes what it changes.

Workers read their case from disk themselves and send back only a short status, so
memory stays around one case per worker.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from segforge.errors import DatasetProblems, InputError
from segforge.io.atomic import TMP_PREFIX, remove_stale_temporaries, save_npy_atomic, write_text_atomic
from segforge.io.dataset import RawCase, RawDataset
from segforge.paths import preprocessed_root
from segforge.planning.plans import Configuration, Plans
from segforge.preprocessing.case import (
    case_seed,
    preprocess_case,
    preprocessing_version,
)

__all__ = ["TMP_PREFIX", "preprocess_dataset", "preprocess_raw_case", "case_is_done", "case_files", "write_case"]


def case_files(folder: Path, case: str) -> tuple[Path, Path, Path]:
    """``(CASE.npy, CASE_seg.npy, CASE.json)`` in ``folder``."""
    return folder / f"{case}.npy", folder / f"{case}_seg.npy", folder / f"{case}.json"


def case_is_done(folder: Path, case: str, version: str, has_label: bool) -> bool:
    """True when ``CASE.json`` says ``preprocessing_version == version`` and the arrays exist."""
    data_file, seg_file, json_file = case_files(folder, case)
    try:
        properties = json.loads(json_file.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(properties, dict) or properties.get("preprocessing_version") != version:
        return False
    return data_file.is_file() and (seg_file.is_file() or not has_label)


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


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_task(task: tuple[RawCase, Configuration, str]) -> tuple[str, str | None]:
    case, configuration, folder = task
    try:
        preprocess_raw_case(case, configuration, Path(folder))
    except InputError as exc:
        return case.name, str(exc)
    return case.name, None


def preprocess_dataset(
    dataset: RawDataset | str | int | Path,
    plans: Plans,
    configurations: list[str],
    num_processes: int = 2,
    cases: list[str] | None = None,
    progress: bool = True,
) -> dict[str, list[str]]:
    """Preprocess the training cases (all, or those named in ``cases``) for each configuration.

    Finished cases are skipped; returns ``{data_identifier: [cases preprocessed now]}``.
    Configurations sharing a ``data_identifier`` are preprocessed once (they must then
    preprocess alike). Problems with cases are collected and raised together as
    :class:`DatasetProblems` after all other cases are written.
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

    done_now: dict[str, list[str]] = {}
    problems: list[str] = []
    for identifier, configuration in by_identifier.items():
        folder = preprocessed_root() / ds.name / identifier
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)  # left by a run that was killed mid-write
        version = preprocessing_version(configuration)
        todo = [c for c in raw_cases if not case_is_done(folder, c.name, version, c.label_file is not None)]
        done_now[identifier] = []
        tasks = [(c, configuration, str(folder)) for c in todo]
        bar = tqdm(total=len(tasks), desc=f"preprocessing {identifier}", unit="case", disable=not progress)
        for name, problem in _map(tasks, num_processes):
            bar.update(1)
            if problem is None:
                done_now[identifier].append(name)
            else:
                problems.append(problem)
        bar.close()
    if problems:
        raise DatasetProblems(problems)
    return done_now


def _map(tasks: list, num_processes: int):
    """``_run_task`` over ``tasks`` in this process or in a worker pool, results as they finish."""
    if not tasks:
        return
    processes = max(1, min(int(num_processes), len(tasks)))
    if processes == 1:
        for task in tasks:
            yield _run_task(task)
        return
    threads = max(1, (os.cpu_count() or 1) // processes)
    with _context().Pool(processes, initializer=_worker_init, initargs=(threads,)) as pool:
        yield from pool.imap_unordered(_run_task, tasks, chunksize=1)


def _context():
    """Fresh worker processes without this process's threads (torch/OpenMP are not fork-safe).

    A fork server imports torch and segforge once and forks the workers from that clean
    process, which is much faster than every spawned worker importing them again; where
    there is no fork server (Windows), workers are spawned.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return mp.get_context("spawn")
