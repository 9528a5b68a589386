"""The 2.5d configuration: planned beside 2d with k adjacent slices (3 by default, more for thin slices),
its reason written; plans without it keep their version."""

import json

import pytest
import torch

from helpers.plans import tiny_configuration, tiny_plans

from segforge.networks.registry import build_network
from segforge.planning.overrides import PlanOverrides
from segforge.planning.planner import plan_experiment
from segforge.planning.plans import Plans
from segforge.planning.slice_stack_rule import adjacent_slices


def test_k_by_hand():
    assert adjacent_slices([1.0, 1.0, 1.0], 100) == (3, "3 slices (the predicted one and a neighbour on each side)")
    assert adjacent_slices([5.0, 0.7, 0.7], 40)[0] == 3  # thick slices: one neighbour each side is plenty deep
    k, why = adjacent_slices([0.5, 1.0, 1.0], 100)  # 3 x 1 mm / 0.5 mm = 6 -> 7 slices
    assert k == 7 and "3 x 1 mm / 0.5 mm slices = 6.00" in why
    assert adjacent_slices([0.75, 1.0, 1.0], 100)[0] == 5  # 4 -> 5
    assert adjacent_slices([0.1, 1.0, 1.0], 100)[0] == 7  # capped
    k, why = adjacent_slices([0.5, 1.0, 1.0], 6)
    assert k == 5 and "only 6 slices" in why
    assert adjacent_slices([1.0, 1.0, 1.0], 1)[0] == 1


def test_planned_beside_2d_and_buildable(fingerprint_factory):
    plans = plan_experiment(fingerprint_factory(spacings=[1.0, 1.0, 1.0], shapes=[[64, 128, 128]] * 6, channels=2,
                                                modality=["CT", "MR"]))
    flat, stacked = plans.configuration("2d"), plans.configuration("2.5d")
    assert stacked.input_slices == 3 and stacked.dims == 2 and stacked.data_identifier == "3d_fullres"
    assert (stacked.patch_size, stacked.batch_size, stacked.network) == (flat.patch_size, flat.batch_size,
                                                                         flat.network)
    assert stacked.why["input_slices"].startswith("3 slices") and flat.input_slices == 1
    network = build_network(stacked, plans.num_channels, plans.num_classes)
    first = next(m for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 6  # 2 channels x 3 slices
    again = Plans.from_dict(json.loads(json.dumps(plans.to_dict())))
    assert again.configuration("2.5d").input_slices == 3 and again.version() == plans.version()
    assert plan_experiment(fingerprint_factory(spacings=[1.0, 1.0, 1.0], shapes=[[64, 128, 128]] * 6),
                           overrides=PlanOverrides(default_configuration="2.5d")).default_configuration == "2.5d"


def test_plans_written_before_keep_their_version():
    plans = tiny_plans(tiny_configuration("3d_fullres"), tiny_configuration("2d", patch=(16, 16)))
    written = plans.to_dict()
    assert all("input_slices" not in c for c in written["configurations"].values())
    version = plans.configuration("2d").version()
    plans.configuration("2d").input_slices = 3
    assert plans.to_dict()["configurations"]["2d"]["input_slices"] == 3 and plans.configuration("2d").version() != version


@pytest.mark.parametrize("slices, patch, text", [(2, (16, 16), "odd number"), (3, (8, 16, 16), "is 3D")])
def test_bad_input_slices_are_refused(slices, patch, text):
    with pytest.raises(ValueError, match=text):
        tiny_configuration("2.5d", patch=patch, input_slices=slices)
