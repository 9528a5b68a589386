"""The device profile: detection, the calibration cache, rates by width, and the predicted cost of an iteration."""

from __future__ import annotations

import json

import pytest

from segforge.errors import InputError
from segforge.networks.cost import conv_layers, elementwise_elements
from segforge.planning import calibration, device_profile
from segforge.planning.compute_rule import iteration_seconds
from segforge.planning.device_profile import DeviceProfile, resolve_device_profile, training_threads
from segforge.planning.plans import ChannelNormalization, Configuration, NetworkTopology, ResamplingSettings

RATES = {"conv_gflops_3d": {"8": 10.0, "32": 40.0}, "conv_gflops_2d": {"8": 5.0, "32": 20.0},
         "elementwise_gelems": 0.5, "layer_overhead_s": 0.002, "calibration_seconds": 1.0}


def _profile(**rates) -> DeviceProfile:
    return DeviceProfile(kind="cpu", name="test cpu", memory_gb=2.0, threads=1, **{**RATES, **rates})


def test_conv_rate_is_linear_in_log2_width_between_measured_widths():
    p = _profile()
    assert p.conv_rate(8) == pytest.approx(10e9)
    assert p.conv_rate(16) == pytest.approx(25e9)  # halfway between log2 8 and log2 32
    assert p.conv_rate(4) == pytest.approx(10e9)  # below the narrowest: the narrowest's rate
    assert p.conv_rate(320) == pytest.approx(40e9)
    assert p.conv_rate(16, dims=2) == pytest.approx(12.5e9)


def test_iteration_seconds_adds_convolutions_elementwise_work_and_overhead():
    p = _profile(conv_gflops_3d={"8": 10.0}, conv_gflops_2d={"8": 10.0})  # one rate for every width
    topology = NetworkTopology(features_per_stage=[8, 8, 8], kernel_sizes=[[3, 3, 3]] * 3,
                               strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]])
    c = Configuration(name="t", kind="segmentation", spacing=[1.0, 1.0, 1.0], patch_size=[16, 16, 16], batch_size=2,
                      network=topology, normalization=[ChannelNormalization("zscore")],
                      resampling=ResamplingSettings(), median_shape=[16, 16, 16])
    layers = conv_layers(c.network, c.patch_size, 1, 2)
    flops = c.batch_size * sum(layer.training_flops for layer in layers)
    elements = elementwise_elements(c.network, c.patch_size, c.batch_size, 1, 2)
    expected = flops / 10e9 + elements / 0.5e9 + len(layers) * 0.002
    assert iteration_seconds(c, p, 1, 2) == pytest.approx(expected)


def test_profile_round_trips_and_rejects_bad_values():
    p = _profile()
    assert DeviceProfile.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(InputError, match="cpu or cuda"):
        DeviceProfile(kind="tpu", name="x", memory_gb=1.0)
    with pytest.raises(InputError, match="positive"):
        DeviceProfile(kind="cpu", name="x", memory_gb=0.0)


def test_training_threads_match_the_trainer_default(monkeypatch):
    from segforge.data import default_num_workers
    from segforge.training.options import TrainingOptions, cpu_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert training_threads() == cpu_threads(TrainingOptions(), default_num_workers())
    assert training_threads(16) == 4 and training_threads(2) == 1 and training_threads(1) == 1


def test_calibration_is_measured_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFORGE_CACHE", str(tmp_path))
    calls = []

    def fake_calibrate(kind, threads):
        calls.append((kind, threads))
        return dict(RATES)

    monkeypatch.setattr(calibration, "calibrate", fake_calibrate)
    first = resolve_device_profile("cpu", log=lambda line: None)
    assert calls == [("cpu", training_threads())] and first.source.startswith("measured")
    second = resolve_device_profile("cpu", log=lambda line: None)
    assert len(calls) == 1 and second.source.startswith("cache") and second.conv_gflops_3d == RATES["conv_gflops_3d"]
    entries = json.loads((tmp_path / device_profile.PROFILE_CACHE_FILE).read_text())
    assert list(entries) == [device_profile.device_signature("cpu", device_profile.cpu_name(), training_threads())]
    resolve_device_profile("cpu", recalibrate=True, log=lambda line: None)
    assert len(calls) == 2


def test_uncalibrated_profile_when_measuring_is_not_wanted(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGFORGE_CACHE", str(tmp_path))
    monkeypatch.setattr(calibration, "calibrate", lambda kind, threads: pytest.fail("must not calibrate"))
    p = resolve_device_profile("cpu", measure=False)
    assert not p.calibrated and p.kind == "cpu" and p.memory_gb > 0
    assert "CPU profile" in p.why and "RAM" in p.why


def test_cpu_profile_memory_is_a_share_of_the_ram(monkeypatch):
    monkeypatch.setattr(device_profile, "_ram_gb", lambda: 16.0)
    p = resolve_device_profile("cpu", measure=False)
    assert p.memory_gb == pytest.approx(device_profile.CPU_MEMORY_FRACTION * 16.0)


def test_cuda_without_a_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(InputError, match="no CUDA GPU"):
        resolve_device_profile("cuda")


def test_the_test_suite_plans_with_the_fake_calibration():
    p = resolve_device_profile("cpu", log=lambda line: pytest.fail(f"calibrated: {line}"))
    assert p.calibrated and p.source.startswith("cache") and p.conv_gflops_3d["8"] == 10.0


@pytest.mark.slow
def test_real_calibration_measures_positive_rates_in_seconds():
    rates = calibration.calibrate("cpu", 1)
    assert set(rates["conv_gflops_3d"]) == {str(w) for w in calibration.CPU_WIDTHS}
    assert all(r > 0 for r in rates["conv_gflops_3d"].values()) and rates["elementwise_gelems"] > 0
    assert rates["layer_overhead_s"] >= 0 and rates["calibration_seconds"] < 60
