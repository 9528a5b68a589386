"""The loader's worker processes: started in the calling thread, closed even after a start that failed."""

import threading

import pytest
from helpers.batches import ConstantBatches

from segforge.data.loader import make_loader


def test_start_forks_the_workers_in_the_calling_thread_and_batches_follow():
    loader = make_loader(ConstantBatches(1.0), None, num_workers=2)
    try:
        forked_from = []
        original = loader.augmenter._start

        def recording_start():
            forked_from.append(threading.current_thread().name)
            original()

        loader.augmenter._start = recording_start
        loader.start()
        assert forked_from == [threading.current_thread().name]
        assert [p.is_alive() for p in loader.augmenter._processes] == [True, True]
        batch = next(loader)  # no second start
        assert forked_from == [threading.current_thread().name] and float(batch["data"].sum()) == 64.0
    finally:
        loader.close()
    assert loader.augmenter._processes == []


def test_close_after_a_start_that_failed_half_way_stops_the_started_workers(monkeypatch):
    import multiprocessing

    loader = make_loader(ConstantBatches(), None, num_workers=3)
    real_start = multiprocessing.Process.start
    calls = []

    def refusing_start(process):
        calls.append(process)
        if len(calls) == 2:
            raise OSError(12, "Cannot allocate memory")  # fork refused for the second worker
        real_start(process)

    monkeypatch.setattr(multiprocessing.Process, "start", refusing_start)
    with pytest.raises(OSError, match="allocate"):
        loader.start()
    monkeypatch.undo()
    started = calls[0]
    assert started.is_alive() and calls[1].pid is None
    loader.close()  # batchgenerators alone fails here: "can only join a started process"
    assert not started.is_alive() and loader.augmenter._processes == []
