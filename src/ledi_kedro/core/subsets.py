"""Seeded random subsets: every set of N rows the project takes (reference sets, real-vs-real rows,
held-out metrics, tuning's scoring set, scale fits) is drawn with these, never as a prefix.

Image folders come sorted by class or name, so the first N rows of a split can be one or two
classes; a seeded draw covers the data set and is still reproducible.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

# What each split is for (docs/design.md §3, "Select on validation, confirm on test"). A split is cut into
# one block per purpose by one seeded permutation, so that sets drawn for different purposes never share a
# row, whatever their sizes and seeds.
VALIDATION_PURPOSES = ("monitor", "selection")  # plateau monitors | choices (the warmth, tune's scoring set)
TEST_PURPOSES = ("reference", "held_out")  # the evaluation's reference | its held-out yardsticks


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one ``purpose`` (e.g. ``"evaluate"``, ``"train/prior"``) from the run's one seed: stable
    across Python versions and machines, different for every purpose, and moved by every change of ``seed``.
    In [0, 2**31)."""
    digest = hashlib.sha256(f"{int(seed)}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seeded_indices(n_total: int, n: int | None, seed: int) -> torch.Tensor:
    """``min(n, n_total)`` distinct row indices drawn uniformly with ``seed``, in increasing order
    (increasing keeps reads of memory-mapped tensors sequential). ``n=None`` takes every row."""
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    if n is None or n >= n_total:
        return torch.arange(n_total)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(int(seed)))
    return perm[:n].sort().values


def rows_outside(n_total: int, taken: torch.Tensor) -> torch.Tensor:
    """The row indices of ``range(n_total)`` not in ``taken``, in increasing order (e.g. the held-out images
    outside a seeded reference set)."""
    outside = torch.ones(n_total, dtype=torch.bool)
    outside[taken] = False
    return outside.nonzero()[:, 0]


def purpose_block(n_total: int, purposes: tuple[str, ...], purpose: str, seed: int) -> torch.Tensor:
    """The rows of ``range(n_total)`` that belong to ``purpose``: a seeded permutation cut into
    ``len(purposes)`` contiguous blocks of (nearly) equal size, block ``i`` for ``purposes[i]``, in a seeded
    random order. The blocks of one split and seed are disjoint and cover it."""
    if purpose not in purposes:
        raise ValueError(f"unknown purpose {purpose!r}: expected one of {list(purposes)}")
    perm = torch.randperm(n_total, generator=torch.Generator().manual_seed(derive_seed(seed, "blocks")))
    bounds = [n_total * i // len(purposes) for i in range(len(purposes) + 1)]
    i = purposes.index(purpose)
    return perm[bounds[i]:bounds[i + 1]]


def purpose_indices(n_total: int, purposes: tuple[str, ...], purpose: str, n: int | None,
                    seed: int) -> torch.Tensor:
    """``min(n, block size)`` rows of ``purpose``'s block (:func:`purpose_block`), a seeded sample in
    increasing order (``n=None``: the whole block)."""
    block = purpose_block(n_total, purposes, purpose, seed)
    return block[seeded_indices(len(block), n, derive_seed(seed, purpose))].sort().values


def purpose_rows(tensors: dict[str, Any], purposes: tuple[str, ...], purpose: str, n: int | None,
                 seed: int) -> dict[str, Any]:
    """:func:`seeded_rows` drawn from ``purpose``'s block of the split only."""
    sizes = {int(v.shape[0]) for v in tensors.values() if _is_rows(v)}
    if len(sizes) != 1:
        raise ValueError(f"tensors must have one number of rows, got {sorted(sizes)}")
    idx = purpose_indices(sizes.pop(), purposes, purpose, n, seed)
    return _take_rows(tensors, idx)


def _is_rows(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _take_rows(tensors: dict[str, Any], idx: torch.Tensor) -> dict[str, Any]:
    """Rows ``idx`` of every tensor or array in ``tensors``; other entries (metadata) pass through."""
    return {k: (v[idx] if isinstance(v, torch.Tensor) else v[idx.numpy()]) if _is_rows(v) else v
            for k, v in tensors.items()}


def seeded_rows(tensors: dict[str, Any], n: int | None, seed: int) -> dict[str, Any]:
    """The same seeded subset of rows of every tensor or array in ``tensors`` (other entries, such as
    metadata, pass through)."""
    sizes = {k: int(v.shape[0]) for k, v in tensors.items() if _is_rows(v)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"tensors have different numbers of rows: {sizes}")
    if not sizes:
        return dict(tensors)
    idx = seeded_indices(next(iter(sizes.values())), n, seed)
    return _take_rows(tensors, idx)


def class_coverage(labels: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """How many rows and distinct classes a labelled subset holds (labels < 0 mean "no label")."""
    labels = torch.as_tensor(labels)
    labelled = labels[labels >= 0]
    return {"n": int(labels.shape[0]), "n_classes": int(labelled.unique().numel()) if labelled.numel() else 0}
