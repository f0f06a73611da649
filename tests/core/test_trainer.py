"""Trainer: resume bit for bit, NaN guard, checkpoint errors, DDP equivalence, overfitting."""

import json
import logging
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from ledi_kedro.core.checkpoint import CheckpointError, list_checkpoints, read_checkpoint
from ledi_kedro.core.flow import fm_loss, sample_time
from ledi_kedro.core.models import DiT, DiTConfig
from ledi_kedro.core.trainer import NonFiniteLossError, TrainConfig, Trainer


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 4))

    def forward(self, x, t=None):
        return self.body(x)


class Killed(Exception):
    pass


KILL = {"at_call": None, "calls": 0}  # simulates a process killed in the middle of training


def noisy_loss(model, batch, g):
    """Uses the step generator, so resume must reproduce its draws."""
    KILL["calls"] += 1
    if KILL["at_call"] is not None and KILL["calls"] >= KILL["at_call"]:
        raise Killed()
    noise = torch.randn(batch["x"].shape, generator=g)
    return (model(batch["x"] + 0.1 * noise) - batch["y"]).pow(2).mean()


def regression_loss(model, batch, g):
    return (model(batch["x"]) - batch["y"]).pow(2).mean(), {"abs_err": (model(batch["x"]) - batch["y"]).abs().mean()}


def make_data(n=64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    return {"x": x, "y": torch.sin(x)}


CFG = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup_steps=3, checkpoint_every=6, log_every=3,
                  ema_decay=0.9, device="cpu")


def run_params(checkpoint_root, on_config_change):
    """conf/base's run section with the given checkpoint root and stale-checkpoint policy."""
    from ledi_kedro.params import parse
    from tests.conftest import base_params

    return parse("run", base_params({"run": {"checkpoint_root": str(checkpoint_root),
                                             "on_config_change": on_config_change}})["run"])


def weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def train(cfg=CFG, ckpt=None, loss=noisy_loss, data=None, seed_model=0):
    torch.manual_seed(seed_model)
    return Trainer(Net(), loss, data or make_data(), cfg, checkpoint_dir=ckpt, model_config={"kind": "net"}).fit()


def test_resume_is_bit_identical(tmp_path):
    straight = train(ckpt=tmp_path / "a")
    KILL.update(at_call=9, calls=0)  # step 9: after the checkpoint at step 6
    try:
        with pytest.raises(Killed):
            train(ckpt=tmp_path / "b")
    finally:
        KILL.update(at_call=None)
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["step_00000006"]
    resumed = train(ckpt=tmp_path / "b")
    assert resumed.resumed_from == 6 and resumed.steps == 12
    for a, b in ((straight.model, resumed.model), (straight.ema, resumed.ema)):
        for k, v in weights(a).items():
            assert torch.equal(v, weights(b)[k]), k
    assert straight.loss_history == resumed.loss_history and len(straight.loss_history) == 12


def test_finished_model_is_not_retrained(tmp_path, caplog):
    first = train(ckpt=tmp_path)
    with caplog.at_level(logging.INFO):
        again = train(ckpt=tmp_path)
    assert "nothing to do" in caplog.text and again.seconds == 0.0
    for k, v in weights(first.model).items():
        assert torch.equal(v, weights(again.model)[k])
    more = train(cfg=TrainConfig(**{**CFG.__dict__, "steps": 15}), ckpt=tmp_path)  # extending is allowed
    assert more.resumed_from == 12 and more.steps == 15


