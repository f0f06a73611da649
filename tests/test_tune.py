"""The Optuna tune pipeline on tiny settings: trials run, pruning is wired, a killed study resumes, and
two processes can work on one study."""

import time

import optuna
import polars as pl
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from ledi_kedro.core.models import ClassifierConfig, DomainClassifier
from ledi_kedro.core.artifacts import TrainedModel
from ledi_kedro.pipelines.tune.nodes import best_params_for_kedro, run_study
from tests.conftest import base_params, deep_merge
from tests.test_evaluate_report import TINY_EVAL
from tests.test_training_pipelines import image_split, tiny_params


def tune_params(tmp_path, n_trials, worker=0):
    return base_params()["tune"] | {
        "n_trials": n_trials, "study_name": "tiny", "storage": str(tmp_path / "tune" / "study.db"), "seed": 0,
        "objective": {"nfe": 2, "solver": "euler", "n_samples": 8, "n_reference": 8},
        "budget": {"prior_steps": 2, "latent_flow_steps": 2, "fm_steps": 4, "report_every": 2},
        "pruner_startup_trials": 1, "pruner_warmup_steps": 0,
        "search_space": {"prior.beta_kl": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                         "fm.model.size": {"type": "categorical", "choices": ["T"]},
                         "latent_flow.model.depth": {"type": "int", "low": 1, "high": 2}},
        "worker": worker, "heartbeat_s": 1, "stale_after_s": 2,
    }


def tiny_judge():
    cfg = ClassifierConfig(in_channels=1, resolution=8, num_classes=3, width=2, feature_dim=8)
    torch.manual_seed(0)
    return TrainedModel("classifier", cfg, DomainClassifier(cfg), None)


def run(tmp_path, n_trials, worker=0):
    params = deep_merge(tiny_params(tmp_path), {"evaluate": TINY_EVAL})
    params["run"]["checkpoint_root"] = str(tmp_path / "ckpt")
    return run_study(image_split(32, 0), image_split(16, 1), tiny_judge(), params,
                     tune_params(tmp_path, n_trials, worker))


@pytest.mark.slow
def test_study_runs_resumes_and_writes_best_parameters(tmp_path):
    best, trials, *figs = run(tmp_path, 2)
    assert isinstance(trials, pl.DataFrame) and trials.height == 2
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"} and "COMPLETE" in set(trials["state"])
    assert set(best) == {"prior", "fm", "latent_flow"} and 1e-4 <= best["prior"]["beta_kl"] <= 1e-1
    assert len(figs) == 3
    # Simulate a process killed mid-trial: a trial left RUNNING whose heartbeat stopped.
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'tune' / 'study.db'}", heartbeat_interval=1,
                                         grace_period=2)
    trial = optuna.load_study(study_name="tiny", storage=storage).ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3)
    best2, trials2, *_ = run(tmp_path, 3)
    states = trials2["state"].to_list()
    assert states.count("FAIL") == 1 and len(states) == 4  # 2 kept, the stale one failed, 1 new
    params_file, run_config = best_params_for_kedro(best2)
    assert yaml.safe_load(yaml.safe_dump(params_file)) == best2 and run_config == {"run": {"params": best2}}


def _worker(index, tmp_path):
    torch.set_num_threads(1)
    run(tmp_path, 4, worker=index)


@pytest.mark.slow
def test_two_processes_share_one_study(tmp_path):
    mp.spawn(_worker, args=(tmp_path,), nprocs=2, join=True)
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tune' / 'study.db'}")
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert 4 <= len(finished) <= 5 and not [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)  # no worker repeats another
    trial_dirs = sorted(p.name for p in (tmp_path / "tune").glob("trials/trial_*"))
    assert trial_dirs == [f"trial_{t.number:04d}" for t in sorted(study.trials, key=lambda t: t.number)]
