"""Render the run's tables, plots, configuration and provenance into Markdown and HTML."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import yaml


# The training loss curves the report shows, in this order (each a figure named so in build_report's input).
LOSS_CURVES = ("embedder_loss", "prior_loss", "latent_flow_loss", "fm_ledi_loss", "fm_gaussian_loss")


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)  # ("text"|"table"|"image"|"code", payload)


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in sorted order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(root: Path) -> dict[str, Any]:
    """The code (git commit, and whether the working tree had uncommitted changes) and the machine."""
    import torch

    commit = _git(root, "rev-parse", "HEAD")
    dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "git commit": commit or "not a git checkout",
        "working tree": "n/a" if dirty is None else ("dirty (uncommitted changes)" if dirty else "clean"),
        "machine": f"{_cpu_name()}, {os.cpu_count()} CPUs; GPU: {gpu}",
        "software": f"Python {platform.python_version()}, torch {torch.__version__}",
    }


def dvc_lock_hashes(lock: Path) -> dict[str, str]:
    """Output path -> md5 as recorded in dvc.lock (what DVC says the stage that made it produced)."""
    if not lock.is_file():
        return {}
    data = yaml.safe_load(lock.read_text()) or {}
    out = {}
    for stage in (data.get("stages") or {}).values():
        for entry in stage.get("outs", []) or []:
            if "path" in entry and "md5" in entry:
                out[Path(entry["path"]).as_posix()] = entry["md5"]
    return out


def _png(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    buf = io.BytesIO()  # a matplotlib Figure (in-memory runs)
    data.savefig(buf, format="png")
    return buf.getvalue()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(df: pl.DataFrame, columns: list[str]) -> list[list[str]]:
    cols = [c for c in columns if c in df.columns]
    return [cols] + [[_fmt(r[c]) for c in cols] for r in df.iter_rows(named=True)]


def _md(sections: list[Section], title: str) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for kind, payload in s.blocks:
            if kind == "text":
                out += [payload, ""]
            elif kind == "table":
                head, *rows = payload
                out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
            elif kind == "image":  # the PNG beside report.md (the plot datasets write them there), not inline
                caption, (filename, _) = payload
                out += [f"**{caption}**", "", f"![{caption}]({filename})", ""]
            elif kind == "code":
                out += ["```yaml", payload.rstrip(), "```", ""]
    return "\n".join(out)


def _html(sections: list[Section], title: str) -> str:
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
           "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
           "img{max-width:100%}pre{background:#f6f6f6;padding:8px;overflow:auto;font-size:12px}</style>"
           "</head><body>", f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for kind, payload in s.blocks:
            if kind == "text":
                out.append(f"<p>{html.escape(payload)}</p>")
            elif kind == "table":
                head, *rows = payload
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>")
            elif kind == "image":  # inline: report.html is one self-contained file
                caption, (_, png) = payload
                out.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
                           f"{base64.b64encode(png).decode()}'><figcaption>{html.escape(caption)}</figcaption></figure>")
            elif kind == "code":
                out.append(f"<pre>{html.escape(payload)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def _image(caption: str, name: str, figures: dict[str, Any]) -> tuple[str, Any]:
    """An image block: the file ``<name>.png`` beside the report (report.md links it; every plot dataset of the
    catalog writes data/08_reporting/<name>.png) and its bytes (report.html embeds them)."""
    return "image", (caption, (f"{name}.png", _png(figures[name])))


def glance(metrics: dict[str, Any], figures: dict[str, Any]) -> Section:
    """What a reader needs first: whether the evaluation can be trusted, LeDiFlow against the baseline's best in
    one sentence per solver, where each model stopped training, the memorisation check, and the two plots."""
    out = Section("At a glance")
    metric = metrics.get("primary_metric", "fd")
    if not metrics.get("evaluation_reliable", True):
        out.blocks.append(("text", "**EVALUATION UNRELIABLE: the speedups below are not results.** "
                                   + " ".join(f"({i + 1}) {w}." for i, w in
                                              enumerate(metrics.get("evaluation_warnings", [])))))
    lines = []
    for solver, c in metrics.get("solvers", {}).items():
        if "cheapest_beats_best" in c:
            lines.append(f"{solver}: {c['cheapest_beats_best']['text']}.")
        else:
            speed = c["speedup"]
            lines.append(f"{solver}: matched-quality speedup against the baseline at NFE "
                         f"{speed.get('at_reference_nfe', {}).get('text', '-')}; against its best point "
                         f"{speed.get('vs_best_baseline', {}).get('text', '-')}.")
    training = metrics.get("training", {})
    if training:
        lines.append("Training: " + "; ".join(
            f"{name} stopped at step {s.get('steps')} ({'its quality plateau' if s.get('stop_reason') == 'plateau' else 'the step cap, still improving'})"
            for name, s in training.items()) + ".")
    mem = {m: v for m, v in metrics.get("memorisation", {}).items() if isinstance(v, dict)}
    if mem:
        lines.append("Memorisation (share of samples nearer to a training image than 95% of held-out images, against "
                     "the limit a model copying nothing exceeds with probability alpha over its points): " + "; ".join(
                         f"{m} in {space} {100 * e['close_fraction']:.1f}% (limit {100 * e['limit']:.1f}%"
                         f"{', COPIES' if e['copies'] else ''})"
                         for m, by_space in mem.items() for space, e in by_space.items()) + ".")
    choice = metrics.get("latent_sampler", {})
    if "configured" in choice:
        lines.append(f"LeDiFlow's latent sampler: {choice['configured']} ({metric} {_fmt(choice['configured_quality'])} "
                     f"at image NFE {choice['image_nfe']}; best setting {choice['best']}, "
                     f"{_fmt(choice['best_quality'])}; from encoder codes of held-out images "
                     f"{_fmt(choice.get('held_out_codes_quality'))}).")
    out.blocks += [("text", line) for line in lines]
    for name, caption in (("quality_vs_nfe", f"{metric} against NFE (lower is better)"),
                          ("sample_grid", "samples: LeDiFlow and the baseline side by side")):
        if name in figures:
            out.blocks.append(_image(caption, name, figures))
    return out


def _judge_text(m: dict[str, Any]) -> str:
    text = str(m.get("embedder", "?"))
    if "validation_accuracy" in m:
        trained = f" ({m['steps']} training steps)" if "steps" in m else ""
        text += (f", validation accuracy {m['validation_accuracy']:.4f} on {m.get('n_validation')} validation "
                 f"images{trained}")
    if "why" in m:
        text += f". Why this judge: {m['why']}"
    if "note" in m:
        text += f". Note: {m['note']}"
    return text + "."


def build_report(evaluation_metrics: dict, sweep_results: pl.DataFrame, speedup_table: pl.DataFrame,
                 straightness: dict, embedder_metrics: dict, training_metrics: dict[str, dict],
                 figures: dict[str, Any], parameters: dict[str, Any], report: dict,
                 latent_sampler_sweep: pl.DataFrame | None = None) -> tuple[str, str]:
    """Markdown and HTML of the same content; ``report.hash_paths`` lists the data and model files
    whose SHA-256 goes into the provenance section."""
    title = report["title"]
    metric = evaluation_metrics.get("primary_metric", "fd")
    conf = round(100 * evaluation_metrics.get("confidence", 0.95))
    sections: list[Section] = [glance(evaluation_metrics, figures)]
    head = Section("Summary")
    coverage = evaluation_metrics.get("subset_coverage", {})
    ref_cov, rvr_cov = coverage.get("reference", {}), coverage.get("real_vs_real", {})
    head.blocks.append(("text", f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. Space: "
                                f"{parameters.get('run', {}).get('space')}. Quality: {metric} on "
                                f"{sweep_results['embedder'][0] if sweep_results.height else '?'} embeddings "
                                f"({evaluation_metrics.get('n_samples')} generated vs "
                                f"{evaluation_metrics.get('n_reference')} held-out images; lower is better), "
                                f"{conf}% intervals from {evaluation_metrics.get('interval_resamples')} paired "
                                "half-sample replicates. Reference set: a seeded sample of "
                                f"{ref_cov.get('n', '?')} held-out images from {ref_cov.get('n_classes', '?')} classes; "
                                f"real-vs-real floor: {rvr_cov.get('n', '?')} train images from "
                                f"{rvr_cov.get('n_classes', '?')} classes."))
    head.blocks.append(("text", "Judge: " + _judge_text(embedder_metrics)))
    head.blocks.append(("table", _table(speedup_table, ["solver", "reference", "reference_nfe", "reference_quality",
                                                        "matched_nfe", "speedup_text", "wallclock_text", "status"])))
    head.blocks.append(("text", "A speedup reported as '>= x' means LeDiFlow already matched the reference at the "
                                "grid's smallest NFE: only a lower bound. 'not reached' means it never did. The "
                                "wall-clock speedup compares seconds per image at matched quality, LeDiFlow's cost of "
                                "drawing x0 (latent sampler and prior decoder) included and shown separately."))
    solvers = evaluation_metrics.get("solvers", {})
    nfes = sorted({int(n) for c in solvers.values() for n in c["better"]})
    if nfes:
        head.blocks.append(("text", "Better model at each NFE, beyond the noise (paired intervals of the difference; "
                                    "'noise': the difference is within the error bars):"))
        head.blocks.append(("table", [["solver", *map(str, nfes)]]
                            + [[solver, *(c["better"].get(str(n), "") for n in nfes)] for solver, c in solvers.items()]))
    sections.append(head)
    curves = Section("Quality against NFE")
    rows = sweep_results.filter(pl.col("solver") != "none").with_columns(
        (pl.col("seconds_per_image") * 1000).alias("ms_per_image"))
    rows = rows.with_columns((pl.col("x0_seconds_per_image") * 1000).alias("x0_ms_per_image"))
    curves.blocks.append(("table", _table(rows, ["model", "solver", "nfe", "rtol", "latent_nfe", metric, f"{metric}_low",
                                                 f"{metric}_high", f"{metric}_seed_std", "fd", "kid", "mmd",
                                                 "ms_per_image", "x0_ms_per_image", "nn_close_fraction",
                                                 "nn_pixels_close_fraction", "n_samples"])))
    curves.blocks.append(("text", "nn_close_fraction (judge features) and nn_pixels_close_fraction (pixels): the "
                                  "memorisation check, the share of a point's samples nearer to a training image than "
                                  "95% of held-out images are: about 0.05 when nothing is copied, near 1 for copies "
                                  "(real_train, training images themselves, is the positive control)."))
    if latent_sampler_sweep is not None and latent_sampler_sweep.height:
        choice = evaluation_metrics.get("latent_sampler", {})
        curves.blocks.append(("text", "LeDiFlow's start: quality at a few image NFE with the latent sampler's solver "
                                      "and steps varied, and started from encoder codes of training and of held-out "
                                      "images (codes:train, codes:held_out: what a perfect latent sampler would give), "
                                      "against the cost per image (x0: latent sampler + prior decoder). At image NFE "
                                      f"{choice.get('image_nfe', '?')}: shipped {choice.get('configured', '?')}, best "
                                      f"{choice.get('best', '?')}; the cheapest setting within the noise of the best "
                                      "(paired interval of the difference): "
                                      f"{evaluation_metrics.get('wallclock', {}).get('latent_sampler_recommended', '?')}."))
        curves.blocks.append(("table", _table(latent_sampler_sweep, [
            "sample_solver", "sample_steps", "latent_nfe", "configured", "image_solver", "image_nfe", metric,
            f"{metric}_low", f"{metric}_high", "ms_per_image", "x0_ms_per_image", "x0_fraction"])))
    sections.append(curves)
    sanity = Section("Sanity rows and straightness")
    sanity.blocks.append(("text", "real_train: real train images against the held-out reference at the size of a "
                                  "generated point, the best any model can score (the floor); prior_x0: LeDiFlow's "
                                  "learned prior draws alone, no ODE; gaussian_noise: N(0, I), no model at all; "
                                  "reconstructed (latent space only): held-out images encoded and decoded by the "
                                  "autoencoder, the best a latent model can score."))
    sanity.blocks.append(("table", _table(sweep_results.filter(pl.col("solver") == "none"),
                                          ["model", metric, f"{metric}_low", f"{metric}_high", "fd", "kid", "mmd",
                                           "nn_close_fraction", "n_samples", "n_reference"])))
    sanity.blocks.append(("table", [["model", "straightness (mean ||v - (x1 - x0)||^2)"]]
                          + [[k, _fmt(v)] for k, v in straightness.items()]))
    sanity.blocks.append(("text", f"Embedder: {json.dumps(embedder_metrics)}"))
    sections.append(sanity)
    apps = Section("Prior, interpolation, inpainting")
    for name in ("prior_samples", "interpolation", "inpainting"):
        if name in figures:
            apps.blocks.append(_image(name.replace("_", " "), name, figures))
    sections.append(apps)
    train = Section("Training")
    status = evaluation_metrics.get("training", {})
    if status:
        train.blocks.append(("text", "Quality during training and where each flow model stopped: 'plateau' = its "
                                     "quality stopped improving (converged for this budget), 'step_cap' = it ran all "
                                     "its steps while still improving (not converged)."))
        train.blocks.append(("table", [["model", "stopped at", "why", "step cap", "best quality", "monitored as"]]
                             + [[name, _fmt(s.get("steps")), str(s.get("stop_reason", "?")), _fmt(s.get("step_cap")),
                                 _fmt(s.get("best_quality")), str(s.get("monitor", "not monitored"))]
                                for name, s in status.items()]))
    if "training_quality" in figures:
        train.blocks.append(_image("quality vs training step", "training_quality", figures))
    for name, m in training_metrics.items():
        train.blocks.append(("table", [["metric", name]] + [[k, _fmt(v)] for k, v in m.items()]))
    for name in LOSS_CURVES:
        if name in figures:
            train.blocks.append(_image(f"{name.replace('_', ' ')} curve", name, figures))
    sections.append(train)
    config = Section("Configuration")
    config.blocks.append(("code", yaml.safe_dump(parameters, sort_keys=True)))
    sections.append(config)
    prov = Section("Provenance")
    info = provenance(Path.cwd())
    prov.blocks.append(("table", [["what", "value"]] + [[k, str(v)] for k, v in info.items()]))
    locked = dvc_lock_hashes(Path.cwd() / "dvc.lock")
    hashes = [["path", "sha256", "DVC lock hash (md5)"]]
    for p in report["hash_paths"]:
        path = Path(p)
        hashes.append([p, sha256_path(path) if path.exists() else "missing", locked.get(Path(p).as_posix(), "not in dvc.lock")])
    prov.blocks.append(("table", hashes))
    sections.append(prov)
    return _md(sections, title), _html(sections, title)
