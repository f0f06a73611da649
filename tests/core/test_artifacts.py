"""Trained-model artifacts: the fingerprint that tells two trained models apart (the monitors' keys)."""

import copy

import torch

from ledi_kedro.core.artifacts import TrainedModel, load_trained, save_trained
from ledi_kedro.core.models import PriorConfig, PriorModel


def test_a_models_fingerprint_survives_its_round_trip_and_sees_its_weights_and_record(tmp_path):
    torch.manual_seed(0)
    cfg = PriorConfig(in_channels=1, resolution=8, z_dim=2, base_channels=4, bottleneck=4)
    net = PriorModel(cfg)
    trained = TrainedModel("prior", cfg, net, copy.deepcopy(net).eval(), {"stop_reason": "plateau", "steps": 6})
    save_trained(tmp_path / "prior", trained)
    assert load_trained(tmp_path / "prior").fingerprint() == trained.fingerprint()  # what the next stage reads
    nudged = copy.deepcopy(trained)
    with torch.no_grad():
        next(nudged.ema.parameters()).view(-1)[0] += 1e-6
    assert nudged.fingerprint() != trained.fingerprint()
    assert TrainedModel("prior", cfg, net, trained.ema, {"stop_reason": "plateau", "steps": 7}).fingerprint() \
        != trained.fingerprint()
    judge = TrainedModel("cifar10_resnet56", {"weights": "a.th"}, None, None, {})
    assert judge.fingerprint() == TrainedModel("cifar10_resnet56", {"weights": "a.th"}, None, None, {}).fingerprint()
    assert judge.fingerprint() != TrainedModel("cifar10_resnet56", {"weights": "b.th"}, None, None, {}).fingerprint()
