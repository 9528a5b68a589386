"""segforge_plan_and_preprocess as a SLURM array (--part) and beside another run of the same dataset."""

import pytest

from segforge.cli.plan_and_preprocess import main
from segforge.execution import FolderClaim
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for name, sub in (("SEGFORGE_RAW", "raw"), ("SEGFORGE_PREPROCESSED", "pre"), ("SEGFORGE_RESULTS", "res")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    make_synthetic_dataset(931, "Parts", num_train=5, num_test=0, shape=(12, 24, 24), raw_root=tmp_path / "raw")
    return tmp_path


def _errors(capsys) -> list[str]:
    return [x for x in capsys.readouterr().err.splitlines() if x.startswith("segforge_plan_and_preprocess:")]


def test_parts_preprocess_disjoint_shares_after_one_planning_run(folders, capsys):
    common = ["-d", "931", "--gpu-memory-gb", "0.1", "-np", "1"]
    assert main(common + ["--part", "0", "--num-parts", "2"]) == 2
    (line,) = _errors(capsys)
    assert "part 0/2: plan first, once, without --part" in line and "--plan-only" in line

    assert main(common + ["--plan-only"]) == 0
    root = folders / "pre" / "Dataset931_Parts"
    plans = Plans.load(root / "plans.json")
    folder = root / plans.configuration(plans.default_configuration).data_identifier
    seen = []
    for part in (1, 0):
        capsys.readouterr()
        assert main(common + ["--part", str(part), "--num-parts", "2"]) == 0
        out = capsys.readouterr().out
        assert f"(part {part}/2): {3 if part == 0 else 2} done, 0 skipped, 0 failed" in out
        now = sorted(p.stem for p in folder.glob("*.json"))
        seen.append(now)
    assert seen[0] == ["case_001", "case_003"]
    assert seen[1] == [f"case_{i:03d}" for i in range(5)]
    assert main(common) == 0 and "0 done, 5 skipped, 0 failed" in capsys.readouterr().out


def test_a_second_run_on_the_same_dataset_is_refused_in_one_line(folders, capsys):
    root = folders / "pre" / "Dataset931_Parts"
    with FolderClaim(root, "holder000001", what="plan_and_preprocess"):
        assert main(["-d", "931", "--gpu-memory-gb", "0.1", "-np", "1"]) == 2
    (line,) = _errors(capsys)
    assert f"{root}: in use by another run (plan_and_preprocess by pid" in line
    assert not (root / "plans.json").exists()
