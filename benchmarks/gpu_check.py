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
   encoder-code rows, and the memorisation check.
3. The same on CIFAR-10 32 px RGB in pixel space (``conf/gpu_check_cifar10``), judged by the pretrained
   CIFAR-10 ResNet-56 (third-party weights: its figures compare across projects that use them).

Only where things are differs from `kedro run --env ENV`: the data (``--data``), the judge's weights file and a
temporary checkpoint folder (the test suite checks this). ``--only fmnist`` (or ``cifar10``) runs one part.

Data, in ``bench_data/`` (git-ignored): the four Fashion-MNIST ``*.gz`` files (about 30 MB), the CIFAR-10 JPEG
archive and the ResNet-56 weights with their license, e.g.
``mkdir -p bench_data && cp /usr/share/datasets/fashion-mnist/*.gz ../shared/datasets/cifar10-jpg.tar.gz
../shared/pretrained/cifar10_resnet56/* bench_data/``. Results go to ``--out`` (default ``$OUT`` or
``benchmarks/results``) as ``gpu_check.json`` and ``gpu_check.md``, rewritten after every part.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import gpu_benchmark  # beside this script
from ledi_kedro.conf_files import deep_merge, load_parameters  # src/ on PYTHONPATH (gpu_check.sh) or installed
from ledi_kedro.core.data.idx import write_random_fashion_mnist
from ledi_kedro.core.io import atomic_write_bytes

ROOT = Path(__file__).resolve().parents[1]

SMOKE_ENV = "tiny"
WEIGHTS_FILE = "resnet56-4bfd9763.th"  # the pretrained CIFAR-10 judge (BSD 2-clause, akamaster/pytorch_resnet_cifar10)


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    env: str  # the configuration environment it runs (conf/<env>)
    data: str  # what to copy into --data: a file or a glob


# Parts 2 and 3: the default chain on these environments' settings.
PARTS = (
    Part("fmnist", "Fashion-MNIST 32 px", "gpu_check", "*-idx?-ubyte.gz"),
    Part("cifar10", "CIFAR-10 32 px RGB (pixel space), judged by the pretrained CIFAR-10 ResNet-56", "gpu_check_cifar10",
         "cifar10-jpg.tar.gz"),
)


def chain_parameters(env: str, data: Path, checkpoint_root: Path, weights: Path | None = None,
                     describe_data: dict | None = None) -> dict:
    """The parameters `kedro run --env ENV` would read, with where things are replaced: the data (``data``), a
    temporary checkpoint folder and the pretrained judge's file (``weights``, when the environment uses one);
    the test suite checks that nothing else differs. ``describe_data`` (--smoke only) says what a synthetic data
    set is (its source kind, channels, judge)."""
    params = load_parameters(ROOT / "conf", env)
    where = {"data_source": {"path": str(data)}, "run": {"checkpoint_root": str(checkpoint_root)}}
    if weights is not None:
        where["embedder"] = {"pretrained_weights": str(weights)}
    return deep_merge(deep_merge(params, describe_data or {}), where)


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


def markdown(card: str, peak: float, rows: list[dict], done: dict, minutes: float) -> str:
    out = [f"GPU check on **{card}** (torch {torch.__version__}), {minutes:.1f} min in all.", "",
           f"Backbone throughput (bf16, 256 tokens, batch {rows[0]['batch'] if rows else '?'}; MFU against the "
           f"measured dense bf16 matmul rate {peak:.0f} TFLOP/s):", "",
           "| model | tokens | compile | train img/s | TFLOP/s | MFU | peak GiB | sample img/s @ NFE 4 |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| DiT-{r['size']} | {r['tokens']} | {'on' if r['compile'] else 'off'} | {r['img_s']:.0f} | "
                   f"{r['tflops']:.1f} | {100 * r['mfu']:.1f}% | {r['mem_gib']:.2f} | {r['sample_img_s_nfe4']:.0f} |")
    for part, env, lines, _ in done.values():
        out += ["", f"LeDiFlow vs Gaussian baseline, {part.title}: the default chain on conf/{env}:", "", *lines]
    return "\n".join(out) + "\n"


def flow_comparison(env: str, data: Path, progress=print, weights: Path | None = None,
                    describe_data: dict | None = None):
    """A quality part: the chain on ``env``'s settings; the verdict lines, a JSON-able summary and the chain's
    result."""
    from ledi_kedro.steps.chain import run_chain
    from ledi_kedro.steps.evaluation import verdict_lines

    with tempfile.TemporaryDirectory(prefix="gpu_check_ckpt_") as ckpt:
        result = run_chain(chain_parameters(env, data, Path(ckpt), weights, describe_data), progress=progress)
    lines = ["Stages (min): " + ", ".join(f"{k} {v:.1f}" for k, v in result.minutes.items()), "",
             *verdict_lines(result.summary.metrics, result.rows, result.latent_rows, result.summary.speedups)]
    rows = [{k: v for k, v in r.items() if not k.endswith("_replicates")} for r in result.rows]
    latent_rows = [{k: v for k, v in r.items() if not k.endswith("_replicates")} for r in result.latent_rows]
    return lines, {"env": env, "minutes": result.minutes, "metrics": result.summary.metrics, "rows": rows,
                   "latent_rows": latent_rows, "speedups": result.summary.speedups}, result


def _smoke_data(part: Part, folder: Path) -> tuple[Path, Path | None, dict | None]:
    """Synthetic data for --smoke: Fashion-MNIST-shaped files, or a folder of random colour images with a
    random ResNet-56 as the judge (conf/tiny's settings)."""
    if part.key == "fmnist":
        return write_random_fashion_mnist(folder, 24, 12), None, None
    from PIL import Image

    from ledi_kedro.core.models.cifar_resnet import CifarResNet

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 12)):
        for i in range(n):
            (folder / split / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / split / f"c{i % 3}" / f"{i}.png")
    torch.manual_seed(0)
    weights = folder / WEIGHTS_FILE
    torch.save({"state_dict": {f"module.{k}": v for k, v in CifarResNet().state_dict().items()}}, weights)
    return folder, weights, {"data_source": {"kind": "image_folder"}, "preprocess": {"image": {"channels": 3}},
                             "embedder": {"kind": "cifar10_resnet56"}}


def _real_data(part: Part, folder: Path) -> tuple[Path, Path | None, None]:
    found = sorted(folder.glob(part.data))
    if not found:
        sys.exit(f"gpu_check: no {part.data} in {folder}: copy it there (see this script's docstring)")
    if part.key == "fmnist":
        return folder.resolve(), None, None
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        sys.exit(f"gpu_check: no {WEIGHTS_FILE} in {folder}: copy ../shared/pretrained/cifar10_resnet56/{WEIGHTS_FILE} "
                 "there (and keep its LICENSE with it)")
    return found[0].resolve(), weights.resolve(), None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path")
    ap.add_argument("--data", type=Path, default=ROOT / "bench_data", help="folder with the data sets (see above)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "benchmarks/results"))
    ap.add_argument("--skip-quality", action="store_true", help="only the backbone table")
    ap.add_argument("--only", default=",".join(p.key for p in PARTS), help="quality parts to run: fmnist,cifar10")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run with --smoke for the CPU check of the code path")
    device = torch.device("cpu" if args.smoke else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke)"
    parts = [] if args.skip_quality else [p for p in PARTS if p.key in args.only.split(",")]
    print(f"gpu_check on {card}; torch {torch.__version__}", flush=True)
    print(f"1/{1 + len(parts)} backbone throughput", flush=True)
    rows, peak = backbone_table(args.smoke, device)
    args.out.mkdir(parents=True, exist_ok=True)
    done: dict[str, tuple[Part, str, list[str], dict]] = {}
    # Written after every part, so that a run cut off later still leaves what is done.
    _write(args.out, card, peak, rows, done, (time.perf_counter() - start) / 60)
    for i, part in enumerate(parts, 2):
        env = SMOKE_ENV if args.smoke else part.env
        print(f"{i}/{1 + len(parts)} LeDiFlow vs Gaussian, {part.title}: the default chain on conf/{env}", flush=True)
        if args.smoke:
            data, weights, describe = _smoke_data(part, Path(tempfile.mkdtemp(prefix=f"gpu_check_{part.key}_")))
        else:
            (data, weights, describe) = _real_data(part, args.data)
        lines, summary, _ = flow_comparison(env, data, lambda m: print(f"  {m}", flush=True), weights, describe)
        done[part.key] = (part, env, lines, summary)
        _write(args.out, card, peak, rows, done, (time.perf_counter() - start) / 60)
    print(markdown(card, peak, rows, done, (time.perf_counter() - start) / 60), flush=True)


def _write(out: Path, card: str, peak: float, rows: list[dict], done: dict, minutes: float) -> None:
    atomic_write_bytes(out / "gpu_check.md", markdown(card, peak, rows, done, minutes).encode())
    atomic_write_bytes(out / "gpu_check.json", json.dumps(
        {"card": card, "torch": torch.__version__, "minutes": minutes, "matmul_peak_tflops": peak,
         "backbone": rows, "quality": {key: summary for key, (_, _, _, summary) in done.items()}},
        indent=2, default=str).encode())


if __name__ == "__main__":
    main()
