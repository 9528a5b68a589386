"""Predicting many cases: a per-case stage on the runner, with reading, network and writing overlapped.

Every worker (this process, a local worker process per CPU slot or GPU, or a Ray actor per
GPU or CPU slot; :mod:`segforge.execution`) loads the model once and holds
``prefetch + 1`` cases at a time in threads: while one case is in the network (one at a
time per worker, under a lock), the next is read and preprocessed and the previous one is
restored to its grid and written. A case that fails (unreadable file, missing channel...)
is reported by name with the reason and the others go on; a case whose worker died is
given to a fresh worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from segforge.execution import CaseStage, CaseTask, ExecutionSettings, TaskOutcome, run_cases
from segforge.inference.export import write_prediction
from segforge.inference.inputs import InputCase, output_file, read_case
from segforge.inference.outputs import output_problem, write_prediction_manifest
from segforge.io.atomic import WriteError, check_writable_folder
from segforge.inference.predictor import Predictor

MANIFEST_NOTE = "predictions.json not written (the label files are complete; --pseudo-labels cannot read this folder)"

__all__ = ["CaseReport", "PredictorSpec", "predict_cases", "case_is_done", "prediction_stage"]


@dataclass
class CaseReport:
    """What happened to one case: ``status`` is ``done``, ``skipped`` or ``failed``."""

    name: str
    output: Path
    status: str
    reason: str = ""
    seconds: dict | None = None


@dataclass(frozen=True)
class PredictorSpec:
    """How a worker builds its predictor (plain data: it travels to worker processes and Ray actors).
    An ensemble across configurations (:class:`~segforge.inference.ensemble.EnsemblePredictor`) is
    ``model_folder`` plus ``other_model_folders`` and the ``ensemble_folder`` of its postprocessing."""

    model_folder: str
    folds: tuple[str, ...] | None = None
    checkpoint: str = "final"
    device: str | None = None
    tta: bool = True
    step: float = 0.5
    backend: str = "torch"
    mirror_axes: tuple[int, ...] | None = None
    bf16: bool = False
    options: dict = field(default_factory=dict)  # attributes set after loading, e.g. {"save_locator": True}
    postprocessing: bool = True
    other_model_folders: tuple[str, ...] = ()
    ensemble_folder: str | None = None

    @classmethod
    def of(cls, predictor) -> "PredictorSpec":
        import torch

        members = getattr(predictor, "members", None)  # an ensemble: its members share these options
        first = members[0] if members else predictor
        options = {"save_locator": True} if getattr(predictor, "save_locator", False) else {}
        ensemble = {}
        if members:
            folder = predictor.folder
            ensemble = dict(other_model_folders=tuple(str(m.model.path) for m in members[1:]),
                            ensemble_folder=str(folder) if folder is not None else None)
        return cls(str(first.model.path), tuple(first.folds), first.checkpoint, first.device.type,
                   first.tta, first.step, first.backend, tuple(first.mirror_axes) if first.tta else None,
                   getattr(first, "amp_dtype", None) == torch.bfloat16, options,
                   postprocessing=predictor.postprocessing is not None, **ensemble)

    def load(self, device: str | None = None) -> Predictor:
        from pathlib import Path

        from segforge.inference.ensemble import create_chosen_predictor
        from segforge.inference.model import ModelFolder

        folders = [ModelFolder.open(self.model_folder)] + [Path(f) for f in self.other_model_folders]
        predictor = create_chosen_predictor(
            folders, Path(self.ensemble_folder) if self.ensemble_folder else None,
            postprocessing=self.postprocessing, folds=self.folds, checkpoint=self.checkpoint,
            device=device or self.device, tta=self.tta, step=self.step, backend=self.backend,
            mirror_axes=self.mirror_axes, bf16=self.bf16)
        for name, value in self.options.items():
            setattr(predictor, name, value)
        return predictor


def case_is_done(case: InputCase, output_folder, save_probabilities: bool, num_classes: int | None = None) -> bool:
    """The outputs are whole and readable (:func:`segforge.inference.outputs.output_problem`)."""
    return output_problem(case, output_folder, save_probabilities, num_classes) is None


def prediction_stage(predictor: Predictor | PredictorSpec, prefetch: int = 2) -> CaseStage:
    """The per-case stage: payload ``(InputCase, output folder, save_probabilities)``; the result
    is the case's seconds per phase. A :class:`Predictor` is used as is (this process only)."""
    return CaseStage("prediction", _predict_task, setup=_load_predictor, setup_arg=predictor,
                     cases_per_worker=max(1, prefetch) + 1, uses_gpu=True)


