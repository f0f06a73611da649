"""How LeDiFlow's quality depends on its latent sampler's training, on the models of a finished benchmark run.

    python benchmarks/latent_sampler_study.py --env cpu_benchmark \\
        --variant latent_flow.train.steps=6000 --variant latent_flow.time_sampler=logit_normal

Reads the trained judge, prior and LeDiFlow flow model of the workspace that ``quality_benchmark.py --env ENV``
filled (``benchmarks/results/<env>``), then for the configured latent sampler and for each variant (dotted
overrides of the ``latent_flow`` section, several per ``--variant`` separated by commas) trains a latent
sampler with the pipeline's own step (:func:`ledi_kedro.steps.training.train_latent_flow`, checkpoints in
``<workspace>/latent_sampler_study/<variant>``) and scores LeDiFlow with it through the evaluation's own
latent-sampler sweep (:func:`ledi_kedro.steps.evaluation.latent_sampler_points`, the settings of the
environment's ``evaluate`` section, scored on the validation split: a choice never reads the test split).
Prints one table
: quality per latent solver x steps and image NFE, with
intervals, and the encoder-code rows, per variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import yaml

from ledi_kedro.conf_files import deep_merge, load_parameters
from ledi_kedro.core.artifacts import load_trained
from ledi_kedro.core.io import atomic_write_bytes
from ledi_kedro.core.metrics.comparison import paired_difference
from ledi_kedro.params import parse
from ledi_kedro.steps import evaluation as ev_steps
from ledi_kedro.steps import training as train_steps
from ledi_kedro.workspace import PROJECT_ROOT

log = logging.getLogger("latent_sampler_study")


def overrides(text: str, sep: str = ",") -> dict:
    """``a.b=1,a.c=x`` -> {"a": {"b": 1, "c": "x"}} (values parsed as YAML)."""
    out: dict = {}
    for item in filter(None, text.split(sep)):
        key, _, value = item.partition("=")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    return out


def _gap(row: dict, base: dict, ev) -> str:
    metric = ev.primary_metric
    iv = paired_difference(base[f"{metric}_replicates"], row[f"{metric}_replicates"], row[metric] - base[metric],
                           ev.bootstrap.confidence)
    return (f"{row[metric] - base[metric]:+.3g} ({iv.low:+.3g} to {iv.high:+.3g}"
            f"{', beyond the noise' if iv.low > 0 or iv.high < 0 else ''})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="cpu_benchmark")
    ap.add_argument("--workspace", type=Path, default=None, help="default: benchmarks/results/<env>")
    ap.add_argument("--variant", action="append", default=[], help="dotted overrides of latent_flow, e.g. "
                    "latent_flow.train.steps=6000,latent_flow.model.hidden=512")
    ap.add_argument("--sweep", default="", help="overrides of evaluate.latent_sweep for a shorter table, e.g. "
                    "'evaluate.latent_sweep.solvers=[midpoint, rk4];evaluate.latent_sweep.steps=[2, 4]' "
                    "(separated by ';')")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    workspace = (args.workspace or PROJECT_ROOT / "benchmarks" / "results" / args.env).resolve()
    models = workspace / "data" / "06_models"
    base = load_parameters(PROJECT_ROOT / "conf", args.env)
    judge, prior, ledi, ae = (load_trained(models / name) for name in ("quality_embedder", "prior", "fm_ledi",
                                                                       "autoencoder"))
    from safetensors.torch import load_file

    def tensors(name: str) -> dict:
        return load_file(str(workspace / "data" / "05_model_input" / f"{name}.safetensors"))

    # A choice, so it reads the validation split (the monitor's block trains, the evaluation's reference is the
    # whole split here); the test split is the evaluation's alone.
    train_input, validation_input = tensors("train_model_input"), tensors("validation_model_input")
    train_images, validation_images = tensors("train_images"), tensors("validation_images")
    codes = tensors("prior_codes")
    ev = parse("evaluate", deep_merge(base, overrides(args.sweep, sep=";"))["evaluate"])
    lines, first, saved = [], None, {}
    for text in ["", *args.variant]:
        params = deep_merge(base, overrides(text))
        for key in params:
            if key != "latent_flow" and params[key] != base[key]:
                raise SystemExit(f"latent_sampler_study: a variant may change latent_flow only, not {key}")
        name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", text) or "configured"
        run = parse("run", deep_merge(params["run"], {"checkpoint_root": str(workspace / "latent_sampler_study" / name)}))
        start = time.perf_counter()
        latent, result = train_steps.train_latent_flow(codes, prior, ae, judge, validation_input,
                                                       parse("latent_flow", params["latent_flow"]), run)
        train_min = (time.perf_counter() - start) / 60
        ref = ev_steps.reference_set(judge, train_images, validation_images, ev, run)
        rows = ev_steps.latent_sampler_points(ledi, prior, latent, ae, judge, train_input, validation_input, ref, ev,
                                              run)
        history = ", ".join(f"{e['step']}: {e['quality']:.3g}" for e in result.eval_history)
        lines += ["", f"## {text or 'as configured'} (trained {result.steps} steps in {train_min:.1f} min, "
                      f"{result.stop_reason}; monitor: {history or 'off'})", "",
                  *ev_steps.latent_sampler_table(rows, ev.primary_metric, ev.bootstrap.confidence)]
        first = first or rows
        if rows is not first:  # every variant is scored on the same seeds and halves: differences are paired
            lines += ["", "Minus the configured latent sampler's training (paired 95% intervals):", ""]
            lines += [f"- {r['sample_solver']} x {r['sample_steps']} @ {r['image_nfe']}: {_gap(r, f, ev)}"
                      for r, f in zip(rows, first) if not str(r["sample_solver"]).startswith("codes:")]
        saved[text or "configured"] = {"steps": result.steps, "stop_reason": result.stop_reason,
                                       "history": result.eval_history, "rows": rows}
        print("\n".join(lines[-20:]), flush=True)
    text = "\n".join([f"latent sampler study on {workspace} (env {args.env})", *lines])
    atomic_write_bytes(workspace / "latent_sampler_study.md", (text + "\n").encode())
    atomic_write_bytes(workspace / "latent_sampler_study.json", json.dumps(saved, indent=1).encode())
    print(text)


if __name__ == "__main__":
    main()
