"""One generator for LeDiFlow and the Gaussian-prior baseline: a flow model, the :class:`Source` its ODE starts from,
an optional decoder and warmth table, and one stateless :func:`generate`.

A source draws x0 (and the condition that goes with it) per call, in two kinds:

* :class:`GaussianSource`: x0 ~ N(0, I) (the baseline);
* :class:`LearnedPriorSource`: w ~ N(0, I) -> z by the latent sampler's ODE -> x0 = mu(z) + s exp(lv(z)/2) eps
  (LeDiFlow), with the prior's [mu(z), lv(z)] as the flow's extra input channels when ``prior_channels``, and
  sigma blended toward 1 by a warmth w when the flow model has a warmth input (Warm-Start Diffusion:
  x0 = mu + s ((1 - w) sigma + w) eps, the model told w).

The same source draws the training pairs (:meth:`Source.for_data`: for LeDiFlow, z ~ q(z | y) of the data image y
itself), so one flow-matching objective (:func:`ledi_kedro.core.objectives.fm_objective`) takes any source, as
torchcfm's ``ConditionalFlowMatcher`` takes any x0. The condition travels with each call, as flow_matching's
``ODESolver.sample(..., **model_extras)`` does: nothing is stored between calls.

Shapes: images and x0 are (n, C, H, W) in the flow's space (latents for a latent-space model); z is (n, z_dim).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
from torch import nn

from .distributed import synchronize
from .models import reparameterize
from .solvers import ADAPTIVE_SOLVERS, integrate, stages

Decode = Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------- the warmth
@dataclass(frozen=True)
class WarmthTable:
    """The warmth w a warm flow model samples with, per solver and NFE: ``by_solver[solver]`` is a sorted tuple of
    (nfe, w). A call looks up its solver's table (a solver without one: the last listed solver's) and takes the
    entry of the largest listed NFE <= the call's NFE (the smallest listed one below it; the largest for an adaptive
    solver, which spends an NFE the table cannot know). JSON form: ``{solver: [[nfe, w], ...]}``."""

    by_solver: dict[str, tuple[tuple[int, float], ...]]

    def __post_init__(self) -> None:
        if not self.by_solver or not all(self.by_solver.values()):
            raise ValueError(f"a warmth table needs at least one solver with one (nfe, w) pair, got {self.by_solver}")
        for solver, rows in self.by_solver.items():
            if any(not 0.0 <= w <= 1.0 for _, w in rows):
                raise ValueError(f"warmth table {solver}: warmths must lie in [0, 1], got {list(rows)}")

    @classmethod
    def from_json(cls, raw: dict[str, list[list[float]]]) -> "WarmthTable":
        return cls({solver: tuple(sorted((int(n), float(w)) for n, w in rows)) for solver, rows in raw.items()})

    def to_json(self) -> dict[str, list[list[float]]]:
        return {solver: [[n, w] for n, w in rows] for solver, rows in self.by_solver.items()}

    def lookup(self, solver: str, nfe: int | None) -> float:
        rows = dict(self.by_solver.get(solver) or list(self.by_solver.values())[-1])
        below = [n for n in rows if nfe is None or n <= nfe]
        return rows[max(below) if below else min(rows)]


Warmth = float | WarmthTable | None


def resolve_warmth(warmth: Warmth, solver: str, steps: int | None, nfe: int | None) -> float | None:
    """The warmth of one call: a number as given, a table's entry for the call's solver and NFE, or None."""
    if warmth is None or isinstance(warmth, (int, float)):
        return None if warmth is None else float(warmth)
    if solver in ADAPTIVE_SOLVERS:
        nfe = None
    elif steps is not None:
        nfe = steps * stages(solver)
    return warmth.lookup(solver, nfe)


# ---------------------------------------------------------------- sources
@dataclass
class Draw:
    """Starting points x0 (n, C, H, W), the condition the flow sees with them (the prior's [mu(z), lv(z)], or
    None), the latent codes they came from (LeDiFlow) and the latent sampler's NFE."""

    x0: torch.Tensor
    condition: torch.Tensor | None = None
    z: torch.Tensor | None = None
    latent_nfe: int = 0


class Source(Protocol):
    """Where a flow model's ODE starts."""

    shape: tuple[int, int, int]
    device: torch.device

    def draw(self, n: int, generator: torch.Generator, warmth: float | torch.Tensor | None = None) -> Draw:
        """``n`` starting points for sampling."""

    def for_data(self, batch: dict[str, torch.Tensor], generator: torch.Generator,
                 warmth: torch.Tensor | None = None) -> Draw:
        """The starting points of a training batch's images (``batch["images"]``, and for LeDiFlow their encoder
        moments ``mu_z``, ``logvar_z``)."""

    def inpaint_start(self, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      warmth: float | None = None) -> Draw:
        """Starting points for inpainting ``known`` where ``mask`` is 1."""


