"""`ledi`: generate images from a trained model without Kedro.

    ledi generate --model data/06_models/generator_ledi --n 64 --nfe 4 --solver midpoint --out grid.png
    ledi interpolate --model data/06_models/generator_ledi --seeds 1 2 --points 8 --out strip.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from .core.data.tensors import image_grid
from .core.io import atomic_path
from .core.solvers import ADAPTIVE_SOLVERS, SOLVERS, steps_for_nfe

EPILOG = """Model folders are those the pipelines write: a generator (data/06_models/generator_ledi,
generator_gaussian: every part in one folder), or a flow model (fm_ledi, fm_gaussian), which also loads its sibling
folders prior/ and latent_flow/ (and autoencoder/ in latent space); --prior, --latent-flow and --autoencoder point
elsewhere."""


def save_grid(images: torch.Tensor, out: Path, nrow: int) -> None:
    """Images in [-1, 1] (N, C, H, W) -> one PNG grid with ``nrow`` images per row, 2 px gaps."""
    img = Image.fromarray(image_grid(images, nrow, pad=2))
    with atomic_path(out, suffix=out.suffix) as tmp:
        img.save(tmp, format="PNG")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path,
                   help="trained generator folder, e.g. data/06_models/generator_ledi (or generator_gaussian), or "
                        "a flow model folder (fm_ledi, fm_gaussian)")
    p.add_argument("--solver", default="midpoint", choices=SOLVERS,
                   help="ODE solver: fixed-grid euler/midpoint/heun/rk4 or adaptive dopri5 (default: midpoint)")
    p.add_argument("--nfe", type=int, default=None,
                   help="function evaluations of the image flow (a multiple of the solver's stages; "
                        "default 4 for fixed-grid solvers; ignored by dopri5)")
    p.add_argument("--rtol", type=float, default=1e-3, help="dopri5 tolerance (default: 1e-3)")
    p.add_argument("--out", type=Path, required=True, help="output PNG grid")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16 autocast on CUDA")
    p.add_argument("--prior", type=Path, default=None, help="prior model folder (default: MODEL/../prior)")
    p.add_argument("--latent-flow", type=Path, default=None,
                   help="latent sampler folder (default: MODEL/../latent_flow)")
    p.add_argument("--autoencoder", type=Path, default=None,
                   help="autoencoder folder for latent-space models (default: MODEL/../autoencoder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ledi", description="Sample from trained LeDiFlow / Gaussian-prior "
                                     "flow models.", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="draw a grid of samples", epilog=EPILOG)
    _common(gen)
    gen.add_argument("--n", type=int, default=64, help="number of images (default: 64)")
    gen.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    gen.add_argument("--nrow", type=int, default=None, help="images per grid row (default: sqrt(n))")
    inter = sub.add_parser("interpolate", help="images along a path between two seeds", epilog=EPILOG)
    _common(inter)
    inter.add_argument("--seeds", type=int, nargs=2, default=(0, 1), metavar=("A", "B"),
                       help="the two end points' seeds (default: 0 1)")
    inter.add_argument("--points", type=int, default=8, help="images along the path (default: 8)")
    inter.add_argument("--space", default="w", choices=["w", "z"],
                       help="LeDiFlow: slerp in the latent sampler's noise w, or lerp in z (default: w)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .api import IncompatibleModelError, ModelNotFoundError, load_generator

    if args.solver in ADAPTIVE_SOLVERS:
        kwargs = {"rtol": args.rtol, "atol": args.rtol}
    else:
        kwargs = {"nfe": args.nfe if args.nfe is not None else 4}
        try:
            steps_for_nfe(args.solver, kwargs["nfe"])
        except ValueError as exc:
            parser.error(f"--nfe: {exc}")
    if args.command == "generate" and args.n < 1:
        parser.error("--n must be positive")
    if args.command == "interpolate" and args.solver in ADAPTIVE_SOLVERS:
        parser.error("interpolate needs a fixed-grid solver (euler, midpoint, heun or rk4)")
    try:
        generator = load_generator(args.model, prior=args.prior, latent_flow=args.latent_flow,
                                   autoencoder=args.autoencoder, device=args.device, precision=args.precision)
    except (ModelNotFoundError, IncompatibleModelError) as exc:
        print(f"ledi: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    if args.command == "generate":
        res = generator.sample(args.n, solver=args.solver, seed=args.seed, **kwargs)
        nrow = args.nrow or max(1, math.isqrt(args.n))
    else:
        res = generator.interpolate(args.seeds[0], args.seeds[1], args.points, solver=args.solver, space=args.space,
                                    **kwargs)
        nrow = args.points
    seconds = time.perf_counter() - start
    save_grid(res.images, args.out, nrow)
    kind = "LeDiFlow" if generator.learned else "Gaussian-prior"
    print(f"{args.out}: {res.images.shape[0]} images from the {kind} model, {args.solver}, image NFE {res.nfe}"
          f"{f' + latent sampler NFE {res.latent_nfe}' if res.latent_nfe else ''}, {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
