"""`--network NAME` at planning: the name from the registry, recorded with why, and every network
trains and predicts through the command line."""

from __future__ import annotations

import pytest
import torch

from segforge.cli import plan_and_preprocess as plan_cli
from segforge.cli import predict as predict_cli
from segforge.cli import train as train_cli
from segforge.errors import InputError
from segforge.networks import NETWORKS, build_network
from segforge.networks.topology import NETWORK_FAMILIES
from segforge.planning.overrides import PlanOverrides
from segforge.planning.plans import Plans
from segforge.synthetic import make_synthetic_dataset


def test_every_family_is_registered_and_imposes_its_blocks(make_configuration):
    assert set(NETWORK_FAMILIES) == set(NETWORKS)
    conf = make_configuration("3d_iso", name="attention_unet")  # the topology's flags say plain, no gates
    net = build_network(conf, 1, 2)
    assert any(type(m).__name__ == "AttentionGate" for m in net.modules())
    net = build_network(make_configuration("3d_iso", name="residual_unet"), 1, 2)
    assert any(type(m).__name__ == "ResidualBlock" for m in net.modules())
    net = build_network(make_configuration("3d_iso", name="unet"), 1, 2)
    assert not any(type(m).__name__ in ("AttentionGate", "ResidualBlock") for m in net.modules())


def test_typo_answers_did_you_mean():
    with pytest.raises(InputError, match=r"unknown network 'attention_unt'; did you mean 'attention_unet'"):
        PlanOverrides(network="attention_unt")


def test_plan_records_the_network_and_why(folders, capsys):
    make_synthetic_dataset(921, "Nets", num_train=2, num_test=0, shape=(16, 32, 32), raw_root=folders / "raw")
    assert plan_cli.main(["-d", "921", "-np", "1", "--plan-only", "--gpu-memory-gb", "0.05",
                          "--network", "residual_unet"]) == 0, capsys.readouterr().err
    plans = Plans.load(folders / "preprocessed" / "Dataset921_Nets" / "plans.json")
    for name in ("2d", "3d_fullres"):
        topology = plans.configurations[name].network
        assert (topology.name, topology.block, topology.attention_gates) == ("residual_unet", "residual", False)
        assert plans.configurations[name].why["network"].startswith("residual_unet (user override, --network)")
    assert plans.why["network"].startswith("residual_unet: U-Net with a residual encoder")
    assert plan_cli.main(["-d", "921", "-np", "1", "--plan-only", "--network", "resunet"]) == 2
    assert "unknown network 'resunet'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_network_trains_and_predicts_through_the_cli(folders, capsys, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    raw = make_synthetic_dataset(922, "Nets", num_train=3, num_test=1, shape=(16, 32, 32), raw_root=folders / "raw")
    model = folders / "results" / "Dataset922_Nets" / "SegmentationTrainer__3d_fullres"
    for name in sorted(NETWORKS):
        # the preprocessed cases do not depend on the network: the first run makes them, the others re-plan
        assert plan_cli.main(["-d", "922", "-np", "1", "--gpu-memory-gb", "0.05", "--patch-size", "16", "32", "32",
                              "--default-configuration", "3d_fullres", "--network", name]) == 0, capsys.readouterr().err
        assert train_cli.main(["922", "0", "--epochs", "1", "--iters-per-epoch", "2", "--val-iters", "1",
                               "--num-workers", "0", "--device", "cpu", "--no-progress-bar", "--no-plots",
                               "--no-validation"]) == 0, capsys.readouterr().err
        checkpoint = torch.load(model / "fold_0" / "checkpoint_final.pt", weights_only=True)
        assert Plans.from_dict(checkpoint["plans"]).configurations["3d_fullres"].network.name == name
        out = folders / f"pred_{name}"
        assert predict_cli.main(["-i", str(raw / "imagesTs"), "-o", str(out), "-d", "922",
                                 "--disable-tta"]) == 0, capsys.readouterr().err
        assert len(list(out.glob("*.nii.gz"))) == 1