def test_progress_lines_and_histories(caplog):
    with caplog.at_level(logging.INFO, logger="ledi_kedro.core.trainer"):
        result = train(loss=regression_loss)
    lines = [r.getMessage() for r in caplog.records if "step" in r.getMessage() and "it/s" in r.getMessage()]
    assert len(lines) == 4 and "ETA" in lines[0] and "abs_err" in lines[0]
    assert [e["step"] for e in result.log_history] == [3, 6, 9, 12]
    assert len(result.loss_history) == 12
    assert result.loss_history[-1] < result.loss_history[0]


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def goes_nan_at_step_8(model, batch, g):
        calls["n"] += 1
        loss = regression_loss(model, batch, g)[0]
        return loss * float("nan") if calls["n"] >= 8 else loss

    with pytest.raises(NonFiniteLossError, match=r"loss became nan at step 8.*step_00000006"):
        train(ckpt=tmp_path, loss=goes_nan_at_step_8)
    (good,) = list_checkpoints(tmp_path)
    ckpt = read_checkpoint(good)
    assert ckpt.step == 6
    assert all(torch.isfinite(v).all() for v in ckpt.tensors["model"].values())


def test_changed_config_is_refused_with_the_difference(tmp_path):
    train(ckpt=tmp_path)
    with pytest.raises(CheckpointError, match=r"train.lr: 0.01 -> 0.02"):
        train(cfg=TrainConfig(**{**CFG.__dict__, "lr": 2e-2}), ckpt=tmp_path)


def test_other_data_or_fewer_steps_make_checkpoints_stale(tmp_path):
    from ledi_kedro.core.checkpoint import StaleCheckpointError

    train(ckpt=tmp_path)
    other = make_data()
    other["y"] = other["y"] + 1.0
    with pytest.raises(StaleCheckpointError, match="the training data differ"):
        train(ckpt=tmp_path, data=other)
    with pytest.raises(StaleCheckpointError, match="step 12, beyond steps=9"):
        train(cfg=TrainConfig(**{**CFG.__dict__, "steps": 9}), ckpt=tmp_path)


def test_restart_policy_retrains_from_scratch(tmp_path):
    from ledi_kedro.steps.training import run_training

    run = run_params(str(tmp_path), "restart")
    first = run_training("net", Net, regression_loss, make_data(), CFG, run, {"kind": "net"})
    shorter = TrainConfig(**{**CFG.__dict__, "steps": 6})
    again = run_training("net", Net, regression_loss, make_data(), shorter, run, {"kind": "net"})
    assert again.resumed_from is None and again.steps == 6 and len(again.loss_history) == 6
    assert first.loss_history[:6] == again.loss_history  # same seed, same first 6 steps
    with pytest.raises(Exception, match="beyond steps=3"):
        run_training("net", Net, regression_loss, make_data(), TrainConfig(**{**CFG.__dict__, "steps": 3}),
                     run_params(str(tmp_path), "error"), {"kind": "net"})


def test_truncated_checkpoint_names_the_file(tmp_path):
    train(ckpt=tmp_path)
    latest = list_checkpoints(tmp_path)[-1]
    weights_file = latest / "model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"step_00000012/model.safetensors: truncated or corrupt"):
        train(ckpt=tmp_path)