def predict_cases(
    predictor: Predictor,
    cases: list[InputCase],
    output_folder,
    save_probabilities: bool = False,
    skip_existing: bool = False,
    prefetch: int = 2,
    log: Callable[[str], None] = print,
    execution: ExecutionSettings | None = None,
    progress: bool = False,
) -> list[CaseReport]:
    """Predict ``cases`` into ``output_folder``; one :class:`CaseReport` per case, in order.

    ``execution``: executor, workers, GPUs and part (default: this process with ``predictor``);
    other workers build their own predictor like ``predictor`` (:class:`PredictorSpec`).
    With a part, only that part's cases are reported. ``output_folder/predictions.json`` records the
    image(s) of every complete label file (:func:`~segforge.inference.outputs.write_prediction_manifest`).
    """
    output_folder = check_writable_folder(output_folder)
    execution = execution or ExecutionSettings(workers=1)
    if execution.executor == "local" and execution.workers is None:
        execution = execution.with_workers(1)  # locally, one process using every core unless -np says otherwise
    in_process = execution.executor == "local" and execution.workers == 1 and not execution.num_gpus
    stage = prediction_stage(predictor if in_process else PredictorSpec.of(predictor), prefetch)
    by_name = {c.name: c for c in cases}
    tasks = [CaseTask(c.name, (c, str(output_folder), save_probabilities)) for c in cases]

    def report(outcome: TaskOutcome) -> None:
        target = output_file(by_name[outcome.name], output_folder)
        if outcome.status == "done":
            seconds = outcome.result
            parts = ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
            log(f"{outcome.name}: {sum(seconds.values()):.2f} s ({parts}) -> {target}")
        elif outcome.status == "skipped":
            log(f"{outcome.name}: skipped (output complete)")
        else:
            log(f"{outcome.name}: FAILED: {outcome.reason}")

    def is_done(task: CaseTask) -> bool:
        problem = output_problem(by_name[task.name], output_folder, save_probabilities, predictor.num_classes)
        if problem is not None and problem != "no output yet":
            log(f"{task.name}: predicting again: {problem}")
        return problem is None

    summary = run_cases(stage, tasks, execution, is_done=is_done if skip_existing else None, output_folder=output_folder, progress=progress,
                        log=None, on_outcome=report)
    complete = [o.name for o in summary.outcomes if o.status in ("done", "skipped")
                and output_file(by_name[o.name], output_folder).suffix != ".dcm"]
    model = getattr(predictor, "model", None)  # None: a stand-in predictor without a model folder
    if complete and model is not None:  # which images each label file was predicted from: what --pseudo-labels reads
        try:
            write_prediction_manifest(output_folder, model.path, model.configuration.name, model.plans.labels, cases,
                                      complete)
        except (WriteError, OSError) as exc:  # the label files are whole; only the manifest is missing
            log(f"{MANIFEST_NOTE}: {exc}")
    reports = []
    for outcome in summary.outcomes:
        target = output_file(by_name[outcome.name], output_folder)
        reason = "output complete" if outcome.status == "skipped" else outcome.reason
        seconds = outcome.result if outcome.status == "done" else None
        reports.append(CaseReport(outcome.name, target, outcome.status, reason, seconds))
    return reports


class _Worker:
    """A worker's predictor and the lock that keeps one case at a time in its network."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.network = threading.Lock()
        self.label_names = predictor.plans.label_scheme.written_labels  # name -> value in the label maps


def _load_predictor(source: Predictor | PredictorSpec, device: str | None) -> _Worker:
    return _Worker(source if not isinstance(source, PredictorSpec) else source.load(device))


def _predict_task(worker: _Worker, payload: tuple[InputCase, str, bool]) -> dict:
    case, output_folder, save_probabilities = payload
    predictor = worker.predictor
    start = time.perf_counter()
    image, geometry = read_case(case)
    seconds = {"read": time.perf_counter() - start}
    start = time.perf_counter()
    data, properties = predictor.preprocess(image, geometry)
    del image
    seconds["preprocess"] = time.perf_counter() - start
    with worker.network:
        start = time.perf_counter()
        probabilities = predictor.predict_preprocessed(data, properties)
        seconds["network"] = time.perf_counter() - start
    del data
    start = time.perf_counter()
    target = output_file(case, output_folder)
    labels, restored = predictor.restore(probabilities, properties, keep_probabilities=save_probabilities)
    del probabilities
    write_prediction(labels, geometry, target, restored, worker.label_names, source=case)
    predictor.export_extras(properties, target)
    seconds["export"] = time.perf_counter() - start
    return seconds
