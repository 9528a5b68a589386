"""Predicting many cases with reading, network and writing overlapped.

While the network works on case ``i``, a reader thread loads and preprocesses case
``i + 1`` (and ``i + 2``), and a writer thread restores case ``i - 1`` to its original
grid and writes it. A case that fails (unreadable file, missing channel...) is reported by
name with the reason and the others go on.
"""

from __future__ import annotations

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from segforge.errors import InputError
from segforge.io.atomic import check_writable_folder, remove_stale_temporaries
from segforge.inference.export import write_prediction
from segforge.inference.inputs import InputCase, output_file, read_case
from segforge.inference.outputs import output_problem
from segforge.inference.predictor import Predictor

__all__ = ["CaseReport", "predict_cases", "case_is_done"]


@dataclass
class CaseReport:
    """What happened to one case: ``status`` is ``done``, ``skipped`` or ``failed``."""

    name: str
    output: Path
    status: str
    reason: str = ""
    seconds: dict | None = None


def case_is_done(case: InputCase, output_folder, save_probabilities: bool, num_classes: int | None = None) -> bool:
    """The outputs are whole and readable (:func:`segforge.inference.outputs.output_problem`)."""
    return output_problem(case, output_folder, save_probabilities, num_classes) is None


def predict_cases(
    predictor: Predictor,
    cases: list[InputCase],
    output_folder,
    save_probabilities: bool = False,
    skip_existing: bool = False,
    prefetch: int = 2,
    log: Callable[[str], None] = print,
) -> list[CaseReport]:
    """Predict ``cases`` into ``output_folder``; one :class:`CaseReport` per case, in order."""
    output_folder = check_writable_folder(output_folder)
    remove_stale_temporaries(output_folder)
    reports: dict[str, CaseReport] = {}
    todo = []
    for case in cases:
        problem = output_problem(case, output_folder, save_probabilities, predictor.num_classes) if skip_existing \
            else "no output yet"
        if problem is None:
            reports[case.name] = CaseReport(case.name, output_file(case, output_folder), "skipped", "output complete")
            log(f"{case.name}: skipped (output complete)")
        else:
            if skip_existing and problem != "no output yet":
                log(f"{case.name}: predicting again: {problem}")
            todo.append(case)

    label_names = dict(predictor.plans.labels)
    with ThreadPoolExecutor(max(1, prefetch), thread_name_prefix="segforge-read") as readers, \
            ThreadPoolExecutor(1, thread_name_prefix="segforge-write") as writer:
        loading: deque[tuple[InputCase, Future]] = deque()
        writing: deque[tuple[InputCase, Future]] = deque()
        queue = iter(todo)

        def refill():
            while len(loading) < max(1, prefetch):
                case = next(queue, None)
                if case is None:
                    return
                loading.append((case, readers.submit(_load, predictor, case)))

        refill()
        while loading:
            case, future = loading.popleft()
            refill()
            target = output_file(case, output_folder)
            try:
                data, properties, geometry, seconds = future.result()
                start = time.perf_counter()
                probabilities = predictor.predict_preprocessed(data, properties)
                seconds["network"] = time.perf_counter() - start
                del data
            except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
                reports[case.name] = _failed(case, target, exc, log)
                continue
            while len(writing) >= 2:  # bound memory: at most two cases wait for the writer
                _collect(writing.popleft(), output_folder, reports, log)
            writing.append((case, writer.submit(
                _export, predictor, probabilities, properties, geometry, target, save_probabilities, label_names,
                seconds, case,
            )))
        while writing:
            _collect(writing.popleft(), output_folder, reports, log)
    return [reports[c.name] for c in cases]


def _load(predictor: Predictor, case: InputCase):
    start = time.perf_counter()
    image, geometry = read_case(case)
    read = time.perf_counter() - start
    data, properties = predictor.preprocess(image, geometry)
    seconds = {"read": read, "preprocess": time.perf_counter() - start - read}
    return data, properties, geometry, seconds


def _export(predictor, probabilities, properties, geometry, target, save_probabilities, label_names, seconds,
            case=None):
    start = time.perf_counter()
    labels, restored = predictor.restore(probabilities, properties, keep_probabilities=save_probabilities)
    del probabilities
    write_prediction(labels, geometry, target, restored, label_names, source=case)
    predictor.export_extras(properties, target)
    seconds["export"] = time.perf_counter() - start
    return seconds


def _collect(item, output_folder, reports, log) -> None:
    case, future = item
    target = output_file(case, output_folder)
    try:
        seconds = future.result()
    except Exception as exc:  # noqa: BLE001 - reported by name; the other cases go on
        reports[case.name] = _failed(case, target, exc, log)
        return
    reports[case.name] = CaseReport(case.name, target, "done", seconds=seconds)
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
    log(f"{case.name}: {sum(seconds.values()):.2f} s ({parts}) -> {target}")


def _failed(case: InputCase, target: Path, exc: Exception, log) -> CaseReport:
    reason = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
    log(f"{case.name}: FAILED: {reason}")
    return CaseReport(case.name, target, "failed", reason)
