"""Seeded random subsets: every set of N rows the project takes (reference sets, real-vs-real rows,
held-out metrics, tuning's scoring set, scale fits) is drawn with these, never as a prefix.

Image folders come sorted by class or name, so the first N rows of a split can be one or two
classes; a seeded draw covers the data set and is still reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


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


def _is_rows(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def seeded_rows(tensors: dict[str, Any], n: int | None, seed: int) -> dict[str, Any]:
    """The same seeded subset of rows of every tensor or array in ``tensors`` (other entries, such as
    metadata, pass through)."""
    sizes = {k: int(v.shape[0]) for k, v in tensors.items() if _is_rows(v)}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"tensors have different numbers of rows: {sizes}")
    if not sizes:
        return dict(tensors)
    idx = seeded_indices(next(iter(sizes.values())), n, seed)
    return {k: (v[idx] if isinstance(v, torch.Tensor) else v[idx.numpy()]) if _is_rows(v) else v
            for k, v in tensors.items()}


def class_coverage(labels: torch.Tensor | np.ndarray) -> dict[str, Any]:
    """How many rows and distinct classes a labelled subset holds (labels < 0 mean "no label")."""
    labels = torch.as_tensor(labels)
    labelled = labels[labels >= 0]
    return {"n": int(labels.shape[0]), "n_classes": int(labelled.unique().numel()) if labelled.numel() else 0}
