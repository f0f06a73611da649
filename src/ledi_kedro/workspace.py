"""A separate Kedro project folder that runs this project's pipelines without touching its ``data/``: the
configuration (``conf/``, ``conf/local`` left empty), ``pyproject.toml`` and ``.telemetry``; the code comes
from the installed package. For runs that must not overwrite the default chain's artifacts (the CPU quality
benchmark's ``kedro run --env cpu_benchmark``, the test suite's command-line runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def make_workspace(dst: str | Path, project_root: str | Path = PROJECT_ROOT) -> Path:
    """Create ``dst`` (which must not exist yet) as a workspace of ``project_root``; returns it."""
    root, dst = Path(project_root), Path(dst)
    if not (root / "pyproject.toml").is_file() or not (root / "conf" / "base").is_dir():
        raise FileNotFoundError(f"{root}: not this Kedro project (no pyproject.toml or conf/base)")
    dst.mkdir(parents=True)
    shutil.copy(root / "pyproject.toml", dst)
    shutil.copy(root / ".telemetry", dst)
    shutil.copytree(root / "conf", dst / "conf", ignore=shutil.ignore_patterns("local"))
    (dst / "conf" / "local").mkdir()
    (dst / "src").mkdir()  # the package itself comes from the (editable) install
    return dst
