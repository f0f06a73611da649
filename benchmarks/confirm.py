"""A profile's pre-registered confirmation: its declared fresh seeds as DVC experiments on the frozen commit, two at
a time on 2 cores, then the results file and the README's section, both generated from the numbers.

    python benchmarks/confirm.py --profile cpu_benchmark          # run the missing seeds, write the results
    python benchmarks/confirm.py --profile cpu_benchmark --report-only   # the results of the seeds run so far
    python benchmarks/confirm.py --profile cpu_benchmark --readme       # also render them into README.md

The declaration is ``confirmations/<profile>.yml`` (:mod:`ledi_kedro.confirmation`: the primary endpoint, the
secondary points, the fresh seeds, the frozen commit), committed before any confirmation run. The repository
(default ``benchmarks/results/confirm_<profile>``, git-ignored) is a clone of this project at the frozen commit with
the profile's settings committed in its ``conf/local`` (as the ablation's); each seed is
``dvc exp run --queue -n seed-S -S conf/base/parameters.yml:run.seed=S`` and ``dvc queue start --jobs J`` runs them
(J = 2 on 2 cores; each run then gets one core). ``dvc exp show`` in the repository lists them. Every seed moves
everything ``run.seed`` derives (training, the monitors' and choices' sets, the evaluation's sets, sampling,
bootstrap); the judge and the splits are pinned on purpose (``embedder.seed``, ``preprocess.split_seed``).
The results go to ``confirmations/<profile>_results.json``; the README's numbers between its
``<!-- confirmation:<profile>:start/end -->`` markers are :func:`ledi_kedro.confirmation.render` of that file
(tests/test_confirmation.py fails when they differ).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import yaml

from ledi_kedro.confirmation import (
    Declaration, SeedEvaluation, confirm, parse_declaration, render, render_pending, replace_between_markers,
)
from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.workspace import PROJECT_ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import profile_files, sh  # noqa: E402  (sibling scripts, not a package)

DECLARATIONS = PROJECT_ROOT / "confirmations"
METRICS = "data/08_reporting/metrics.json"  # the final evaluation's, on the test split
SWEEP = "data/07_model_output/sweep_results.parquet"
SEED_PARAM = "conf/base/parameters.yml:run.seed"


def declaration(path: Path) -> Declaration:
    if not path.is_file():
        sys.exit(f"confirm: no declaration {path}")
    return parse_declaration(yaml.safe_load(path.read_text()), str(path))


def set_up(repo: Path, decl: Declaration, source: Path) -> None:
    """Clone ``source`` at the frozen commit into ``repo`` and commit the profile's settings in its conf/local."""
    sh(["git", "clone", "--quiet", str(source), str(repo)], source)
    sh(["git", "checkout", "--quiet", "-b", "confirmation", decl.frozen_commit], repo)
    sh(["git", "config", "user.name", "ledi_kedro confirmation"], repo)
    sh(["git", "config", "user.email", "confirmation@localhost"], repo)
    for name, content in profile_files(decl.profile).items():
        text = f"# the {decl.profile} profile (conf/{decl.profile}), written by benchmarks/confirm.py\n"
        (repo / "conf" / "local" / name).write_text(text + yaml.safe_dump(content))
    with (repo / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("/*.log\n/logs/\n")
    sh(["git", "add", "-f", "conf/local"], repo)
    sh(["git", "commit", "-q", "-m", f"confirmation: the {decl.profile} profile in conf/local"], repo)


def finished(repo: Path) -> dict[int, str]:
    """Seed -> the git ref of its finished experiment."""
    out = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo, echo=False)
    refs = {ref.rsplit("/", 1)[-1]: ref for ref in out.split() if ref.count("/") >= 4}
    return {int(name.removeprefix("seed-")): ref for name, ref in refs.items() if name.startswith("seed-")}


def run_seeds(repo: Path, seeds: list[int], jobs: int) -> float:
    """Queue one experiment per seed and run the queue with ``jobs`` workers; minutes."""
    start = time.perf_counter()
    for seed in seeds:
        sh(["dvc", "exp", "run", "--queue", "-n", f"seed-{seed}", "-S", f"{SEED_PARAM}={seed}", "dvc.yaml"], repo)
    sh(["dvc", "queue", "start", "--jobs", str(jobs)], repo)
    while True:
        status = sh(["dvc", "queue", "status"], repo, echo=False)
        if "Failed" in status:
            logs = sh(["dvc", "queue", "logs", _failed(status)], repo, echo=False)
            sh(["dvc", "queue", "stop"], repo, echo=False)
            sys.exit(f"confirm: an experiment failed:\n{status}\n{logs[-4000:]}")
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(10)
    sh(["dvc", "queue", "stop"], repo, echo=False)
    return (time.perf_counter() - start) / 60


