"""GPU benchmark of the DiT flow backbone: training and sampling throughput, TFLOP/s and MFU.

    PYTHONPATH=src python benchmarks/gpu_benchmark.py   # on a CUDA machine: sizes S and B, 32 and 64 px
    python benchmarks/gpu_benchmark.py --smoke      # seconds on a CPU: tiny model, same code path

Training rows use the project's real Trainer (AdamW, EMA, bf16 autocast, optional torch.compile)
on the baseline's training objective (``core.objectives.fm_objective`` from N(0, I)) with data held on
the device. MFU = achieved model
FLOP/s / the card's measured dense bf16 matmul rate, with 3x the forward FLOPs per training
image (forward + backward). Needs only torch, timm, einops and numpy.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time


import torch

from ledi_kedro.core.models import DiT, DiTConfig
from ledi_kedro.core.generation import GaussianSource, Generator
from ledi_kedro.core.objectives import fm_objective
from ledi_kedro.core.trainer import TrainConfig, Trainer


def measured_matmul_tflops(device: torch.device, n: int, iters: int) -> float:
    """Dense matmul rate on this device (bf16 on CUDA, fp32 on CPU), in TFLOP/s."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    _sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - start) / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_training(size: str, res: int, channels: int, compile_: bool, batch: int, steps: int,
                   device: torch.device, peak: float) -> dict:
    cfg = DiTConfig(in_channels=channels, resolution=res, patch_size=2, size=size)
    model = DiT(cfg)
    data = {"images": torch.randint(0, 256, (max(4 * batch, 1024), channels, res, res), dtype=torch.uint8)}
    train_cfg = TrainConfig(steps=2 * steps, batch_size=batch, lr=1e-4, warmup_steps=0, log_every=steps,
                            compile=compile_, device=str(device), precision="bf16", checkpoint_every=10**9)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    loss = fm_objective(GaussianSource((channels, res, res), device), "logit_normal")
    result = Trainer(model, loss, data, train_cfg).fit()
    steps_per_s = result.log_history[-1]["steps_per_s"]  # second interval: warm-up and compilation excluded
    img_s = steps_per_s * batch
    tflops = 3 * model.flops_per_image() * img_s / 1e12
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"kind": "train", "size": size, "res": res, "tokens": cfg.tokens, "compile": compile_, "batch": batch,
            "img_s": img_s, "tflops": tflops, "mfu": tflops / peak, "mem_gib": mem, "model": result.ema}


def bench_sampling(model: torch.nn.Module, res: int, channels: int, nfe: int, batch: int, device: torch.device) -> float:
    sampler = Generator(model.to(device).eval(), GaussianSource((channels, res, res), device), precision="bf16")
    sampler.sample(batch, nfe=nfe, solver="euler", seed=0)  # warm-up
    _sync(device)
    start = time.perf_counter()
    sampler.sample(batch, nfe=nfe, solver="euler", seed=1)
    _sync(device)
    return batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path")
    ap.add_argument("--sizes", default="S,B")
    ap.add_argument("--resolutions", default="32,64")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30, help="timed training steps (after as many warm-up steps)")
    ap.add_argument("--compile", default="off,on", help="which compile settings to run: off, on or off,on")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.smoke:
        device, sizes, resolutions, compiles = torch.device("cpu"), ["T"], [8], [False]
        args.batch, args.steps, mm_n, mm_iters = 8, 2, 256, 5
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --smoke for the CPU check")
        device = torch.device("cuda")
        sizes = args.sizes.split(",")
        resolutions = [int(r) for r in args.resolutions.split(",")]
        compiles = [c == "on" for c in args.compile.split(",")]
        mm_n, mm_iters = 8192, 50
        torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = measured_matmul_tflops(device, mm_n, mm_iters)
    print(f"device: {name}; torch {torch.__version__}; measured dense "
          f"{'bf16' if device.type == 'cuda' else 'fp32'} matmul: {peak:.1f} TFLOP/s")
    print(f"{'size':>4} {'res':>4} {'tok':>5} {'compile':>7} {'batch':>5} {'train img/s':>11} {'TFLOP/s':>8} "
          f"{'MFU':>6} {'peak GiB':>8} {'sample img/s @4':>15} {'@32':>8}")
    for size in sizes:
        for res in resolutions:
            for comp in compiles:
                row = bench_training(size, res, args.channels, comp, args.batch, args.steps, device, peak)
                s4 = bench_sampling(row["model"], res, args.channels, 4, args.batch, device)
                s32 = bench_sampling(row["model"], res, args.channels, 32, args.batch, device)
                print(f"{size:>4} {res:>4} {row['tokens']:>5} {'on' if comp else 'off':>7} {args.batch:>5} "
                      f"{row['img_s']:>11.0f} {row['tflops']:>8.1f} {100 * row['mfu']:>5.1f}% "
                      f"{row['mem_gib']:>8.2f} {s4:>15.0f} {s32:>8.0f}")
                del row
                if device.type == "cuda":
                    torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
