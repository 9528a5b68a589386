import pytest

from segforge.cascade.curriculum import SigmaCurriculum
from segforge.planning.plans import LocatorSettings


def make(**kw):
    s = LocatorSettings(sigma_start=8.0, sigma_min=2.0, sigma_shrink_factor=0.5, shrink_loss_threshold=0.5, shrink_patience=3)
    for k, v in kw.items():
        setattr(s, k, v)
    return SigmaCurriculum.from_settings(s)


def test_shrinks_when_loss_falls_under_threshold_and_stops_at_minimum():
    c = make()
    assert c.sigma == 8.0
    assert not c.update(0, 1.0)  # start loss of sigma 8
    assert not c.update(1, 0.6)
    assert c.update(2, 0.49)
    assert c.sigma == 4.0
    assert not c.update(3, 2.0)  # new start loss at sigma 4
    assert c.update(4, 0.9)
    assert c.sigma == 2.0 and c.at_minimum
    assert not c.update(5, 0.5)
    assert not c.update(6, 0.01)
    assert c.sigma == 2.0
    assert [s["sigma"] for s in c.steps] == [8.0, 4.0, 2.0]
    assert c.steps[1]["epoch"] == 3


def test_shrinks_on_plateau():
    c = make()
    c.update(0, 1.0)
    assert not c.update(1, 0.9)
    assert not c.update(2, 0.95)
    assert not c.update(3, 0.95)
    assert c.update(4, 0.91)  # 3 epochs without beating 0.9
    assert c.sigma == 4.0
    assert "not improved" in c.steps[-1]["why"]


def test_minimum_is_clamped_not_overshot():
    c = make(sigma_start=3.0)
    c.update(0, 1.0)
    assert c.update(1, 0.1)
    assert c.sigma == 2.0


def test_state_round_trip_resumes_exactly():
    a = make()
    for e, loss in enumerate([1.0, 0.4, 3.0, 2.9]):
        a.update(e, loss)
    b = make()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    for e, loss in enumerate([2.95, 2.99, 3.0], start=4):
        assert a.update(e, loss) == b.update(e, loss)
    assert a.sigma == b.sigma == 2.0


def test_bad_settings():
    with pytest.raises(ValueError, match="shrink factor"):
        make(sigma_shrink_factor=1.5)
    with pytest.raises(ValueError, match="sigma_min"):
        make(sigma_min=10.0)


def test_trivial_loss_caps_the_start_loss():
    s = LocatorSettings(sigma_start=8.0, sigma_min=2.0, sigma_shrink_factor=0.5, shrink_loss_threshold=0.5, shrink_patience=30)
    c = SigmaCurriculum.from_settings(s, trivial_loss=1.0)
    c.update(0, 10.0)  # a fresh network far worse than predicting zeros
    assert not c.update(1, 0.9)  # merely approaching the all-zero answer is no progress
    assert c.update(2, 0.45)
