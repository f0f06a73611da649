"""Steps/s of `kedro run --pipelines=train_fm` alone and with a second one beside it, on this machine.

    python benchmarks/concurrent_runs.py            # after `make run` (it reuses that run's inputs)
    python benchmarks/concurrent_runs.py --steps 300 --env OMP_WAIT_POLICY=ACTIVE   # e.g. spinning OpenMP threads

Each run trains the default flow models (both namespaces, quality monitoring off) for ``--steps``
steps in its own copy of the project (own data/ and checkpoints), so nothing is shared. It prints
the training speed (the trainer's it/s, averaged over each model's log lines after the first) alone
and for each of two concurrent runs, and the slowdown ratio; on a machine with N cores, two runs that
split the cores fairly would each be about 2x slower.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ledi_kedro.core.threads import available_cores

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ["data/05_model_input/train_model_input.safetensors", "data/05_model_input/prior_codes.safetensors",
          "data/05_model_input/validation_images.safetensors", "data/06_models/prior", "data/06_models/latent_flow",
          "data/06_models/autoencoder", "data/06_models/quality_embedder"]
RATE = re.compile(r"(fm_\w+): step (\d+)/\d+ \| .*? \| ([\d.]+) it/s")


def make_copy(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(ROOT / name, dst / name)
    shutil.copytree(ROOT / "conf", dst / "conf")
    (dst / "src").mkdir()
    for rel in INPUTS:
        src = ROOT / rel
        if not src.exists():
            sys.exit(f"{src} is missing: run `make run` once first (this benchmark reuses its inputs)")
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / rel)
    return dst


def start(project: Path, steps: int, extra_env: dict[str, str]) -> subprocess.Popen:
    params = (f"fm.train.steps={steps},fm.train.eval_every=0,fm.train.plateau_patience=0,"
              f"fm.train.log_every=25,fm.train.checkpoint_every={steps}")
    env = dict(os.environ, **extra_env)
    return subprocess.Popen([sys.executable, "-m", "kedro", "run", "--pipelines=train_fm", f"--params={params}"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def rate(log: str) -> float:
    """Mean it/s over each model's log lines, its first line (start-up) left out."""
    per_model: dict[str, list[float]] = {}
    for model, _, r in RATE.findall(log):
        per_model.setdefault(model, []).append(float(r))
    rates = [r for values in per_model.values() for r in values[1:]]
    if not rates:
        raise RuntimeError("no progress lines in the run's log:\n" + log[-3000:])
    return statistics.mean(rates)


def run_group(projects: list[Path], steps: int, env: dict[str, str]) -> list[float]:
    procs = [start(p, steps, env) for p in projects]
    logs = [p.communicate()[0] for p in procs]
    for p, log in zip(procs, logs):
        if p.returncode:
            raise RuntimeError(f"kedro run failed:\n{log[-3000:]}")
    return [rate(log) for log in logs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for both runs (repeatable)")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    with tempfile.TemporaryDirectory(prefix="concurrent_runs_") as tmp:
        a, b = make_copy(Path(tmp) / "a"), make_copy(Path(tmp) / "b")
        start_t = time.perf_counter()
        (alone,) = run_group([a], args.steps, env)
        for p in (a, b):
            shutil.rmtree(p / "data/06_models/checkpoints", ignore_errors=True)
        together = run_group([a, b], args.steps, env)
        minutes = (time.perf_counter() - start_t) / 60
    print(f"train_fm (default model, {args.steps} steps per flow model), {available_cores()} cores, env {env or 'default'}:")
    print(f"  alone:              {alone:.2f} steps/s")
    for i, r in enumerate(together, 1):
        print(f"  concurrent run {i}:   {r:.2f} steps/s  ({alone / r:.2f}x slower than alone)")
    print(f"  ({minutes:.1f} min in all)")


if __name__ == "__main__":
    main()
