"""Quality-vs-NFE sweeps for samplers, with timing and embedding-space metrics.

Everything here is plain PyTorch; the ``evaluate`` pipeline wraps it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .metrics import frechet_distance, kid, mmd_rbf
from .distributed import synchronize
from .generation import Generator, integrate_latent
from .solvers import FIXED_SOLVERS, check_solver, stages

Embed = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class QualitySpec:
    """How quality is measured: MMD bandwidth/scale, KID subset size, and the sample count."""

    sigma: float
    scale: float = 1000.0
    kid_subset: int = 1000
    kid_subsets: int = 20


def quality(feats: torch.Tensor, reference: torch.Tensor, spec: QualitySpec) -> dict[str, float]:
    """FD, KID and RBF-MMD of ``feats`` against the reference features, with both sample counts."""
    return {
        "fd": frechet_distance(feats, reference),
        "kid": kid(feats, reference, subsets=spec.kid_subsets, subset_size=spec.kid_subset),
        "mmd": mmd_rbf(feats, reference, sigma=spec.sigma, scale=spec.scale),
        "n_samples": int(feats.shape[0]),
        "n_reference": int(reference.shape[0]),
    }


@dataclass
class Generated:
    features: torch.Tensor
    examples: torch.Tensor  # the first few images, for grids
    nfe: float  # mean image-flow NFE per batch (adaptive solvers vary)
    latent_nfe: float
    seconds_per_image: float  # end to end: x0 (latent sampler, prior decoder), image ODE, decoder
    x0_seconds_per_image: float = 0.0  # of which drawing x0 (LeDiFlow's overhead; ~0 for N(0, I))
    probe_features: torch.Tensor | None = None  # the images in a second feature space (``probe``), if asked


def generate_and_embed(sampler: Generator, embed: Embed, n: int, batch: int, solver: str, *,
                       nfe: int | None = None, rtol: float | None = None, seed: int = 0, keep: int = 16,
                       codes: dict[str, torch.Tensor] | None = None, probe: Embed | None = None) -> Generated:
    """Sample ``n`` images in batches (seeds ``seed``, ``seed + 1``, ...), time them end to end
    (latent sampler, prior, image ODE, decoder) and embed them (and, with ``probe``, map them into a second
    feature space, outside the timing). With ``codes`` (encoder moments ``mu_z``, ``logvar_z`` of at least ``n``
    images; LeDiFlow only) the batches start from those codes instead of the latent sampler's."""
    feats, examples, nfes, latent_nfes, seconds, x0_seconds = [], [], [], [], 0.0, 0.0
    probed: list[torch.Tensor] = []
    kwargs = {"rtol": rtol, "atol": rtol} if solver == "dopri5" else {"nfe": nfe}
    if codes is not None and codes["mu_z"].shape[0] < n:
        raise ValueError(f"{codes['mu_z'].shape[0]} codes for {n} images")
    done, b = 0, 0
    while done < n:
        size = min(batch, n - done)
        synchronize(sampler.device)
        start = time.perf_counter()
        if codes is None:
            res = sampler.sample(size, solver=solver, seed=seed + b, **kwargs)
        else:
            rows = slice(done, done + size)
            res = sampler.sample_from_codes(codes["mu_z"][rows], codes["logvar_z"][rows], solver=solver,
                                            seed=seed + b, **kwargs)
        synchronize(sampler.device)
        seconds += time.perf_counter() - start
        x0_seconds += res.x0_seconds
        images = res.images.float().clamp(-1, 1)
        feats.append(embed(images))
        if probe is not None:
            probed.append(probe(images))
        if sum(e.shape[0] for e in examples) < keep:
            examples.append(images[:keep].cpu())
        nfes.append(res.nfe)
        latent_nfes.append(res.latent_nfe)
        done += size
        b += 1
    return Generated(torch.cat(feats), torch.cat(examples)[:keep], sum(nfes) / len(nfes),
                     sum(latent_nfes) / len(latent_nfes), seconds / n, x0_seconds / n,
                     torch.cat(probed) if probed else None)