def _randn(shape: tuple[int, ...], generator: torch.Generator, device: torch.device,
           dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


@dataclass(frozen=True)
class GaussianSource:
    """The baseline's x0 ~ N(0, I)."""

    shape: tuple[int, int, int]
    device: torch.device

    def draw(self, n: int, generator: torch.Generator, warmth: float | torch.Tensor | None = None) -> Draw:
        return Draw(_randn((n, *self.shape), generator, self.device))

    def for_data(self, batch: dict[str, torch.Tensor], generator: torch.Generator,
                 warmth: torch.Tensor | None = None) -> Draw:
        y = batch["images"]
        return Draw(_randn(tuple(y.shape), generator, y.device, y.dtype))

    def inpaint_start(self, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      warmth: float | None = None) -> Draw:
        return self.draw(known.shape[0], generator)  # nothing better than fresh draws


@dataclass(frozen=True)
class LearnedPriorSource:
    """LeDiFlow's learned prior: the prior model (encoder q(z | y), decoder P_L(x | z)), the latent sampler and its
    ODE setting, the noise scale s and whether the flow sees the prior's moments as input channels. None of these
    has a default here: the project's live in conf/base and travel with the trained models' records."""

    prior: nn.Module
    latent_flow: nn.Module
    noise_scale: float
    prior_channels: bool
    sample_solver: str
    sample_steps: int
    shape: tuple[int, int, int]
    device: torch.device

    @property
    def z_dim(self) -> int:
        return self.prior.config.z_dim

    def with_latent_sampler(self, solver: str, steps: int) -> "LearnedPriorSource":
        """The same prior with the latent sampler integrated by ``solver`` x ``steps``."""
        return dataclasses.replace(self, sample_solver=solver, sample_steps=steps)

    @torch.no_grad()
    def latent_from_w(self, w: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Codes z (n, z_dim) from noise w by the latent sampler's ODE, and its NFE."""
        return integrate_latent(self.latent_flow, w, self.sample_solver, self.sample_steps)

    @torch.no_grad()
    def from_z(self, z: torch.Tensor, eps: torch.Tensor, warmth: float | torch.Tensor | None = None) -> Draw:
        """x0 = mu(z) + s exp(lv(z)/2) eps (sigma blended toward 1 by ``warmth``), with its condition."""
        x0, mean, logvar = self.prior.sample_x0_and_moments(z, self.noise_scale, eps=eps, warmth=warmth)
        return Draw(x0, torch.cat([mean, logvar], dim=1) if self.prior_channels else None, z)

    def draw(self, n: int, generator: torch.Generator, warmth: float | torch.Tensor | None = None) -> Draw:
        w = _randn((n, self.z_dim), generator, self.device)
        eps = _randn((n, *self.shape), generator, self.device)
        z, nfe = self.latent_from_w(w)
        return dataclasses.replace(self.from_z(z, eps, warmth), latent_nfe=nfe)

    @torch.no_grad()
    def from_codes(self, mu_z: torch.Tensor, logvar_z: torch.Tensor, generator: torch.Generator,
                   warmth: float | None = None) -> Draw:
        """Starting points from given encoder moments (n, z_dim) instead of the latent sampler: z ~ q(z | y), then
        x0 from the prior (with the codes of real images: what a perfect latent sampler would give)."""
        mu, logvar = mu_z.to(self.device), logvar_z.to(self.device)
        z = mu + torch.exp(0.5 * logvar) * _randn(tuple(mu.shape), generator, self.device)
        eps = _randn((mu.shape[0], *self.shape), generator, self.device)
        return self.from_z(z, eps, warmth)

    @torch.no_grad()
    def for_data(self, batch: dict[str, torch.Tensor], generator: torch.Generator,
                 warmth: torch.Tensor | None = None) -> Draw:
        mu_z, logvar_z = batch["mu_z"], batch["logvar_z"]
        z = reparameterize(mu_z, logvar_z, _randn(tuple(mu_z.shape), generator, mu_z.device, mu_z.dtype))
        x0, mean, logvar = self.prior.sample_x0_and_moments(z, self.noise_scale, generator=generator, warmth=warmth)
        condition = torch.cat([mean, logvar], dim=1).float() if self.prior_channels else None
        return Draw(x0.float(), condition, z)

    @torch.no_grad()
    def inpaint_start(self, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                      warmth: float | None = None, iterations: int = 2) -> Draw:
        """z from the prior's encoder applied to the known region, the unknown region filled by the decoder's mean
        and re-encoded, so that x0 already agrees with what is known."""
        fill = mask * known
        for _ in range(iterations):
            mu_z, _ = self.prior.encode(fill)
            mean, _ = self.prior.decode(mu_z)
            fill = mask * known + (1 - mask) * mean
        return self.from_z(mu_z, _randn(tuple(known.shape), generator, self.device), warmth)

    @torch.no_grad()
    def prior_mean(self, n: int, seed: int = 0) -> torch.Tensor:
        """mu(z) for latent-sampler draws: the prior's expected image, no noise and no image ODE."""
        w = _randn((n, self.z_dim), _generator(seed, self.device), self.device)
        return self.prior.decode(self.latent_from_w(w)[0])[0]


@torch.no_grad()
def integrate_latent(latent_flow: nn.Module, w: torch.Tensor, solver: str, steps: int) -> tuple[torch.Tensor, int]:
    """Latent codes z from noise w (n, z_dim) by the latent sampler's ODE (t from 0 to 1), and the NFE."""
    sol = integrate(lambda z, t: latent_flow(z, t.expand(z.shape[0])), w, solver=solver, steps=steps)
    return sol.x, sol.nfe


# ---------------------------------------------------------------- generation
@dataclass
class SampleResult:
    images: torch.Tensor  # (n, C, H, W), decoded when the model works in a latent space
    x0: torch.Tensor  # the starting points in the flow's space
    nfe: int  # image-flow evaluations
    latent_nfe: int = 0  # latent-sampler evaluations (LeDiFlow only)
    z: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    x0_seconds: float = 0.0  # wall-clock of drawing x0 (LeDiFlow: latent sampler + prior decoder)


def _generator(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def conditioned(flow: nn.Module, condition: torch.Tensor | None, warmth: Any = None) -> Callable:
    """v(x, t) of ``flow`` with the draw's condition as extra input channels and the warmth as its input (None:
    neither); ``t`` per row, as the flow-matching loss and the ODE solvers (after expanding) pass it."""
    extra = {"warmth": warmth} if warmth is not None else {}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if condition is not None:
            if condition.shape[0] != x.shape[0]:
                raise ValueError(f"condition of {condition.shape[0]} rows for a state of {x.shape[0]}")
            x = torch.cat([x, condition.to(x.dtype)], dim=1)
        return flow(x, t, **extra)

    return velocity


def velocity_field(flow: nn.Module, draw: Draw, warmth: float | None = None, precision: str = "fp32") -> Callable:
    """v(x, t) of the image ODE that starts from ``draw`` (its condition, ``warmth``), ``t`` a scalar tensor."""
    return _ode_velocity(flow, draw, warmth, _autocast(precision, draw.x0.device))


def _ode_velocity(flow: nn.Module, draw: Draw, warmth: float | None, autocast: bool) -> Callable:
    inner = conditioned(flow, draw.condition, warmth)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        # bf16 autocast of the network on CUDA; the ODE state itself stays fp32
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return inner(x, t.expand(x.shape[0])).to(x.dtype)

    return velocity


@torch.no_grad()
def integrate_from(flow: nn.Module, draw: Draw, *, solver: str = "euler", steps: int | None = None,
                   nfe: int | None = None, warmth: float | None = None, precision: str = "fp32",
                   return_trajectory: bool = False, callback=None, **solver_kwargs):
    """The image ODE from a draw's x0 (t from 0 to 1) with its condition and ``warmth``."""
    return integrate(velocity_field(flow, draw, warmth, precision), draw.x0, solver=solver, steps=steps, nfe=nfe,
                     return_trajectory=return_trajectory, callback=callback, **solver_kwargs)


def _autocast(precision: str, device: torch.device) -> bool:
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return precision == "bf16" and device.type == "cuda"


def _decoded(x: torch.Tensor, decode: Decode | None) -> torch.Tensor:
    return decode(x) if decode is not None else x


@torch.no_grad()
def generate(flow: nn.Module, source: Source, n: int, *, solver: str = "euler", nfe: int | None = None,
             steps: int | None = None, seed: int = 0, warmth: Warmth = None, decode: Decode | None = None,
             precision: str = "fp32", return_trajectory: bool = False, **solver_kwargs) -> SampleResult:
    """``n`` images: x0 from ``source`` (seeded by ``seed``: the same seed gives the same images), the image ODE
    with ``solver`` for ``nfe`` evaluations (or ``steps``; adaptive solvers take ``rtol``/``atol``), then
    ``decode``. ``warmth``: a number, a :class:`WarmthTable` (looked up for this solver and NFE) or None (a flow
    model without a warmth input). Nothing is kept between calls."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    w = resolve_warmth(warmth, solver, steps, nfe)
    g = _generator(seed, source.device)
    synchronize(source.device)
    start = time.perf_counter()
    draw = source.draw(n, g, warmth=w)
    synchronize(source.device)
    x0_seconds = time.perf_counter() - start
    sol = integrate_from(flow, draw, solver=solver, steps=steps, nfe=nfe, warmth=w, precision=precision,
                         return_trajectory=return_trajectory, **solver_kwargs)
    return SampleResult(_decoded(sol.x, decode), draw.x0, sol.nfe, draw.latent_nfe, draw.z, sol.trajectory, x0_seconds)


@torch.no_grad()
def inpaint(flow: nn.Module, source: Source, known: torch.Tensor, mask: torch.Tensor, *, solver: str = "euler",
            nfe: int | None = None, steps: int | None = None, seed: int = 0, warmth: Warmth = None,
            decode: Decode | None = None, precision: str = "fp32") -> SampleResult:
    """Fill the unknown region of ``known`` (n, C, H, W, in the flow's space); ``mask`` is 1 where it is known.

    After every solver step the known region is replaced by its point on the straight path (1 - t) x0 + t y, so
    the flow only has to make the unknown region consistent with it."""
    w = resolve_warmth(warmth, solver, steps, nfe)
    known = known.to(source.device)
    mask = mask.to(source.device, known.dtype).expand_as(known)
    draw = source.inpaint_start(known, mask, _generator(seed, source.device), w)

    def keep_known(x: torch.Tensor, t: float) -> torch.Tensor:
        return mask * ((1 - t) * draw.x0 + t * known) + (1 - mask) * x

    sol = integrate_from(flow, draw, solver=solver, steps=steps, nfe=nfe, warmth=w, precision=precision,
                         callback=keep_known)
    x = mask * known + (1 - mask) * sol.x
    return SampleResult(_decoded(x, decode), draw.x0, sol.nfe, draw.latent_nfe, draw.z)


def slerp(a: torch.Tensor, b: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation per row (keeps the norm typical of Gaussian samples)."""
    a_flat, b_flat = a.flatten(1), b.flatten(1)
    cos = (a_flat * b_flat).sum(1) / (a_flat.norm(dim=1) * b_flat.norm(dim=1)).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    alpha = alpha.to(a.dtype)
    lin = (1 - alpha)[:, None] * a_flat + alpha[:, None] * b_flat
    sph = (torch.sin((1 - alpha)[:, None] * omega[:, None]) * a_flat
           + torch.sin(alpha[:, None] * omega[:, None]) * b_flat) / so.clamp_min(1e-12)[:, None]
    out = torch.where((so.abs() < 1e-6)[:, None], lin, sph)
    return out.view_as(a)


@torch.no_grad()
def interpolate(flow: nn.Module, source: Source, seed_a: int, seed_b: int, n_points: int = 8, *,
                space: str = "w", solver: str = "euler", nfe: int | None = None, steps: int | None = None,
                warmth: Warmth = None, decode: Decode | None = None, precision: str = "fp32",
                noise_seed: int = 0) -> SampleResult:
    """Images between two seeds' draws. The baseline: slerp of its noises. LeDiFlow: slerp in w (then the latent
    sampler, ``space="w"``) or lerp in z (``space="z"``), with the pixel noise eps of ``noise_seed`` shared by
    every point, so that only the semantic code changes."""
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    w = resolve_warmth(warmth, solver, steps, nfe)
    device = source.device
    alpha = torch.linspace(0, 1, n_points, device=device)
    if isinstance(source, LearnedPriorSource):
        ws = [_randn((1, source.z_dim), _generator(s, device), device) for s in (seed_a, seed_b)]
        if space == "w":
            z, latent_nfe = source.latent_from_w(slerp(ws[0].expand(n_points, -1), ws[1].expand(n_points, -1), alpha))
        else:
            (za, na), (zb, nb) = source.latent_from_w(ws[0]), source.latent_from_w(ws[1])
            z, latent_nfe = torch.lerp(za, zb, alpha[:, None]), na + nb
        eps = _randn((1, *source.shape), _generator(noise_seed, device), device)
        draw = dataclasses.replace(source.from_z(z, eps.expand(n_points, *source.shape), w), latent_nfe=latent_nfe)
    else:
        a, b = (source.draw(1, _generator(s, device)).x0 for s in (seed_a, seed_b))
        draw = Draw(slerp(a.expand(n_points, *a.shape[1:]), b.expand(n_points, *b.shape[1:]), alpha))
    sol = integrate_from(flow, draw, solver=solver, steps=steps, nfe=nfe, warmth=w, precision=precision)
    return SampleResult(_decoded(sol.x, decode), draw.x0, sol.nfe, draw.latent_nfe, draw.z)


@dataclass(frozen=True)
class Generator:
    """One trained generator: its flow model, its source, its decoder (latent space) and its warmth table (a warm
    LeDiFlow model). Immutable; every method is one call of the stateless functions above."""

    flow: nn.Module
    source: Source
    decode: Decode | None = None
    warmth: Warmth = None  # a table (per solver and NFE), one fixed number, or None (no warmth input)
    precision: str = "fp32"
    name: str = ""

    def __post_init__(self) -> None:
        _autocast(self.precision, self.source.device)  # an unknown precision fails here, not at the first call

    @property
    def device(self) -> torch.device:
        return self.source.device

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.source.shape

    @property
    def learned(self) -> bool:
        return isinstance(self.source, LearnedPriorSource)

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Points of the flow's space as images: decoded through the autoencoder for latent models."""
        return _decoded(x, self.decode)

    def with_source(self, source: Source) -> "Generator":
        return dataclasses.replace(self, source=source)

    def with_warmth(self, warmth: Warmth) -> "Generator":
        return dataclasses.replace(self, warmth=warmth)

    def sample(self, n: int, *, solver: str = "euler", nfe: int | None = None, steps: int | None = None,
               seed: int = 0, warmth: Warmth = None, **kwargs) -> SampleResult:
        """:func:`generate` with this generator's parts (``warmth``: overrides its table, e.g. a fixed number)."""
        return generate(self.flow, self.source, n, solver=solver, nfe=nfe, steps=steps, seed=seed,
                        warmth=self.warmth if warmth is None else warmth, decode=self.decode,
                        precision=self.precision, **kwargs)

    def sample_from_codes(self, mu_z: torch.Tensor, logvar_z: torch.Tensor, *, solver: str = "euler",
                          nfe: int | None = None, steps: int | None = None, seed: int = 0) -> SampleResult:
        """LeDiFlow started from given encoder moments instead of its latent sampler (the evaluation's
        diagnostic rows: with real images' codes, what a perfect latent sampler would give)."""
        if not self.learned:
            raise ValueError(f"{self.name or 'this generator'} has no learned prior to start from codes")
        w = resolve_warmth(self.warmth, solver, steps, nfe)
        draw = self.source.from_codes(mu_z, logvar_z, _generator(seed, self.device), w)
        sol = integrate_from(self.flow, draw, solver=solver, steps=steps, nfe=nfe, warmth=w, precision=self.precision)
        return SampleResult(self.to_images(sol.x), draw.x0, sol.nfe, 0, draw.z)

    def warmth_for(self, solver: str, *, nfe: int | None = None, steps: int | None = None) -> float | None:
        """The warmth a call with this solver and budget samples with (None: no warmth input)."""
        return resolve_warmth(self.warmth, solver, steps, nfe)

    def draw(self, n: int, *, solver: str, nfe: int | None = None, steps: int | None = None, seed: int = 0) -> Draw:
        """The x0 a call with this solver and budget starts from (its warmth included), without the image ODE."""
        return self.source.draw(n, _generator(seed, self.device), warmth=self.warmth_for(solver, nfe=nfe, steps=steps))

    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, **kwargs) -> SampleResult:
        return inpaint(self.flow, self.source, known, mask, warmth=kwargs.pop("warmth", self.warmth),
                       decode=self.decode, precision=self.precision, **kwargs)

    def interpolate(self, seed_a: int, seed_b: int, n_points: int = 8, **kwargs) -> SampleResult:
        return interpolate(self.flow, self.source, seed_a, seed_b, n_points, warmth=kwargs.pop("warmth", self.warmth),
                           decode=self.decode, precision=self.precision, **kwargs)

    def prior_mean(self, n: int, seed: int = 0) -> torch.Tensor:
        if not self.learned:
            raise ValueError(f"{self.name or 'this generator'} has no learned prior")
        return self.source.prior_mean(n, seed)
