"""Helpers for pipelines that read the outputs of ``train_fm``'s namespaces ("ledi.fm_model", ...)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


@contextlib.contextmanager
def reading_namespaced_outputs() -> Iterator[None]:
    """Kedro warns about dots in dataset names; here they are namespaced outputs read on purpose."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="One or more dataset names contain '.'")
        yield
