"""Seeded split assignment: train/test for images whose source gives no split, and the validation split
carved out of train (what selection reads; no model trains on it)."""

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


def validation_count(n_train: int, size: int, max_fraction: float) -> int:
    """How many training images become validation images: ``size``, at most ``max_fraction`` of them."""
    if size < 0:
        raise ValueError(f"validation_size must be >= 0, got {size}")
    if not 0.0 <= max_fraction < 1.0:
        raise ValueError(f"max_validation_fraction must be in [0, 1), got {max_fraction}")
    return min(size, int(max_fraction * n_train))


def carve_validation(splits: Sequence[str], labels: Sequence[int], n_validation: int, seed: int) -> list[str]:
    """Move ``n_validation`` of the ``train`` images to ``validation``: a seeded draw, stratified by label
    (each class, and the unlabeled images (label -1) as one more, gives its share of the training images,
    rounded by largest remainder), so that selection sees the classes in the proportions training does.
    Other splits are left alone; the choice depends only on ``seed`` and the images' order."""
    out = list(splits)
    train = np.flatnonzero(np.asarray(out, dtype=object) == "train")
    if n_validation <= 0 or not len(train):
        return out
    if n_validation >= len(train):
        raise ValueError(f"a validation split of {n_validation} images leaves none of the {len(train)} "
                         "training images to train on")
    train_labels = np.asarray(labels)[train]
    classes, counts = np.unique(train_labels, return_counts=True)
    exact = counts * n_validation / len(train)
    take = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - take), kind="stable")[: n_validation - int(take.sum())]:
        take[i] += 1
    rng = np.random.default_rng([seed, 2])
    for cls, k in zip(classes, take):
        members = train[train_labels == cls]
        for i in rng.choice(len(members), size=int(k), replace=False):
            out[members[i]] = "validation"
    return out
