"""What runs inside a worker (a local process, a Ray actor, or this process): set-up once,
then one call per case, every exception turned into a tagged result so that only a dying
worker reaches the driver as a failure of the worker itself."""

from __future__ import annotations

import os
import sys

from segforge.errors import InputError
from segforge.execution.tasks import CaseStage
from segforge.io.atomic import RUN_ID_ENV  # temporary files carry the id of the run that made them

__all__ = ["RUN_ID_ENV", "limit_threads", "start_worker", "call_task"]



def limit_threads(threads: int) -> None:
    """At most ``threads`` intra-op threads for torch, OpenMP and SimpleITK in this process."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"):
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "SimpleITK" in sys.modules:
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def start_worker(stage: CaseStage, threads: int | None, run_id: str | None, device: str | None):
    """Prepare this process for ``stage``; returns ``(context, setup_error | None)``."""
    if run_id:
        os.environ[RUN_ID_ENV] = run_id
    if threads:
        limit_threads(threads)
    if stage.setup is None:
        return None, None
    try:
        context = stage.setup(stage.setup_arg, device)
    except InputError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - reported to the driver, which stops the run
        return None, f"{type(exc).__name__}: {exc}"
    if threads:
        limit_threads(threads)  # a set-up may have raised them (the predictor takes every core by default)
    return context, None


def call_task(stage: CaseStage, context, name: str, payload) -> tuple[str, object]:
    """``("ok", result)``, ``("failed", reason)``: a bad case is reported, the worker goes on."""
    try:
        return "ok", stage.run(context, payload)
    except InputError as exc:
        return "failed", str(exc)
    except MemoryError:
        return "failed", "out of memory"
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
        return "failed", f"{type(exc).__name__}: {exc}"