def test_mismatched_weights_name_the_keys(tmp_path):
    from ledi_kedro.core.checkpoint import load_weights

    train(ckpt=tmp_path)
    ckpt = read_checkpoint(list_checkpoints(tmp_path)[-1])
    other = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 4))
    with pytest.raises(CheckpointError, match=r"model.safetensors: weights do not fit Sequential.*unexpected"):
        load_weights(other, ckpt.tensors["model"], ckpt.path / "model.safetensors")
    net = Net()
    bad = dict(ckpt.tensors["model"])
    bad["body.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(CheckpointError, match=r"shape mismatch: body.0.weight: checkpoint \(3, 3\) vs model \(16, 4\)"):
        load_weights(net, bad, "x")


def test_checkpoint_is_safetensors_and_json_only(tmp_path):
    train(ckpt=tmp_path)
    latest = list_checkpoints(tmp_path)[-1]
    assert sorted(p.name for p in latest.iterdir()) == [
        "ema.safetensors", "extra.safetensors", "model.safetensors", "optimizer.safetensors", "state.json"]
    state = json.loads((latest / "state.json").read_text())
    assert state["step"] == 12 and state["train_config"]["lr"] == 0.01
    assert len(list_checkpoints(tmp_path)) == CFG.keep_checkpoints


def test_every_artifact_file_gets_the_mode_the_umask_gives(tmp_path):
    """safetensors and mkstemp create 0600 files; teammates sharing a data folder must be able to read them."""
    import os

    from ledi_kedro.core.io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        train(ckpt=tmp_path / "ck")
        atomic_write_bytes(tmp_path / "report.json", b"{}")
    finally:
        os.umask(old)
    files = [*list_checkpoints(tmp_path / "ck")[-1].iterdir(), tmp_path / "report.json"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o644" for f in files}


def test_bad_settings():
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="batch_size=100 is larger than the data set"):
        Trainer(Net(), regression_loss, make_data(16), TrainConfig(batch_size=100, device="cpu"))


def test_uint8_images_arrive_scaled():
    seen = {}

    def loss(model, batch, g):
        seen["x"] = batch["images"]
        return model.body[0].weight.sum() * 0

    data = {"images": torch.tensor([[0, 255]], dtype=torch.uint8).repeat(8, 1)}
    Trainer(Net(), loss, data, TrainConfig(steps=1, batch_size=4, device="cpu")).fit()
    assert seen["x"].dtype == torch.float32 and seen["x"][0].tolist() == [-1.0, 1.0]


@pytest.mark.slow
def test_overfits_two_images_with_flow_matching():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(2, 1, 8, 8, generator=g) > 0.5).to(torch.uint8) * 255
    data = {"images": images.repeat(32, 1, 1, 1)}

    def loss(model, batch, gen):
        x1 = batch["images"]
        x0 = torch.randn(x1.shape, generator=gen)
        return fm_loss(model, x0, x1, sample_time(x1.shape[0], generator=gen))

    torch.manual_seed(0)
    model = DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T"))
    cfg = TrainConfig(steps=250, batch_size=16, lr=2e-3, warmup_steps=20, ema_decay=0.98, device="cpu", log_every=100)
    result = Trainer(model, loss, data, cfg).fit()
    from ledi_kedro.core.generation import GaussianSource, Generator

    samples = Generator(result.ema, GaussianSource((1, 8, 8), torch.device("cpu"))).sample(16, steps=20, seed=1).images
    targets = images.float() / 127.5 - 1
    dist = ((samples[:, None] - targets[None]) ** 2).mean(dim=(2, 3, 4)).min(dim=1).values
    assert float(dist.mean()) < 0.05, dist  # seen: 0.020


