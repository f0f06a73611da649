"""LeDiFlow against the Gaussian-prior baseline through the project's own pipelines: `kedro run --env ENV` in a
workspace of its own, then the verdict tables from what `evaluate` wrote. No second copy of the chain: the
figures describe what `make run` and `kedro run` ship, and a budget lives in a configuration environment.

    python benchmarks/quality_benchmark.py --cpu        # conf/cpu_benchmark: 2 CPU cores, at most ~30 min
    python benchmarks/quality_benchmark.py --env fmnist_gpu   # any configuration environment (GPU machines)
    python benchmarks/quality_benchmark.py --smoke      # conf/tiny on a tiny synthetic Fashion-MNIST, seconds
    python benchmarks/quality_benchmark.py --cpu --report-only   # the tables of a finished run again

On a machine with 2 cores or more the parts that need nothing of each other train side by side, one core each:
the judge and the prior, then the two flow models (`kedro run --namespaces=ledi` and `--namespaces=gaussian` at
once); ``--sequential`` runs one `kedro run --env ENV` instead. The workspace (default ``benchmarks/results/<env>``, git-ignored) keeps
the run's ``data/`` and checkpoints:
run the same command again and Kedro resumes or reuses what is there (checkpoints record the code, settings
and data that made them). ``--fresh`` starts from an empty workspace. The tables go to stdout and to
``results.md`` and ``results.json`` in the workspace.

Why the ``cpu_benchmark`` problem is Fashion-MNIST at 16 px with a DiT-T and 4x4 patches (16 tokens): a DiT
step costs about in proportion to its tokens, and on 2 cores the Gaussian baseline must be trained until its
quality stops improving within the half hour. At 16 px with 2x2 patches (64 tokens) both models were still
improving by 5% per 400 steps after 2,800 steps (about 7 minutes each); 16 tokens of 4x4 pixels make each
step several times cheaper and the problem small enough for both to reach their plateau (the plateau
evidence is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from ledi_kedro.core.data.idx import write_random_fashion_mnist
from ledi_kedro.conf_files import load_parameters
from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.steps.evaluation import verdict_lines
from ledi_kedro.workspace import PROJECT_ROOT, make_workspace

REPORTING = Path("data/08_reporting")


# The side-by-side schedule on 2 cores: each stage is a list of `kedro run` options run at once, one core each
# when there are two; the judge and the prior need nothing of each other, nor do the two flow models.
SIDE_BY_SIDE = (
    ("data", ["--pipelines=preprocess,train_autoencoder"]),
    ("judge_and_prior", ["--pipelines=train_embedder", "--pipelines=train_prior"]),
    ("latent_sampler", ["--pipelines=train_latent_flow"]),
    ("flow_models", ["--pipelines=train_fm --namespaces=ledi", "--pipelines=train_fm --namespaces=gaussian"]),
    ("evaluation", ["--pipelines=evaluate,report"]),
)


def kedro_command(env: str, params: str | None, *options: str) -> list[str]:
    kedro = Path(sys.executable).with_name("kedro")
    cmd = [str(kedro) if kedro.exists() else "kedro", "run", f"--env={env}", *options]
    return cmd + ([f"--params={params}"] if params else [])


def _start(cmd: list[str], workspace: Path, log_name: str) -> tuple[subprocess.Popen, Path]:
    # A benchmark has the machine to itself: OpenMP threads may spin while they wait (the project's default,
    # passive waiting, is for shared machines; it halves a DiT-T's training speed on 2 cores). Results do not
    # depend on it; an OMP_WAIT_POLICY set by the caller wins.
    env = dict(os.environ, KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")
    env.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    print(f"$ (cd {workspace} && OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']} {' '.join(cmd)})", flush=True)
    log = workspace / log_name
    return subprocess.Popen(cmd, cwd=workspace, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env), log


def _wait(runs: list[tuple[subprocess.Popen, Path]]) -> None:
    """Wait for the runs, echoing their progress lines; stop at the first that fails."""
    offsets = {log: 0 for _, log in runs}
    while True:
        for _, log in runs:
            with log.open() as fh:
                fh.seek(offsets[log])
                for line in fh:
                    if " ledi_kedro" in line or "Completed node" in line or "Error" in line:
                        print(line.rstrip(), flush=True)
                offsets[log] = fh.tell()
        done = [proc.poll() for proc, _ in runs]
        for (proc, log), code in zip(runs, done):
            if code:
                for other, _ in runs:
                    other.kill()
                sys.exit(f"quality_benchmark: `{' '.join(proc.args)}` failed (exit {code}); its log: {log}")
        if all(code == 0 for code in done):
            return
        time.sleep(2)


def run_pipelines(workspace: Path, env: str, params: str | None, side_by_side: bool,
                  scoring: str = "--pipelines=evaluate,report") -> float:
    """The default pipeline with ``env``'s settings in the workspace; minutes. ``side_by_side``: the parts that
    need nothing of each other train at once, one core each (``SIDE_BY_SIDE``: the judge and the prior, then
    the two flow models, `kedro run --namespaces`): what one `kedro run --env ENV` does, apart from the thread
    count, in less time on 2 cores. ``scoring``: the last stage's options (``--pipelines=select``: the scoring on
    the validation split instead of the final evaluation, for a selection)."""
    start = time.perf_counter()
    schedule = [(name, runs if name != "evaluation" else [scoring]) for name, runs in SIDE_BY_SIDE]
    if not side_by_side:
        training = ",".join(o.split("=", 1)[1] for _, runs in schedule[:-1] for o in runs if "--namespaces" not in o)
        steps = ([[]] if scoring == SIDE_BY_SIDE[-1][1][0] else  # the default pipeline, in one `kedro run`
                 [[f"--pipelines={training},train_fm"], [scoring]])
        for i, options in enumerate(steps):
            _wait([_start(kedro_command(env, params, *options), workspace, f"kedro_run{'_' * i}{i or ''}.log")])
        return (time.perf_counter() - start) / 60
    for name, runs in schedule:
        one_core = ",".join(filter(None, [params, "run.cpu_threads=1"])) if len(runs) > 1 else params
        _wait([_start(kedro_command(env, one_core, *options.split()), workspace,
                      f"kedro_run_{name}{'_' + str(i) if len(runs) > 1 else ''}.log") for i, options in enumerate(runs)])
    return (time.perf_counter() - start) / 60


def tables(workspace: Path) -> tuple[dict, list[str]]:
    """The metrics and the verdict tables of an evaluated workspace."""
    out = workspace / REPORTING
    if not (out / "metrics.json").is_file():
        sys.exit(f"quality_benchmark: {out / 'metrics.json'} does not exist: the run has not finished")
    metrics = json.loads((out / "metrics.json").read_text())
    rows = pl.read_parquet(workspace / "data/07_model_output/sweep_results.parquet").to_dicts()
    latent_rows = pl.read_parquet(workspace / "data/07_model_output/latent_sampler_sweep.parquet").to_dicts()
    speedups = pl.read_parquet(out / "speedup.parquet").to_dicts()
    return metrics, verdict_lines(metrics, rows, latent_rows, speedups)


# Paths the configuration may give relative to the project root; the workspace is elsewhere.
ROOT_RELATIVE = (("data_source", "path"), ("embedder", "pretrained_weights"))


def anchored_paths(env: str, params: str | None) -> str | None:
    """``params`` with `--params` overrides that anchor the environment's relative paths (the data, the
    pretrained judge's weights) at the project root, unless ``params`` sets them itself."""
    conf = load_parameters(PROJECT_ROOT / "conf", env)
    given = {item.split("=", 1)[0].strip() for item in (params or "").split(",") if "=" in item}
    extra = []
    for section, key in ROOT_RELATIVE:
        value = conf.get(section, {}).get(key)
        if value and not Path(value).expanduser().is_absolute() and f"{section}.{key}" not in given:
            extra.append(f"{section}.{key}={(PROJECT_ROOT / value).resolve()}")
    return ",".join(filter(None, [*extra, params])) or None


