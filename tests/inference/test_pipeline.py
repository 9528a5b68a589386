"""The pipeline overlaps reading, the network and writing, and keeps going past a failing case."""

import threading
import time
from types import SimpleNamespace

import numpy as np
import torch

from segforge.errors import InputError
from segforge.inference import pipeline
from segforge.inference.inputs import InputCase
from segforge.io.geometry import Geometry
from segforge.io.labels import parse_label_scheme

STEP = 0.3  # seconds each phase sleeps


class SlowPredictor:
    """Records when each phase of each case starts and ends."""

    def __init__(self):
        labels = {"background": 0, "a": 1}
        self.plans = SimpleNamespace(labels=labels, label_scheme=parse_label_scheme(labels))
        self.events = []
        self.lock = threading.Lock()

    def _record(self, phase, name, start):
        with self.lock:
            self.events.append((phase, name, start, time.perf_counter()))

    def preprocess(self, image, geometry):
        start = time.perf_counter()
        time.sleep(STEP)
        name = f"c{int(image[0, 0, 0, 0])}"
        self._record("preprocess", name, start)
        return image, {"name": name}

    def predict_preprocessed(self, data, properties):
        start = time.perf_counter()
        time.sleep(STEP)
        self._record("network", properties["name"], start)
        return torch.zeros(2, *data.shape[1:])

    def restore(self, probabilities, properties, keep_probabilities=False):
        start = time.perf_counter()
        time.sleep(STEP)
        self._record("restore", properties["name"], start)
        return np.zeros(probabilities.shape[1:], np.uint8), None

    def export_extras(self, properties, target):
        pass


def fake_read(case):
    if case.name == "broken":
        raise InputError("cannot read image", case.sources[0])
    index = int(case.name[1:])
    return np.full((1, 4, 5, 6), index, np.float32), Geometry.identity((4, 5, 6))


def test_phases_overlap_and_a_failing_case_does_not_stop_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "read_case", fake_read)
    predictor = SlowPredictor()
    names = ["c0", "c1", "broken", "c2", "c3"]
    cases = [InputCase(n, [tmp_path / f"{n}_0000.nii.gz"], ".nii.gz") for n in names]
    lines = []
    start = time.perf_counter()
    reports = pipeline.predict_cases(predictor, cases, tmp_path / "out", prefetch=2, log=lines.append)
    elapsed = time.perf_counter() - start

    assert [r.status for r in reports] == ["done", "done", "failed", "done", "done"]
    assert "cannot read image" in reports[2].reason
    assert any(line.startswith("broken: FAILED") for line in lines)
    assert all((tmp_path / "out" / f"c{i}.nii.gz").is_file() for i in range(4))

    when = {(phase, name): (s, e) for phase, name, s, e in predictor.events}
    # the next case is read while the network works on this one, and written meanwhile too
    assert when[("preprocess", "c1")][0] < when[("network", "c0")][1]
    # c0 is still being written when the network starts on c1 (sequential: written before);
    # compared this way, a loaded machine that delays the writer cannot fail it
    assert when[("restore", "c0")][1] > when[("network", "c1")][0]
    assert elapsed < 4 * 3 * STEP  # strictly sequential would take 12 steps