@dataclass
class SweepConfig:
    nfe_grid: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    solvers: tuple[str, ...] = ("euler", "midpoint")
    adaptive_rtols: tuple[float, ...] = (1e-2, 1e-3)  # dopri5 rows; empty to skip
    n_samples: int = 1000
    batch_size: int = 250
    seed: int = 0


@dataclass
class SweepResult:
    rows: list[dict] = field(default_factory=list)
    examples: dict[tuple[str, str, float], torch.Tensor] = field(default_factory=dict)
    features: list[torch.Tensor] = field(default_factory=list)  # one per row: the generated images' embeddings
    probe_features: list[torch.Tensor | None] = field(default_factory=list)  # one per row, with a probe


def sweep(samplers: dict[str, Generator], embed: Embed, reference: torch.Tensor, spec: QualitySpec,
          cfg: SweepConfig, progress: Callable[[str], None] | None = None, probe: Embed | None = None) -> SweepResult:
    """Every sampler x solver x NFE (fixed grid, skipping NFE a solver cannot spend exactly),
    plus dopri5 at each tolerance. Rows: model, solver, nfe, nfe_requested, latent_nfe, seed,
    seconds_per_image, x0_seconds_per_image, fd, kid, mmd, n_samples, n_reference; ``features[i]``
    holds row i's embeddings (for error bars), ``probe_features[i]`` its images through ``probe``."""
    out = SweepResult()
    for model, sampler in samplers.items():
        plans: list[tuple[str, int | None, float | None]] = []
        for solver in cfg.solvers:
            if check_solver(solver) in FIXED_SOLVERS:
                plans += [(solver, n, None) for n in cfg.nfe_grid if n % stages(solver) == 0]
        plans += [("dopri5", None, r) for r in cfg.adaptive_rtols]
        for solver, nfe, rtol in plans:
            gen = generate_and_embed(sampler, embed, cfg.n_samples, cfg.batch_size, solver, nfe=nfe, rtol=rtol,
                                     seed=cfg.seed, probe=probe)
            row = {"model": model, "solver": solver, "nfe_requested": nfe, "rtol": rtol, "nfe": gen.nfe,
                   "latent_nfe": gen.latent_nfe, "seed": cfg.seed, "seconds_per_image": gen.seconds_per_image,
                   "x0_seconds_per_image": gen.x0_seconds_per_image}
            row.update(quality(gen.features, reference, spec))
            out.rows.append(row)
            out.features.append(gen.features)
            out.probe_features.append(gen.probe_features)
            out.examples.setdefault((model, solver, gen.nfe), gen.examples)
            if progress is not None:
                progress(f"{model:>8} {solver:>8} NFE {gen.nfe:6.1f} seed {cfg.seed}: FD {row['fd']:.3f}  "
                         f"MMD {row['mmd']:.3f}  {1e3 * gen.seconds_per_image:.2f} ms/image")
    return out


@torch.no_grad()
def prior_only_features(generator: Generator, embed: Embed, n: int, batch: int, seed: int = 0) -> torch.Tensor:
    """Embeddings of LeDiFlow's x0 (the learned prior's draws, no image ODE), decoded if latent; with a warmth
    input, x0 as its one-step samples draw it."""
    feats = []
    for b, start in enumerate(range(0, n, batch)):
        x0 = generator.draw(min(batch, n - start), solver="euler", nfe=1, seed=seed + b).x0
        feats.append(embed(generator.to_images(x0).float().clamp(-1, 1)))
    return torch.cat(feats)


def flow_quality_monitor(samplers_for: Callable[[torch.nn.Module], Sequence[Generator]], embed: Embed,
                         reference_images: torch.Tensor, n_samples: int, nfe: int, solver: str = "midpoint",
                         batch_size: int = 250, seed: int = 0) -> Callable[[torch.nn.Module, int], float]:
    """Quality during training: FD of ``n_samples`` images drawn at a fixed ``nfe`` with fixed seeds
    against the judge's features of ``reference_images`` (embedded once). The same seeds at every
    evaluation make successive values differ by the model's change, not by sampling noise.
    ``samplers_for(ema)`` gives one sampler, or several ways to sample the same weights (a warm model at
    several warmths): the value is the best (lowest) FD among them, the quality the model can deliver."""
    reference = embed(reference_images)

    def evaluate(ema: torch.nn.Module, step: int) -> float:
        samplers = samplers_for(ema)
        if not samplers:
            raise ValueError("flow_quality_monitor: samplers_for returned no sampler")
        return min(frechet_distance(generate_and_embed(sampler, embed, n_samples, min(batch_size, n_samples), solver,
                                                       nfe=nfe, seed=seed).features, reference)
                   for sampler in samplers)

    return evaluate


