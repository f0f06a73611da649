"""The CPU thread budget follows run.cpu_threads, the CPU affinity, OMP_NUM_THREADS and torchrun's ranks."""

import os
import subprocess
import sys

import pytest

from ledi_kedro.core import threads


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    return monkeypatch


def test_budget_follows_affinity_omp_and_local_ranks(clean_env):
    assert threads.thread_budget() == 8
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.thread_budget() == 3
    clean_env.setenv("OMP_NUM_THREADS", "16")  # never more than the affinity allows
    assert threads.thread_budget() == 8
    clean_env.delenv("OMP_NUM_THREADS")
    clean_env.setenv("LOCAL_WORLD_SIZE", "4")  # four torchrun ranks share the 8 cores
    assert threads.thread_budget() == 2
    clean_env.setenv("LOCAL_WORLD_SIZE", "16")
    assert threads.thread_budget() == 1


def test_the_parameter_wins(clean_env):
    clean_env.setenv("OMP_NUM_THREADS", "3")
    assert threads.thread_budget(5) == 5
    with pytest.raises(ValueError, match="run.cpu_threads must be a positive integer"):
        threads.thread_budget(0)


def test_apply_sets_torch_and_the_children_environment(clean_env):
    import torch

    before = torch.get_num_threads()
    try:
        assert threads.apply_thread_budget(1) == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)


def test_a_real_affinity_mask_is_followed():
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs Linux and at least 2 CPUs")
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from ledi_kedro.core.threads import thread_budget; print(thread_budget())")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "1", out.stderr
