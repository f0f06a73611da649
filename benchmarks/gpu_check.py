"""The project's GPU check: one script, about 6 minutes on one H200, no Kedro, polars or DVC.

    benchmarks/gpu_check.sh                 # on the GPU machine (data in bench_data/, see below)
    benchmarks/gpu_check.sh --smoke         # seconds on a CPU: the same code path, tiny

1. Backbone throughput: DiT-S and DiT-B at 256 tokens (32 px, 4 channels, patch 2: a 256-px image
   in an SD-style latent space), bf16, torch.compile off and on: training images/s, TFLOP/s and MFU
   against the card's measured dense bf16 matmul rate, peak memory, sampling images/s.
2. LeDiFlow against the Gaussian baseline on Fashion-MNIST 32 px (a reduced version of
   ``quality_benchmark.py``): judge, prior, latent sampler, both flow models (DiT-XS, patch 2, with
   quality monitored during training and a plateau stop under a step cap), an NFE sweep with paired
   95% intervals and the matched-quality speedup in NFE and seconds.

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
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import gpu_benchmark  # noqa: E402
import quality_benchmark as qb  # noqa: E402
from ledi_kedro.core.io import atomic_write_bytes  # noqa: E402

# Budget of part 2, measured on one H200 (2026-11-27): DiT-XS trains at ~60 steps/s with batch 256 and
# quality monitoring; a 3000-step cap stopped both models before their plateau, a 9000-step cap let the
# plateau rule stop them (LeDiFlow at 4500, the baseline at 7000 steps) within ~2 min each.
GPU_CHECK = replace(qb.GPU, fm_ema=0.995, resolution=32, dit_size="XS", patch=2, batch=256, fm_steps=9000, fm_lr=1e-3,
                    eval_every=500, patience=2, monitor_samples=1000, judge_steps=1500, judge_width=16,
                    prior_steps=1500, prior_width=32, z_dim=64, latent_steps=1500, latent_hidden=256,
                    n_samples=2000, n_reference=5000, nfe_grid=(1, 2, 4, 8, 16, 32, 64), resamples=200)


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


def markdown(card: str, peak: float, rows: list[dict], quality_lines: list[str], minutes: float) -> str:
    out = [f"GPU check on **{card}** (torch {torch.__version__}), {minutes:.1f} min in all.", "",
           f"Backbone throughput (bf16, 256 tokens, batch {rows[0]['batch'] if rows else '?'}; MFU against the "
           f"measured dense bf16 matmul rate {peak:.0f} TFLOP/s):", "",
           "| model | tokens | compile | train img/s | TFLOP/s | MFU | peak GiB | sample img/s @ NFE 4 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| DiT-{r['size']} | {r['tokens']} | {'on' if r['compile'] else 'off'} | {r['img_s']:.0f} | "
                   f"{r['tflops']:.1f} | {100 * r['mfu']:.1f}% | {r['mem_gib']:.2f} | {r['sample_img_s_nfe4']:.0f} |")
    out += ["", "LeDiFlow vs Gaussian baseline, Fashion-MNIST 32 px (reduced):", "", "```", *quality_lines, "```", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path")
    ap.add_argument("--data", type=Path, default=Path("bench_data"))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "benchmarks/results"))
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
    quality_lines, quality = [], None
    args.out.mkdir(parents=True, exist_ok=True)
    # Written now too, so that a run cut off in part 2 still leaves the backbone table.
    _write(args.out, card, peak, rows, quality_lines, None, (time.perf_counter() - start) / 60)
    if not args.skip_quality:
        print("2/2 LeDiFlow vs Gaussian on Fashion-MNIST", flush=True)
        b = qb.SMOKE if args.smoke else GPU_CHECK
        if args.smoke:
            settings = qb.load_settings(argparse.Namespace(only="fmnist"), smoke=True)
        else:
            if not any(args.data.glob("*-images-idx3-ubyte.gz")) and not any(qb.FMNIST_FALLBACK.glob("*.gz")):
                sys.exit(f"gpu_check: no Fashion-MNIST files in {args.data}: copy the four *.gz files there "
                         "(see this script's docstring)")
            settings = qb.load_settings(argparse.Namespace(only="fmnist", data=args.data, resolution=b.resolution),
                                        smoke=False)
        r = qb.run_setting(*settings[0], b, device)
        quality_lines = qb.print_setting(r, b)
        quality = {k: v for k, v in r.items() if k != "rows"} | {
            "rows": [{k: v for k, v in row.items() if k != "replicates"} for row in r["rows"]]}
    md = _write(args.out, card, peak, rows, quality_lines, quality, (time.perf_counter() - start) / 60)
    print(md, flush=True)


def _write(out: Path, card: str, peak: float, rows: list[dict], quality_lines: list[str], quality: dict | None,
           minutes: float) -> str:
    md = markdown(card, peak, rows, quality_lines, minutes)
    atomic_write_bytes(out / "gpu_check.md", md.encode())  # rewritten after each part: never half a file
    atomic_write_bytes(out / "gpu_check.json", json.dumps(
        {"card": card, "torch": torch.__version__, "minutes": minutes, "matmul_peak_tflops": peak,
         "backbone": rows, "quality": quality}, indent=2, default=str).encode())
    return md


if __name__ == "__main__":
    main()
