"""Where the plateau rule stops each flow model, read off the quality histories that benchmark runs recorded.

    python benchmarks/plateau_rules.py benchmarks/results/cpu_benchmark benchmarks/results/cpu_benchmark_seed1

For each workspace (a finished ``quality_benchmark.py`` run) and each flow model, the step at which
:func:`ledi_kedro.core.trainer.plateau_reached` first holds on the recorded history, for the workspace's own
rule (its ``fm.train`` settings) and for the same rule on running means of other windows (1: the raw values,
the rule before running means). A run stops at its own rule's step, so its history ends there: another rule
that would have gone on is reported as "after step N" (the end of the record).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from ledi_kedro.conf_files import load_parameters
from ledi_kedro.core.trainer import plateau_reached


def stop_step(steps: list[int], values: list[float], patience: int, min_rel: float, window: int) -> str:
    for i in range(1, len(values) + 1):
        if plateau_reached(values[:i], patience, min_rel, window):
            return str(steps[i - 1])
    return f"after {steps[-1]}" if steps else "-"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspaces", nargs="+", type=Path)
    ap.add_argument("--windows", default="1,2,3,4", help="running-mean windows to compare")
    args = ap.parse_args(argv)
    windows = [int(w) for w in args.windows.split(",")]
    print("| run | model | evaluations | " + " | ".join(f"window {w}" for w in windows) + " |")
    print("|---|---|---|" + "---|" * len(windows))
    for ws in args.workspaces:
        run = json.loads((ws / "results.json").read_text())  # written by quality_benchmark.py at the end
        train = load_parameters(ws / "conf", run["env"])["fm"]["train"]
        for model in ("ledi", "gaussian"):
            h = pl.read_parquet(ws / f"data/08_reporting/fm_{model}_quality_history.parquet")
            steps, values = h["step"].to_list(), h["quality"].to_list()
            cells = [stop_step(steps, values, train["plateau_patience"], train["plateau_min_rel_improvement"], w)
                     + (" (its rule)" if w == train["plateau_window"] else "") for w in windows]
            print(f"| {ws.name}{' --params ' + run['params'] if run.get('params') else ''} | {model} | "
                  f"{len(values)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
