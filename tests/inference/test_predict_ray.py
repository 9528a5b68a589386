"""segforge_predict --executor ray on a local Ray with 2 CPUs (started once for this module):
a model per actor, the same files as the local executor."""

import numpy as np
import pytest
from helpers.inference_fixtures import blob_image, write_case

from segforge.cli.predict import main
from segforge.io.image import read_image

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_actors_predict_what_the_local_executor_predicts(model_folder, folders, capsys):
    inputs = folders / "in"
    inputs.mkdir()
    for i in range(3):
        write_case(inputs, f"case_{i}", image=blob_image(seed=i))
    common = ["-i", str(inputs), "-m", str(model_folder), "--disable-tta", "--save-probabilities"]
    assert main(common + ["-o", str(folders / "local"), "-np", "2"]) == 0
    assert main(common + ["-o", str(folders / "ray"), "--executor", "ray"]) == 0
    out = capsys.readouterr().out
    assert "3 predicted, 0 skipped, 0 failed" in out
    for i in range(3):
        local, _ = read_image(folders / "local" / f"case_{i}.nii.gz")
        remote, _ = read_image(folders / "ray" / f"case_{i}.nii.gz")
        np.testing.assert_array_equal(remote, local)
        name = f"case_{i}_probabilities.npy"
        assert (folders / "ray" / name).read_bytes() == (folders / "local" / name).read_bytes()
