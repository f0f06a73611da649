"""One CPU thread budget per process, so that several runs on one machine share its cores instead of
fighting over them.

The budget is ``run.cpu_threads`` when set, else the cores this process may use: its CPU affinity,
capped by ``OMP_NUM_THREADS`` when that is set, divided among the ranks ``torchrun`` started on this
machine (``LOCAL_WORLD_SIZE``). :func:`apply_thread_budget` gives torch that many intra-op threads
and one inter-op thread, exports it to child processes (``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``)
and is what decoding worker pools size themselves from.

OpenMP threads that wait for work spin at full speed for a while before they sleep (libgomp's
default); two processes each spinning on both cores of a 2-core machine stall each other far beyond
a fair share. :func:`passive_waiting` makes waiting threads sleep; it must run before torch (and with
it the OpenMP runtime) is first imported, which the Kedro settings module does.
"""

from __future__ import annotations

import os

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def thread_budget(requested: int | None = None) -> int:
    """``requested`` when given, else the affinity capped by ``OMP_NUM_THREADS`` and shared among the
    local ``torchrun`` ranks."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"run.cpu_threads must be a positive integer or null, got {requested}")
        return requested
    cores = available_cores()
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        cores = min(cores, int(omp))
    local_ranks = os.environ.get("LOCAL_WORLD_SIZE", "").strip()
    if local_ranks.isdigit() and int(local_ranks) > 1:
        cores = max(1, cores // int(local_ranks))
    return cores


def passive_waiting() -> None:
    """Idle OpenMP threads sleep instead of spinning (unless the user chose a policy). Call before torch loads."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def apply_thread_budget(threads: int) -> int:
    """Give torch ``threads`` intra-op threads and 1 inter-op thread; child processes inherit the budget."""
    import torch

    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only allowed before the first inter-op work; keep what is set then
        pass
    return threads
