"""Prediction on the runner: worker processes and parts give exactly the in-process result;
two runs into one output folder do not mix."""

import numpy as np
import pytest
from helpers.inference_fixtures import blob_image, write_case

from segforge.cli.predict import main
from segforge.execution import ExecutionSettings, FolderClaim
from segforge.inference import create_predictor, discover_cases, predict_cases
from segforge.io.image import read_image


def _inputs(folder, n=4):
    folder.mkdir()
    for i in range(n):
        write_case(folder, f"case_{i}", image=blob_image(seed=i))
    return folder


def _outputs(folder):
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.endswith(".nii.gz"):
            out[p.name] = read_image(p)[0]
        elif p.name.endswith(".npy"):
            out[p.name] = p.read_bytes()
    return out


def test_worker_processes_and_parts_predict_exactly_what_one_process_does(model_folder, folders):
    inputs = _inputs(folders / "in")
    predictor = create_predictor(model_folder, tta=False)
    cases = discover_cases(inputs)
    reference = predict_cases(predictor, cases, folders / "one", save_probabilities=True, log=lambda _: None)
    assert [r.status for r in reference] == ["done"] * 4

    reports = predict_cases(predictor, cases, folders / "two", save_probabilities=True, log=lambda _: None,
                            execution=ExecutionSettings(workers=2, threads_per_worker=1))
    assert [r.status for r in reports] == ["done"] * 4
    for part in range(3):
        reports = predict_cases(predictor, cases, folders / "parts", save_probabilities=True, log=lambda _: None,
                                execution=ExecutionSettings(workers=1, part=part, num_parts=3))
        assert [r.name for r in reports] == [c.name for c in cases][part::3]

    one = _outputs(folders / "one")
    assert len(one) == 8
    for other in ("two", "parts"):
        got = _outputs(folders / other)
        assert sorted(got) == sorted(one)
        for name, value in one.items():
            if isinstance(value, bytes):
                assert got[name] == value, (other, name)
            else:
                np.testing.assert_array_equal(got[name], value)


def test_continue_skips_complete_outputs_and_redoes_a_damaged_one(model_folder, folders, capsys):
    inputs = _inputs(folders / "in", n=3)
    args = ["-i", str(inputs), "-o", str(folders / "out"), "-m", str(model_folder), "--disable-tta", "--continue"]
    assert main(args) == 0
    (folders / "out" / "case_1.nii.gz").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "case_0: skipped" in out and "case_2: skipped" in out and "case_1: skipped" not in out
    assert "1 predicted, 2 skipped, 0 failed" in out
    read_image(folders / "out" / "case_1.nii.gz")


def test_a_second_run_into_a_busy_output_folder_is_refused_in_one_line(model_folder, folders, capsys):
    inputs = _inputs(folders / "in", n=1)
    (folders / "out").mkdir()
    with FolderClaim(folders / "out", "otherrun0001", what="prediction"):
        code = main(["-i", str(inputs), "-o", str(folders / "out"), "-m", str(model_folder), "--disable-tta"])
    assert code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("segforge_predict:")]
    assert "in use by another run (prediction by pid" in line
    assert not (folders / "out" / "case_0.nii.gz").exists()


@pytest.mark.parametrize("argv, message", [
    (["--part", "2"], "--part and --num-parts go together"),
    (["--executor", "dask"], "unknown executor 'dask'"),
    (["--num-gpus", "2", "--device", "cpu"], "does not go with --device cpu"),
])
def test_execution_options_are_checked(model_folder, folders, capsys, argv, message):
    inputs = _inputs(folders / "in", n=1)
    assert main(["-i", str(inputs), "-o", str(folders / "out"), "-m", str(model_folder)] + argv) == 2
    assert message in capsys.readouterr().err


def test_by_default_the_cli_predicts_in_this_process(model_folder, folders, monkeypatch):
    import os

    from segforge.inference import pipeline

    seen = []
    real = pipeline._predict_task
    monkeypatch.setattr(pipeline, "_predict_task", lambda worker, payload: seen.append(os.getpid()) or real(worker,
                                                                                                         payload))
    inputs = _inputs(folders / "in", n=2)
    assert main(["-i", str(inputs), "-o", str(folders / "out"), "-m", str(model_folder), "--disable-tta"]) == 0
    assert seen == [os.getpid(), os.getpid()]
