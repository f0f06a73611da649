"""The project's parameters read from ``conf/`` without Kedro, exactly as ``kedro run --env ENV`` reads them
with this project's settings (``settings.CONFIG_LOADER_ARGS``): every ``conf/base/parameters*.yml``, then the
environment's ``parameters*.yml`` merged over them key by key (Kedro's "soft" merge). For the benchmarks on
machines without Kedro (the GPU check); the test suite checks that both readers agree on every environment.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

BASE_ENV = "base"
DEFAULT_RUN_ENV = "local"  # what `kedro run` reads without --env
PATTERN = "parameters*.yml"


class ConfFilesError(ValueError):
    """A configuration folder or file is missing or malformed; the message names it."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override``'s keys replaced, recursing into mappings (Kedro's soft merge)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _read_env(folder: Path) -> dict[str, Any]:
    """One environment's parameter files as one mapping; a top-level key in two files is an error (as in Kedro)."""
    merged: dict[str, Any] = {}
    seen: dict[str, Path] = {}
    for path in sorted(folder.glob(PATTERN)):
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfFilesError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfFilesError(f"{path}: expected a mapping of parameter sections, got {type(data).__name__}")
        for key in data:
            if key in seen:
                raise ConfFilesError(f"{path}: section {key!r} is defined in {seen[key]} too (one file per section "
                                     "within an environment)")
            seen[key] = path
        merged.update(data)
    return merged


def load_parameters(conf_root: str | Path, env: str | None = DEFAULT_RUN_ENV) -> dict[str, Any]:
    """Every parameter section for ``env`` (None: conf/base alone), a fresh copy."""
    root = Path(conf_root)
    if not (root / BASE_ENV).is_dir():
        raise ConfFilesError(f"{root / BASE_ENV}: no such folder (conf_root should be the project's conf/)")
    params = _read_env(root / BASE_ENV)
    if env is not None and env != BASE_ENV:
        folder = root / env
        if not folder.is_dir():
            if env != DEFAULT_RUN_ENV:
                known = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != BASE_ENV)
                raise ConfFilesError(f"{folder}: no such configuration environment; known: {', '.join(known)}")
        else:
            params = deep_merge(params, _read_env(folder))
    return copy.deepcopy(params)