@dataclass(frozen=True)
class WarmthChoice:
    """The warmth chosen per solver and NFE (``by_solver[solver][nfe]``) and the FD of every warmth tried
    (``fd[solver][nfe][w]``)."""

    by_solver: dict[str, dict[int, float]]
    fd: dict[str, dict[int, dict[float, float]]]


def choose_warmth(sampler_with: Callable[[float], Generator], embed: Embed, reference_images: torch.Tensor,
                  grid: list[float], nfes: list[int], n_samples: int, solvers: Sequence[str],
                  batch_size: int = 250, seed: int = 0) -> WarmthChoice:
    """Warm-Start Diffusion's warmth, chosen per solver and NFE: for each solver and each NFE of ``nfes`` that the
    solver spends exactly, the warmth w in ``grid`` whose ``n_samples`` images (fixed seeds, the same for every
    w) have the lowest FD against ``reference_images``. ``sampler_with(w)`` is the sampler with warmth w at every
    call. A solver chooses for itself because the best w follows the solver's error, not only the NFE (the
    midpoint's choice at NFE 4 made euler at NFE 4 worse than at NFE 2 on CIFAR-10)."""
    spends = {solver: [n for n in nfes if n % stages(solver) == 0] for solver in solvers}
    if not all(spends.values()):
        raise ValueError(f"choose_warmth: each solver needs an NFE it can spend exactly; NFEs {list(nfes)} give "
                         f"{spends}")
    reference = embed(reference_images)
    fd: dict[str, dict[int, dict[float, float]]] = {s: {n: {} for n in spent} for s, spent in spends.items()}
    for w in grid:
        sampler = sampler_with(w)
        for solver, spent in spends.items():
            for nfe in spent:
                gen = generate_and_embed(sampler, embed, n_samples, min(batch_size, n_samples), solver, nfe=nfe,
                                         seed=seed)
                fd[solver][nfe][w] = frechet_distance(gen.features, reference)
    return WarmthChoice({s: {n: min(row, key=row.get) for n, row in by_nfe.items()} for s, by_nfe in fd.items()}, fd)


def latent_quality_monitor(code_images: Callable[[torch.Tensor], torch.Tensor], embed: Embed,
                           reference_codes: dict[str, torch.Tensor], n_samples: int, solver: str, steps: int,
                           batch_size: int = 250, seed: int = 0) -> Callable[[torch.nn.Module, int], float]:
    """Quality of a latent sampler during training, judged through images: FD between the judge's features
    of ``code_images(z)`` (e.g. the prior's mean image mu(z)) for ``n_samples`` codes drawn by the sampler
    (``solver`` x ``steps``, fixed seeds) and for codes z ~ q(z | y) of held-out images
    (``reference_codes``: their encoder moments ``mu_z``, ``logvar_z``; one fixed draw). A perfect latent
    sampler scores about the noise of two samples of one distribution; a distance in z itself does not see
    which errors the decoder and the image flow amplify."""
    mu, logvar = reference_codes["mu_z"], reference_codes["logvar_z"]
    g = torch.Generator().manual_seed(seed)
    z_ref = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g)
    reference = torch.cat([embed(code_images(chunk)) for chunk in z_ref.split(batch_size)])
    z_dim = int(mu.shape[1])

    @torch.no_grad()
    def evaluate(ema: torch.nn.Module, step: int) -> float:
        device = next(ema.parameters()).device
        feats = []
        for b, start in enumerate(range(0, n_samples, batch_size)):
            gen = torch.Generator(device=device).manual_seed(seed + b)
            w = torch.randn((min(batch_size, n_samples - start), z_dim), generator=gen, device=device)
            feats.append(embed(code_images(integrate_latent(ema, w, solver, steps)[0])))
        return frechet_distance(torch.cat(feats), reference)

    return evaluate
