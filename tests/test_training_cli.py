"""`kedro run` through the CLI: parameter validation, kill + resume, and a 2-process torchrun."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ok

TRAIN = "steps={steps},batch_size=8,warmup_steps=2,log_every=2,checkpoint_every={every}"


def tiny_cli_params(fmnist: Path, ckpt: Path, fm_steps: int = 4, every: int = 2) -> str:
    parts = [f"data_source.path={fmnist}", "preprocess.image.resolution=8", "preprocess.image.small_images=resize",
             "run.device=cpu", f"run.checkpoint_root={ckpt}",
             "prior.model.z_dim=4", "prior.model.base_channels=8", "prior.eval_images=4",
             "latent_flow.model.hidden=16", "latent_flow.model.depth=1", "latent_flow.sample_steps=2",
             "fm.model.size=T", "fm.model.patch_size=2", f"fm.train.eval_every={every}", "fm.train.plateau_patience=0",
             "fm.monitor.n_samples=4", "fm.monitor.n_reference=4", "fm.monitor.batch_size=4",
             "gaussian.variant.monitor_nfe=4", "prior.train.eval_every=0",
             "embedder.model.width=2", "embedder.model.feature_dim=4"]
    for section, steps in (("prior", 4), ("latent_flow", 4), ("fm", fm_steps), ("embedder", 2)):
        parts += [f"{section}.train.{kv}" for kv in TRAIN.format(steps=steps, every=every).split(",")]
    return ",".join(parts)


def kedro(project: Path, *args: str, timeout: int = 300, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kedro", "run", *args], cwd=project, capture_output=True,
                          text=True, timeout=timeout, **popen)


def fm_params(steps: int, every: int) -> str:
    """`--params` for train_fm in the tiny project: a step budget; logs, checkpoints and monitoring every `every`."""
    return ",".join(f"fm.train.{key}={value}" for key, value in
                    (("steps", steps), ("log_every", every), ("checkpoint_every", every), ("eval_every", every)))


@pytest.mark.slow
def test_train_fm_killed_then_resumed_from_its_last_checkpoint(tiny_trained_copy):
    project = tiny_trained_copy  # fm_gaussian has checkpoints up to step 4
    ckpt = project / "data/06_models/checkpoints"
    # A longer run of train_fm, killed once a checkpoint beyond step 4 is on disk (any: with keep_checkpoints 2
    # the first new one is pruned within a fraction of a second, and the budget is far more than that takes) ...
    run_log = project / "killed_run.log"
    with run_log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kedro", "run", "--pipelines=train_fm",
                                 f"--params={fm_params(20000, 6)}"],
                                cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 240

    def new_checkpoints() -> list[Path]:
        return [p for p in (ckpt / "fm_gaussian").glob("step_*") if int(p.name.removeprefix("step_")) > 4]

    while not new_checkpoints() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before it was killed:\n" + \
        run_log.read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert new_checkpoints(), "no checkpoint appeared before the deadline"
    last = sorted(p.name for p in (ckpt / "fm_gaussian").glob("step_*"))[-1]
    reached = int(last.removeprefix("step_"))
    # ... resumes from its last checkpoint when run again (with a budget just 6 steps longer, to finish fast)
    again = kedro(project, "--pipelines=train_fm", f"--params={fm_params(reached + 6, 6)}")
    ok(again)
    log = again.stdout + again.stderr
    resumed_from = Path("data/06_models/checkpoints") / "fm_gaussian" / last
    assert f"fm_gaussian: resumed from {resumed_from} (step {reached})" in log
    # (that a finished model is not retrained is tests/core/test_trainer.py::test_finished_model_is_not_retrained)


@pytest.mark.slow
def test_invalid_parameter_stops_before_any_node(project_copy, tiny_fashion_mnist):
    params = tiny_cli_params(tiny_fashion_mnist, project_copy / "ck") + ",fm.model.patch_size=3"
    proc = kedro(project_copy, f"--params={params}")
    assert proc.returncode != 0
    assert "fm.model.patch_size=3 does not divide the resolution 8" in proc.stdout + proc.stderr
    assert not (project_copy / "data/05_model_input/train_images.safetensors").exists()


@pytest.mark.slow
def test_torchrun_two_processes(tiny_trained_copy):
    project = tiny_trained_copy
    ckpt = project / "ddp_ckpt"  # a fresh checkpoint root: train_fm trains from step 0 on 2 ranks
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "ledi_kedro", "--pipelines=train_fm", f"--params=run.checkpoint_root={ckpt}"],
                          cwd=project, capture_output=True, text=True, timeout=400, env=env)
    out = proc.stdout + proc.stderr
    ok(proc)
    assert "DDP: 2 processes" in out and "global batch 8 on cpu x2" in out
    assert (ckpt / "fm_ledi" / "step_00000004").is_dir()
    assert not list(ckpt.glob("**/.*tmp*"))
