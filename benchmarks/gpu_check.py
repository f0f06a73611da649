"""The project's GPU check: one script, a few minutes on one H100/H200, no Kedro, polars or DVC.

    benchmarks/gpu_check.sh                 # on the GPU machine (data in bench_data/, see below)
    benchmarks/gpu_check.sh --smoke         # seconds on a CPU: the same code path, tiny (conf/tiny)

1. Backbone throughput: DiT-S and DiT-B at 256 tokens (32 px, 4 channels, patch 2: a 256-px image
   in an SD-style latent space), bf16, torch.compile off and on: training images/s, TFLOP/s and MFU
   against the card's measured dense bf16 matmul rate, peak memory, sampling images/s.
2. LeDiFlow against the Gaussian baseline on Fashion-MNIST 32 px: the default pipeline's chain
   (:func:`ledi_kedro.steps.chain.run_chain`, the steps `kedro run` runs) on the settings of
   ``conf/gpu_check`` read from the YAML files (``ledi_kedro.conf_files``), then the verdict tables:
   FD per NFE with paired 95% intervals, speedups in NFE and seconds, the latent-sampler table with the
   encoder-code rows, and the memorisation check. Only two paths differ from `kedro run --env gpu_check`:
   the data folder (``--data``) and a temporary checkpoint folder.

Data: the four Fashion-MNIST ``*.gz`` files (about 30 MB) in ``bench_data/`` (git-ignored), e.g.
``mkdir -p bench_data && cp /usr/share/datasets/fashion-mnist/*.gz bench_data/``. Results go to
``--out`` (default ``$OUT`` or ``benchmarks/results``) as ``gpu_check.json`` and ``gpu_check.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

import gpu_benchmark  # beside this script
from ledi_kedro.conf_files import deep_merge, load_parameters  # src/ on PYTHONPATH (gpu_check.sh) or installed
from ledi_kedro.core.data.idx import write_random_fashion_mnist
from ledi_kedro.core.io import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]

FLOW_ENV, SMOKE_ENV = "gpu_check", "tiny"


def chain_parameters(env: str, data: Path, checkpoint_root: Path) -> dict:
    """The parameters `kedro run --env ENV` would read, with the data folder and the checkpoint folder
    replaced (nothing else: the test suite checks it against Kedro's own reader)."""
    params = load_parameters(ROOT / "conf", env)
    return deep_merge(params, {"data_source": {"path": str(data)}, "run": {"checkpoint_root": str(checkpoint_root)}})


def backbone_table(smoke: bool, device: torch.device) -> tuple[list[dict], float]:
    if smoke:
        sizes, res, compiles, batch, steps, mm = ["T"], 8, [False], 8, 2, (256, 5)
    else:
        sizes, res, compiles, batch, steps, mm = ["S", "B"], 32, [False, True], 256, 30, (8192, 50)
    peak = gpu_benchmark.measured_matmul_tflops(device, *mm)
    rows = []
    for size in sizes:
        for comp in compiles:
            start = time.perf_counter()
            row = gpu_benchmark.bench_training(size, res, 4, comp, batch, steps, device, peak)
            s4 = gpu_benchmark.bench_sampling(row.pop("model"), res, 4, 4, batch, device)
            rows.append(row | {"sample_img_s_nfe4": s4, "seconds": time.perf_counter() - start})
            print(f"  DiT-{size} compile {'on' if comp else 'off'}: {row['img_s']:.0f} img/s, "
                  f"{row['tflops']:.1f} TFLOP/s, MFU {100 * row['mfu']:.1f}%", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows, peak


def markdown(card: str, peak: float, rows: list[dict], flow_env: str, quality_lines: list[str], minutes: float) -> str:
    out = [f"GPU check on **{card}** (torch {torch.__version__}), {minutes:.1f} min in all.", "",
           f"Backbone throughput (bf16, 256 tokens, batch {rows[0]['batch'] if rows else '?'}; MFU against the "
           f"measured dense bf16 matmul rate {peak:.0f} TFLOP/s):", "",
           "| model | tokens | compile | train img/s | TFLOP/s | MFU | peak GiB | sample img/s @ NFE 4 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| DiT-{r['size']} | {r['tokens']} | {'on' if r['compile'] else 'off'} | {r['img_s']:.0f} | "
                   f"{r['tflops']:.1f} | {100 * r['mfu']:.1f}% | {r['mem_gib']:.2f} | {r['sample_img_s_nfe4']:.0f} |")
    out += ["", f"LeDiFlow vs Gaussian baseline: the default chain on conf/{flow_env}:", "", *quality_lines, ""]
    return "\n".join(out)


def flow_comparison(env: str, data: Path, progress=print):
    """Part 2: the chain on ``env``'s settings; the verdict lines, a JSON-able summary and the chain's result."""
    from ledi_kedro.steps.chain import run_chain
    from ledi_kedro.steps.evaluation import verdict_lines

    with tempfile.TemporaryDirectory(prefix="gpu_check_ckpt_") as ckpt:
        result = run_chain(chain_parameters(env, data, Path(ckpt)), progress=progress)
    lines = ["Stages (min): " + ", ".join(f"{k} {v:.1f}" for k, v in result.minutes.items()), "",
             *verdict_lines(result.summary.metrics, result.rows, result.latent_rows, result.summary.speedups)]
    rows = [{k: v for k, v in r.items() if not k.endswith("_replicates")} for r in result.rows]
    latent_rows = [{k: v for k, v in r.items() if not k.endswith("_replicates")} for r in result.latent_rows]
    return lines, {"env": env, "minutes": result.minutes, "metrics": result.summary.metrics, "rows": rows,
                   "latent_rows": latent_rows, "speedups": result.summary.speedups}, result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path")
    ap.add_argument("--data", type=Path, default=ROOT / "bench_data", help="folder with the Fashion-MNIST *.gz files")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "benchmarks/results"))
    ap.add_argument("--skip-quality", action="store_true", help="only the backbone table")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run with --smoke for the CPU check of the code path")
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
    print(f"gpu_check on {card}; torch {torch.__version__}", flush=True)
    print("1/2 backbone throughput", flush=True)
    rows, peak = backbone_table(args.smoke, device)
    env = SMOKE_ENV if args.smoke else FLOW_ENV
    quality_lines, quality = [], None
    args.out.mkdir(parents=True, exist_ok=True)
    # Written now too, so that a run cut off in part 2 still leaves the backbone table.
    _write(args.out, card, peak, rows, env, quality_lines, None, (time.perf_counter() - start) / 60)
    if not args.skip_quality:
        print(f"2/2 LeDiFlow vs Gaussian: the default chain on conf/{env}", flush=True)
        if args.smoke:
            data = write_random_fashion_mnist(Path(tempfile.mkdtemp(prefix="gpu_check_data_")), 24, 12)
        elif not any(args.data.glob("*-images-idx3-ubyte.gz")):
            sys.exit(f"gpu_check: no Fashion-MNIST files in {args.data}: copy the four *.gz files there "
                     "(see this script's docstring)")
        else:
            data = args.data.resolve()
        quality_lines, quality, _ = flow_comparison(env, data, progress=lambda m: print(f"  {m}", flush=True))
    md = _write(args.out, card, peak, rows, env, quality_lines, quality, (time.perf_counter() - start) / 60)
    print(md, flush=True)


def _write(out: Path, card: str, peak: float, rows: list[dict], env: str, quality_lines: list[str],
           quality: dict | None, minutes: float) -> str:
    md = markdown(card, peak, rows, env, quality_lines, minutes)
    atomic_write_bytes(out / "gpu_check.md", md.encode())  # rewritten after each part: never half a file
    atomic_write_bytes(out / "gpu_check.json", json.dumps(
        {"card": card, "torch": torch.__version__, "minutes": minutes, "matmul_peak_tflops": peak,
         "backbone": rows, "quality": quality}, indent=2, default=str).encode())
    return md


if __name__ == "__main__":
    main()
