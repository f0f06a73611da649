"""Seeded train/test assignment for images whose source gives no split."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def assign_splits(source_splits: Sequence[str | None], test_fraction: float, seed: int) -> list[str]:
    """Keep each given split; send ``round(test_fraction * n)`` of the ``n`` unsplit images to test.

    The choice depends only on ``seed`` and on the order of the images.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    out = [s if s is not None else "train" for s in source_splits]
    free = [i for i, s in enumerate(source_splits) if s is None]
    n_test = int(round(test_fraction * len(free)))
    if n_test:
        rng = np.random.default_rng(seed)
        for i in rng.choice(len(free), size=n_test, replace=False):
            out[free[i]] = "test"
    return out