# ---------------------------------------------------------------- DDP (2 gloo processes on the CPU)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, out_dir):
    """Both DDP scenarios in one pair of spawned processes (each start imports torch: seconds)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    from ledi_kedro.core.distributed import init_distributed

    init_distributed("gloo")
    torch.set_num_threads(1)
    _ddp_train(rank, os.path.join(out_dir, "match"))
    _ddp_nan_on_rank_1(rank, os.path.join(out_dir, "nan"))
    torch.distributed.destroy_process_group()


def _ddp_train(rank, out_dir):
    cfg = TrainConfig(steps=10, batch_size=8, lr=1e-2, warmup_steps=0, device="cpu", log_every=5,
                      checkpoint_every=5)
    torch.manual_seed(0)
    result = Trainer(Net(), regression_loss, make_data(), cfg, checkpoint_dir=os.path.join(out_dir, "ckpt")).fit()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.st"))


def _ddp_nan_on_rank_1(rank, out_dir):
    cfg = TrainConfig(steps=12, batch_size=8, lr=1e-2, warmup_steps=0, device="cpu", log_every=4, checkpoint_every=4)
    steps = {"n": 0}

    def nan_on_rank_1_from_step_6(model, batch, g):
        steps["n"] += 1
        loss = regression_loss(model, batch, g)[0]
        return loss * float("nan") if rank == 1 and steps["n"] >= 6 else loss

    torch.manual_seed(0)
    try:
        Trainer(Net(), nan_on_rank_1_from_step_6, make_data(), cfg,
                checkpoint_dir=os.path.join(out_dir, "ckpt")).fit()
        outcome = "finished"
    except NonFiniteLossError as exc:
        outcome = str(exc)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as fh:
        fh.write(outcome)


@pytest.mark.slow
def test_ddp_two_processes_match_one_process_and_a_nan_on_one_rank_stops_both(tmp_path):
    """One pair of spawned processes for both scenarios (a test per scenario would spawn them once per
    pytest-xdist worker that picks one up)."""
    from safetensors.torch import load_file

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    out = tmp_path / "match"
    r0, r1 = load_file(str(out / "rank0.st")), load_file(str(out / "rank1.st"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    cfg = TrainConfig(steps=10, batch_size=8, lr=1e-2, warmup_steps=0, device="cpu", log_every=5)
    torch.manual_seed(0)
    single = Trainer(Net(), regression_loss, make_data(), cfg).fit()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(r0[k], v, rtol=1e-4, atol=1e-5)
    assert [p.name for p in list_checkpoints(out / "ckpt")] == ["step_00000005", "step_00000010"]
    # rank 1's loss turns NaN at step 6: every rank stops there, and no checkpoint after step 4 is written
    out = tmp_path / "nan"
    for rank in (0, 1):
        assert "loss became nan at step 6" in (out / f"rank{rank}.txt").read_text(), rank
    assert [p.name for p in list_checkpoints(out / "ckpt")] == ["step_00000004"]


# ---------------------------------------------------------------- code-aware checkpoints

LOSS_MODULE = '''
import torch


def scaled(x):
    return {scale} * x


def make_loss():
    def loss(model, batch, g):
        return (model(batch["x"]) - scaled(batch["y"])).pow(2).mean()
    return loss
'''


def _load_loss_module(path, scale):
    import importlib
    import sys

    path.write_text(LOSS_MODULE.format(scale=scale))
    sys.path.insert(0, str(path.parent))
    try:
        sys.modules.pop(path.stem, None)
        module = importlib.import_module(path.stem)
    finally:
        sys.path.remove(str(path.parent))
    return module


def test_a_finished_model_is_retrained_after_its_loss_code_changes(tmp_path):
    from ledi_kedro.core.checkpoint import StaleCheckpointError
    from ledi_kedro.steps.training import run_training

    src = tmp_path / "src" / "user_losses_v.py"
    src.parent.mkdir()
    module = _load_loss_module(src, "1.0")
    restart = run_params(str(tmp_path / "ckpt"), "restart")
    first = run_training("net", Net, module.make_loss(), make_data(), CFG, restart, {"kind": "net"})
    again = run_training("net", Net, module.make_loss(), make_data(), CFG, restart, {"kind": "net"})
    assert again.resumed_from == 12  # unchanged code: the finished model is reused
    module = _load_loss_module(src, "0.5")  # the loss's helper changes what is learned
    with pytest.raises(StaleCheckpointError, match=r"the code changed: fn:user_losses_v\.scaled"):
        run_training("net", Net, module.make_loss(), make_data(), CFG,
                     run_params(str(tmp_path / "ckpt"), "error"), {"kind": "net"})
    retrained = run_training("net", Net, module.make_loss(), make_data(), CFG, restart, {"kind": "net"})
    assert retrained.resumed_from is None and retrained.loss_history != first.loss_history
    # a comment or docstring is not a change of the code
    src.write_text('"""A docstring."""\n' + LOSS_MODULE.format(scale="0.5") + "# a comment\n")
    import sys
    sys.path.insert(0, str(src.parent))
    sys.modules.pop(src.stem, None)
    import importlib
    module = importlib.import_module(src.stem)
    sys.path.remove(str(src.parent))
    assert run_training("net", Net, module.make_loss(), make_data(), CFG, restart, {"kind": "net"}).resumed_from == 12


def test_restart_also_replaces_checkpoints_that_no_longer_load(tmp_path):
    from ledi_kedro.steps.training import run_training

    run = run_params(str(tmp_path), "restart")
    run_training("net", Net, regression_loss, make_data(), CFG, run, {"kind": "net"})
    last = list_checkpoints(tmp_path / "net")[-1]
    (last / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        run_training("net", Net, regression_loss, make_data(), CFG,
                     run_params(str(tmp_path), "error"), {"kind": "net"})
    again = run_training("net", Net, regression_loss, make_data(), CFG, run, {"kind": "net"})
    assert again.resumed_from is None and again.steps == 12


# ---------------------------------------------------------------- quality during training, plateau

def test_plateau_rule():
    from ledi_kedro.core.trainer import plateau_reached

    assert not plateau_reached([5, 4, 3], 2, 0.02)
    assert plateau_reached([5, 4, 3, 3.0, 2.99], 2, 0.02)  # 0.3% better: not a real improvement
    assert not plateau_reached([5, 4, 3, 3.0, 2.5], 2, 0.02)
    assert not plateau_reached([5, 4, 3, 3.0, 2.99], 0, 0.02)  # patience 0: the rule is off


def test_plateau_rule_on_running_means_is_not_decided_by_one_lucky_value():
    from ledi_kedro.core.trainer import plateau_reached, running_means

    assert running_means([1, 2, 3, 4], 2) == [1.5, 2.5, 3.5] and running_means([1, 2], 3) == []
    # still improving ~2.5% per evaluation, with one lucky low value: the raw rule stops, the 3-mean rule does not
    noisy = [20.0, 19.5, 15.0, 18.5, 18.0, 17.5]
    assert plateau_reached(noisy, 3, 0.02, window=1)
    assert not plateau_reached(noisy, 3, 0.02, window=3)
    # flat (within 1%) around 10 after the improvement: both stop, the mean once `patience` full means are flat
    flat = [20.0, 15.0, 10.0, 10.1, 9.9, 10.0, 10.1, 9.95]
    assert plateau_reached(flat, 3, 0.02, window=3)
    assert not plateau_reached(flat[:-2], 3, 0.02, window=3)
    assert not plateau_reached([5, 4], 1, 0.02, window=3)  # fewer values than a window: no decision


def test_training_stops_at_the_quality_plateau_and_resumes_with_more_patience(tmp_path):
    values = iter([9.0, 5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0])
    seen = []

    def quality(model, step):
        assert not model.training
        seen.append(step)
        return next(values)

    cfg = TrainConfig(**{**CFG.__dict__, "steps": 100, "eval_every": 2, "plateau_patience": 2,
                         "checkpoint_every": 50})
    torch.manual_seed(0)
    result = Trainer(Net(), regression_loss, make_data(), cfg, checkpoint_dir=tmp_path, evaluate_fn=quality).fit()
    assert seen == [2, 4, 6, 8, 10] and result.steps == 10 and result.stop_reason == "plateau"
    assert [e["quality"] for e in result.eval_history] == [9.0, 5.0, 4.0, 4.0, 4.0]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000010"]  # saved at the stop
    again = Trainer(Net(), regression_loss, make_data(), cfg, checkpoint_dir=tmp_path, evaluate_fn=quality).fit()
    assert again.steps == 10 and again.stop_reason == "plateau" and seen[-1] == 10  # nothing to do
    patient = TrainConfig(**{**cfg.__dict__, "plateau_patience": 4})
    more = Trainer(Net(), regression_loss, make_data(), patient, checkpoint_dir=tmp_path, evaluate_fn=quality).fit()
    assert more.resumed_from == 10 and more.steps == 14 and more.stop_reason == "plateau"
    assert train().stop_reason == "step_cap"


def test_a_checkpoint_of_another_quality_measure_is_stale(tmp_path):
    """The plateau rule stopped the first run on its own measure's history; under another measure (another NFE,
    judge or reference) that history, and so the stop, mean nothing: the checkpoint must not be resumed."""
    from ledi_kedro.core.checkpoint import StaleCheckpointError

    cfg = TrainConfig(**{**CFG.__dict__, "steps": 100, "eval_every": 2, "plateau_patience": 2,
                         "checkpoint_every": 50})

    def fit(key):
        torch.manual_seed(0)
        return Trainer(Net(), regression_loss, make_data(), cfg, checkpoint_dir=tmp_path,
                       evaluate_fn=lambda model, step: 1.0, evaluate_key=key).fit()

    first = fit({"nfe": 4, "judge_model": "a"})
    assert first.stop_reason == "plateau" and fit({"nfe": 4, "judge_model": "a"}).resumed_from == first.steps
    with pytest.raises(StaleCheckpointError, match="the quality monitor changed: judge_model, nfe"):
        fit({"nfe": 2, "judge_model": "b"})
    with pytest.raises(StaleCheckpointError, match="the quality monitor changed: judge_model, nfe"):
        fit(None)  # nor by a run without a monitor's key


def test_eval_settings_need_each_other():
    with pytest.raises(ValueError, match="plateau_patience needs eval_every"):
        TrainConfig(plateau_patience=3)
    with pytest.raises(ValueError, match="needs an evaluate_fn"):
        Trainer(Net(), regression_loss, make_data(), TrainConfig(**{**CFG.__dict__, "eval_every": 2}))


# ---------------------------------------------------------------- the loop's small pieces

def test_ema_follows_the_model_with_warm_up():
    from ledi_kedro.core.trainer import _EMA

    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = _EMA(model, decay=0.9, warmup=True)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # warm-up decay min(0.9, 1/10) = 0.1: the EMA moves 90% of the way
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9))
    ema.update(model, step=1000)  # then the configured decay 0.9
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.9 + 0.1 * 0.1))
    assert not ema.module.weight.requires_grad


def test_interval_log_averages_and_stops_on_non_finite_losses():
    from ledi_kedro.core.trainer import _IntervalLog

    log = _IntervalLog("net")
    for v in (1.0, 3.0):
        log.add(torch.tensor(v), {"acc": torch.tensor(v / 4)})
    losses, entry = log.flush(step=2, lr=0.1, last_good=None)
    assert losses == [1.0, 3.0] and entry == {"step": 2, "loss": 2.0, "lr": 0.1, "acc": 0.5}
    log.add(torch.tensor(1.0), {})
    log.add(torch.tensor(float("inf")), {})
    with pytest.raises(NonFiniteLossError, match="loss became inf at step 4.*no checkpoint was written"):
        log.flush(step=4, lr=0.1, last_good=None)


def test_stale_reasons_name_settings_data_and_code():
    from ledi_kedro.core.trainer import _RESUMABLE_CHANGES, stale_reasons

    old = {"train_config": {"lr": 0.1, "steps": 5}, "model_config": {"size": "T"}, "data_hash": "a",
           "code": {"m": "1", "n": "2"}}
    new = {"train_config": {"lr": 0.2, "steps": 9}, "model_config": {"size": "T"}, "data_hash": "b",
           "code": {"m": "1", "n": "3"}}
    reasons = stale_reasons(old, new, _RESUMABLE_CHANGES)
    assert reasons == ["train.lr: 0.1 -> 0.2", "the training data differ", "the code changed: n"]
    assert stale_reasons(old | {"evaluate_key": {"nfe": 4, "seed": 0}}, old | {"evaluate_key": {"nfe": 2, "seed": 0}},
                         _RESUMABLE_CHANGES) == ["the quality monitor changed: nfe"]