def _failed(status: str) -> str:
    return next(line.split()[0] for line in status.splitlines() if "Failed" in line)


def evaluation(repo: Path, seed: int, ref: str) -> SeedEvaluation:
    """One seed's metrics.json (tracked in git) and sweep rows (a DVC output, read from the shared cache)."""
    import dvc.api

    metrics = json.loads(sh(["git", "show", f"{ref}:{METRICS}"], repo, echo=False))
    with dvc.api.open(SWEEP, repo=str(repo), rev=ref, mode="rb") as fh:
        rows = pl.read_parquet(io.BytesIO(fh.read())).to_dicts()
    return SeedEvaluation(seed, metrics, rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", required=True, help="the declaration confirmations/<profile>.yml")
    ap.add_argument("--declarations", type=Path, default=DECLARATIONS, help="the folder of the declarations")
    ap.add_argument("--repo", type=Path, default=None, help="default: benchmarks/results/confirm_<profile>")
    ap.add_argument("--source", type=Path, default=PROJECT_ROOT, help="the git repository holding the frozen commit")
    ap.add_argument("--jobs", type=int, default=2, help="experiments at once (one core each on 2 cores)")
    ap.add_argument("--report-only", action="store_true", help="only the results of the seeds already run")
    ap.add_argument("--readme", type=Path, nargs="?", const=PROJECT_ROOT / "README.md", default=None,
                    help="render the results into this README's markers too")
    args = ap.parse_args(argv)
    path = args.declarations / f"{args.profile}.yml"
    decl = declaration(path)
    if decl.frozen_commit is None and args.readme is not None and not (path.with_name(f"{args.profile}_results.json")
                                                                       .is_file()):
        atomic_write_bytes(args.readme, replace_between_markers(args.readme.read_text(), args.profile,
                                                                render_pending(decl)).encode())
        print(f"confirm: {args.profile} is not frozen yet; wrote its pending note into {args.readme}")
        return
    if decl.frozen_commit is None:
        sys.exit(f"confirm: {path} has no frozen_commit: freeze the code first (commit it, then write its hash into "
                 "the declaration and commit that) so that every seed runs the same code")
    repo = (args.repo or PROJECT_ROOT / "benchmarks" / "results" / f"confirm_{args.profile}").resolve()
    source = args.source.resolve()
    changed = subprocess.run(["git", "diff", "--quiet", decl.frozen_commit, "--", f"conf/{decl.profile}"],
                             cwd=source).returncode
    if changed:  # the profile's settings are written from this checkout: they must be the frozen commit's
        sys.exit(f"confirm: conf/{decl.profile} differs from the frozen commit {decl.frozen_commit[:12]} in {source}")
    venv_bin = Path(sys.executable).parent
    os.environ.update(PYTHONPATH=str(repo / "src"), KEDRO_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
                      PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    os.environ.setdefault("OMP_WAIT_POLICY", "ACTIVE")
    if not args.report_only:
        if not repo.exists():
            set_up(repo, decl, source)
        missing = [s for s in decl.seeds if s not in finished(repo)]
        if missing:
            minutes = run_seeds(repo, missing, args.jobs)
            print(f"confirm: seeds {missing} ran in {minutes:.1f} min", flush=True)
    done = finished(repo)
    if sorted(done) != sorted(decl.seeds) and not set(decl.seeds) <= set(done):
        sys.exit(f"confirm: seeds {sorted(set(decl.seeds) - set(done))} have not run in {repo}")
    results = confirm(decl, [evaluation(repo, s, done[s]) for s in decl.seeds]).to_json()
    out = args.declarations / f"{args.profile}_results.json"
    atomic_write_bytes(out, (json.dumps(results, indent=1) + "\n").encode())
    text = render(results)
    print(text)
    if args.readme is not None:
        atomic_write_bytes(args.readme, replace_between_markers(args.readme.read_text(), args.profile, text).encode())
    print(f"confirm: wrote {out}" + (f" and {args.readme}" if args.readme else ""), flush=True)


if __name__ == "__main__":
    main()
