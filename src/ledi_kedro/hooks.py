"""Project hooks: global seeding before any node runs."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
from kedro.framework.hooks import hook_impl

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (when it is installed) torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # the preprocess layer does not need torch
        return
    torch.manual_seed(seed)


class SeedHooks:
    """Seeds every run from the ``seed`` parameter (``conf/base/parameters.yml``)."""

    @hook_impl
    def after_context_created(self, context) -> None:  # type: ignore[no-untyped-def]
        seed = context.params.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"parameter 'seed' must be an integer, got {seed!r}")
        seed_everything(seed)
        log.debug("Seeded python, numpy and torch with %d", seed)
