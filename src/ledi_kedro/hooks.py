"""Project hooks: seeding, parameter validation, device/DDP set-up and rank-0-only writes."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractDataset, MemoryDataset

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when it is installed) torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # the preprocess layer does not need torch
        return
    torch.manual_seed(seed)


def _run_params(context):  # type: ignore[no-untyped-def]
    """The typed ``run:`` section, for the hooks that act before the first node (and before
    :class:`ValidationHooks`): a bad value fails here with the same error that names it."""
    from ledi_kedro.params import parse

    return parse("run", context.params.get("run"))


class SeedHooks:
    """Seeds every run from ``run.seed`` (``conf/base/parameters.yml``)."""

    @hook_impl
    def after_context_created(self, context) -> None:  # type: ignore[no-untyped-def]
        seed_everything(_run_params(context).seed)


class ThreadHooks:
    """Sets this process's CPU thread budget from ``run.cpu_threads`` (default: the cores it may use,
    shared among local torchrun ranks) before any node runs (``ledi_kedro.core.threads``)."""

    @hook_impl
    def after_context_created(self, context) -> None:  # type: ignore[no-untyped-def]
        from ledi_kedro.core.threads import apply_thread_budget, thread_budget

        requested = _run_params(context).cpu_threads
        threads = apply_thread_budget(thread_budget(requested))
        log.info("CPU thread budget: %d thread(s) (run.cpu_threads=%s)", threads, requested)


class ValidationHooks:
    """Checks every typed parameter section before the first node runs."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:  # type: ignore[no-untyped-def]
        from ledi_kedro.params import validate_all

        validate_all(catalog.load("parameters"))


class _RankZeroWrites(AbstractDataset):
    """Loads through to the wrapped dataset; saves only happen on rank 0."""

    def __init__(self, inner: AbstractDataset, rank: int):
        self._inner, self._rank = inner, rank

    def load(self) -> Any:
        return self._inner.load()

    def save(self, data: Any) -> None:
        if self._rank == 0:
            self._inner.save(data)

    def _exists(self) -> bool:
        return self._inner.exists()

    def _describe(self) -> dict[str, Any]:
        return {"inner": repr(self._inner), "rank": self._rank}


class DistributedHooks:
    """Under ``torchrun``: join the process group, let only rank 0 write files, and keep ranks in
    step after every node (so no rank reads a file before rank 0 has written it)."""

    def __init__(self) -> None:
        self.info = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:  # type: ignore[no-untyped-def]
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        from ledi_kedro.core.distributed import init_distributed

        self.info = init_distributed()
        if self.info.rank == 0:
            log.info("DDP: %d processes; rank 0 writes all artifacts", self.info.world_size)
            return
        for name in sorted(pipeline.datasets()):
            if name.startswith("params:") or name == "parameters":
                continue
            dataset = catalog.get(name)
            if dataset is not None and not isinstance(dataset, MemoryDataset):
                catalog[name] = _RankZeroWrites(dataset, self.info.rank)

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs, is_async, run_id) -> None:  # type: ignore[no-untyped-def]
        if self.info is not None:
            from ledi_kedro.core.distributed import barrier

            barrier()