def smoke_data(workspace: Path) -> str:
    """Tiny Fashion-MNIST-shaped files (random pixels) for --smoke; returns their folder."""
    return str(write_random_fashion_mnist(workspace / "smoke_data", n_train=24, n_test=12).resolve())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--cpu", action="store_true", help="the 2-core CPU benchmark (--env cpu_benchmark)")
    mode.add_argument("--smoke", action="store_true", help="--env tiny on tiny synthetic data: the code path in seconds")
    mode.add_argument("--env", default=None, help="any configuration environment under conf/")
    ap.add_argument("--params", default=None, help="extra `kedro run --params` overrides, e.g. run.seed=1")
    ap.add_argument("--workspace", type=Path, default=None, help="default: benchmarks/results/<env>")
    ap.add_argument("--fresh", action="store_true", help="delete the workspace first (retrain everything)")
    ap.add_argument("--report-only", action="store_true", help="only print the tables of a finished workspace")
    ap.add_argument("--sequential", action="store_true", help="one `kedro run --env ENV` (default: the two flow "
                    "models side by side, one core each, when there are 2 cores or more)")
    args = ap.parse_args(argv)
    env = "tiny" if args.smoke else args.env or "cpu_benchmark"
    if not (PROJECT_ROOT / "conf" / env).is_dir():
        sys.exit(f"quality_benchmark: no configuration environment conf/{env}")
    workspace = (args.workspace or PROJECT_ROOT / "benchmarks" / "results" / env).resolve()
    minutes = None
    if not args.report_only:
        if args.fresh and workspace.exists():
            shutil.rmtree(workspace)
        if not workspace.exists():
            make_workspace(workspace)
        else:  # the configuration of this checkout, the data and checkpoints of earlier runs
            shutil.rmtree(workspace / "conf")
            shutil.copytree(PROJECT_ROOT / "conf", workspace / "conf", ignore=shutil.ignore_patterns("local"))
            (workspace / "conf" / "local").mkdir()
        params = anchored_paths(env, args.params)
        if args.smoke:
            params = ",".join(filter(None, [f"data_source.path={smoke_data(workspace)}", params]))
        minutes = run_pipelines(workspace, env, params, side_by_side=not args.sequential and os.cpu_count() >= 2)
    metrics, lines = tables(workspace)
    head = (f"quality benchmark: `kedro run --env {env}`{f' --params={args.params}' if args.params else ''} in "
            f"{workspace}" + (f", {minutes:.1f} min" if minutes is not None else ""))
    text = "\n".join([head, "", *lines])
    print("\n" + text, flush=True)
    atomic_write_bytes(workspace / "results.md", (text + "\n").encode())
    atomic_write_bytes(workspace / "results.json", json.dumps({"env": env, "params": args.params, "minutes": minutes,
                                                               "metrics": metrics}, indent=2).encode())


if __name__ == "__main__":
    main()
