import pytest

from segforge.cli.train import main as train_main
from segforge.training.registry import look_up_step, training_steps

from .fixtures import make_cascade_dataset


@pytest.fixture
def dataset(tmp_path):
    return make_cascade_dataset(tmp_path / "preprocessed", n_cases=4)


def test_cascade_trains_locator_then_segmenter(dataset):
    assert training_steps(dataset) == [("locator", "locator"), ("cascade_segmenter", "cascade_fullres")]
    assert training_steps(dataset, "locator") == [("locator", "locator")]
    assert callable(look_up_step("cascade_segmenter"))


def test_validation_only_of_a_locator_is_a_clear_error(dataset, capsys):
    assert train_main(["950", "0", "-c", "locator", "--validation-only", "--device", "cpu"]) == 2
    assert "locator_validation.json" in capsys.readouterr().err
