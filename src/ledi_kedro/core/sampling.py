"""Samplers: one interface for LeDiFlow (learned prior) and the Gaussian-prior baseline.

``sampler.sample(n, steps=... | nfe=..., solver=..., seed=...)`` returns a :class:`SampleResult`:
images in the model's space (decoded through the autoencoder for latent-space models), the
starting points x0 (``draw_x0``), and the NFE spent, split into the image flow (``nfe``) and
LeDiFlow's overhead (``latent_nfe``: the latent sampler).

LeDiFlow: w ~ N(0, I) -> z by the latent flow ODE -> x0 = mu(z) + s exp(lv(z)/2) eps -> image ODE.
Baseline: x0 ~ N(0, I) -> image ODE.
A LeDiFlow model trained with a warmth input (Warm-Start Diffusion) draws x0 = mu + s ((1 - w) sigma + w) eps
and is told w, with w looked up by the solver and NFE of the call (``warmth_by_solver``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .distributed import synchronize
from .solvers import ADAPTIVE_SOLVERS, integrate, stages

Decode = Callable[[torch.Tensor], torch.Tensor]


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
def integrate_latent(latent_flow: nn.Module, w: torch.Tensor, solver: str = "midpoint",
                     steps: int = 2) -> tuple[torch.Tensor, int]:
    """Latent codes z from noise w (n, z_dim) by the latent sampler's ODE (t from 0 to 1), and the NFE."""
    sol = integrate(lambda z, t: latent_flow(z, t.expand(z.shape[0])), w, solver=solver, steps=steps)
    return sol.x, sol.nfe


class FlowSampler:
    """Shared machinery: integrate the image flow from given x0, optional decode."""

    def __init__(self, flow: nn.Module, shape: tuple[int, int, int], decode: Decode | None = None,
                 device: torch.device | str | None = None, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self.flow = flow.eval()
        self.shape = tuple(shape)
        self.decode = decode
        self.device = torch.device(device) if device is not None else next(flow.parameters()).device
        # bf16 autocast of the network on CUDA; the ODE state itself stays fp32.
        self.autocast = precision == "bf16" and self.device.type == "cuda"

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, **conditioning) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            return self.flow(x, t.expand(x.shape[0]), **conditioning).to(x.dtype)

    def prepare(self, solver: str, steps: int | None = None, nfe: int | None = None) -> None:
        """Set up a call with this solver and budget before x0 is drawn (LeDiFlow looks up its warmth here).
        Every sampling method calls it; code that calls :meth:`draw_x0` and :meth:`flow_from` itself calls it
        first."""

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """Points of the flow's space as images: decoded through the autoencoder for latent models."""
        return self.decode(x) if self.decode is not None else x

    @torch.no_grad()
    def flow_from(self, x0: torch.Tensor, *, steps: int | None = None, nfe: int | None = None,
                  solver: str = "euler", return_trajectory: bool = False, callback=None, **solver_kwargs):
        return integrate(self._velocity, x0, solver=solver, steps=steps, nfe=nfe,
                         return_trajectory=return_trajectory, callback=callback, **solver_kwargs)

    def draw_x0(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """``n`` starting points x0, the latent codes they came from (LeDiFlow) and the latent NFE spent."""
        raise NotImplementedError

    def _inpaint_x0(self, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """Starting points for inpainting; the baseline has nothing better than fresh draws."""
        return self.draw_x0(known.shape[0], generator)

    @torch.no_grad()
    def sample(self, n: int, *, steps: int | None = None, nfe: int | None = None, solver: str = "euler",
               seed: int = 0, return_trajectory: bool = False, **solver_kwargs) -> SampleResult:
        """Draw ``n`` images; the same seed gives the same images."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}")
        self.prepare(solver, steps, nfe)
        g = _generator(seed, self.device)
        synchronize(self.device)
        start = time.perf_counter()
        x0, z, latent_nfe = self.draw_x0(n, g)
        synchronize(self.device)
        x0_seconds = time.perf_counter() - start
        sol = self.flow_from(x0, steps=steps, nfe=nfe, solver=solver, return_trajectory=return_trajectory,
                             **solver_kwargs)
        return SampleResult(self.to_images(sol.x), x0, sol.nfe, latent_nfe, z, sol.trajectory, x0_seconds)

    @torch.no_grad()
    def inpaint(self, known: torch.Tensor, mask: torch.Tensor, *, steps: int | None = None,
                nfe: int | None = None, solver: str = "euler", seed: int = 0) -> SampleResult:
        """Fill the unknown region of ``known`` (n, C, H, W); ``mask`` is 1 where pixels are known.

        After every solver step the known region is replaced by its point on the straight path
        (1 - t) x0 + t y, so the flow only has to make the unknown region consistent with it.
        Works in the flow's own space (use an autoencoder's latents for latent models).
        """
        self.prepare(solver, steps, nfe)
        known = known.to(self.device)
        mask = mask.to(self.device, known.dtype).expand_as(known)
        g = _generator(seed, self.device)
        x0, z, latent_nfe = self._inpaint_x0(known, mask, g)

        def keep_known(x: torch.Tensor, t: float) -> torch.Tensor:
            return mask * ((1 - t) * x0 + t * known) + (1 - mask) * x

        sol = self.flow_from(x0, steps=steps, nfe=nfe, solver=solver, callback=keep_known)
        x = mask * known + (1 - mask) * sol.x
        return SampleResult(self.to_images(x), x0, sol.nfe, latent_nfe, z)


class GaussianSampler(FlowSampler):
    """Baseline: x0 ~ N(0, I)."""

    def draw_x0(self, n: int, generator: torch.Generator):
        return torch.randn((n, *self.shape), generator=generator, device=self.device), None, 0

    @torch.no_grad()
    def interpolate(self, seed_a: int, seed_b: int, n_points: int = 8, *, steps: int | None = None,
                    nfe: int | None = None, solver: str = "euler") -> SampleResult:
        """Images along the slerp between the noises of two seeds (end points = those seeds' samples)."""
        a, _, _ = self.draw_x0(1, _generator(seed_a, self.device))
        b, _, _ = self.draw_x0(1, _generator(seed_b, self.device))
        alpha = torch.linspace(0, 1, n_points, device=self.device)
        x0 = slerp(a.expand(n_points, *a.shape[1:]), b.expand(n_points, *b.shape[1:]), alpha)
        sol = self.flow_from(x0, steps=steps, nfe=nfe, solver=solver)
        return SampleResult(self.to_images(sol.x), x0, sol.nfe)


class LeDiFlowSampler(FlowSampler):
    """Learned prior: latent flow -> prior decoder -> image flow."""

    def __init__(self, flow: nn.Module, prior_model: nn.Module, latent_flow: nn.Module,
                 shape: tuple[int, int, int], *, prior_noise_scale: float, prior_channels: bool,
                 warmth_by_solver: dict[str, dict[int, float]] | None, sample_steps: int, sample_solver: str,
                 decode: Decode | None = None, device: torch.device | str | None = None, precision: str = "fp32"):
        """``prior_noise_scale`` (s in x0 = mu(z) + s exp(lv(z)/2) eps), ``prior_channels`` (the flow also sees
        mu(z) and lv(z) of its x0 as input channels), ``warmth_by_solver`` (solver -> NFE -> warmth w for a flow
        model with a warmth input, see :meth:`warmth_for`; None for the others), ``sample_solver`` and
        ``sample_steps`` (the latent sampler's ODE) have no defaults here and carry their YAML names: the project's
        live in conf/base (``fm.prior_noise_scale``, ``fm.prior_channels``, ``fm.warmth``,
        ``latent_flow.sample_solver`` and ``sample_steps``) and travel with the trained models' records
        (:func:`ledi_kedro.core.artifacts.make_sampler`)."""
        super().__init__(flow, shape, decode, device, precision)
        self.prior_model = prior_model.eval()
        self.latent_flow = latent_flow.eval()
        self.prior_noise_scale = prior_noise_scale
        self.prior_channels = prior_channels
        if warmth_by_solver is not None and (not warmth_by_solver or not all(warmth_by_solver.values())):
            raise ValueError("warmth_by_solver: give at least one solver with at least one NFE -> warmth pair, or "
                             f"None for no warmth input; got {warmth_by_solver}")
        self.warmth_by_solver = ({solver: dict(sorted(table.items())) for solver, table in warmth_by_solver.items()}
                                 if warmth_by_solver is not None else None)
        self._warmth: float | None = None  # the warmth of the call in progress (see prepare)
        self._condition: torch.Tensor | None = None  # [mu(z), lv(z)] of the x0 being integrated (prior_channels)
        self.sample_steps, self.sample_solver = sample_steps, sample_solver
        self.z_dim = prior_model.config.z_dim

    @torch.no_grad()
    def latent_from_w(self, w: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Latent codes z from noise w (n, z_dim) through the latent sampler, and the NFE spent."""
        return integrate_latent(self.latent_flow, w, self.sample_solver, self.sample_steps)

    @torch.no_grad()
    def x0_from_z(self, z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x0 = mu(z) + s exp(lv(z)/2) eps. With ``prior_channels`` it also keeps [mu(z), lv(z)] for the image
        ODE that starts from this x0 (every path to the ODE draws its x0 here)."""
        x0, mean, logvar = self.prior_model.sample_x0_and_moments(z, self.prior_noise_scale, eps=eps,
                                                                  warmth=self._warmth)
        if self.prior_channels:
            self._condition = torch.cat([mean, logvar], dim=1)
        return x0

    def warmth_for(self, solver: str, nfe: int | None) -> float | None:
        """The warmth for a call with ``solver`` that spends ``nfe`` image-flow evaluations (None: adaptive), from
        the solver's table (a solver without one: the table of the last solver listed): the entry of the largest
        listed NFE <= ``nfe`` (the smallest listed below it; the largest for an adaptive solver). None for a flow
        model without a warmth input."""
        if self.warmth_by_solver is None:
            return None
        table = self.warmth_by_solver.get(solver) or list(self.warmth_by_solver.values())[-1]
        below = [n for n in table if nfe is None or n <= nfe]
        return table[max(below) if below else min(table)]

    def prepare(self, solver: str, steps: int | None = None, nfe: int | None = None) -> None:
        if solver in ADAPTIVE_SOLVERS:
            nfe = None
        elif steps is not None:
            nfe = steps * stages(solver)
        self._warmth = self.warmth_for(solver, nfe)

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, **conditioning) -> torch.Tensor:
        if self._warmth is not None:
            conditioning["warmth"] = self._warmth
        if self.prior_channels:
            if self._condition is None or self._condition.shape[0] != x.shape[0]:
                raise RuntimeError("prior_channels: the image ODE must start from an x0 drawn by x0_from_z")
            x = torch.cat([x, self._condition.to(x.dtype)], dim=1)
        return super()._velocity(x, t, **conditioning)

    def draw_x0(self, n: int, generator: torch.Generator):
        w = torch.randn((n, self.z_dim), generator=generator, device=self.device)
        eps = torch.randn((n, *self.shape), generator=generator, device=self.device)
        z, nfe = self.latent_from_w(w)
        return self.x0_from_z(z, eps), z, nfe

    @torch.no_grad()
    def _inpaint_x0(self, known: torch.Tensor, mask: torch.Tensor, generator: torch.Generator,
                    iterations: int = 2):
        """z from the prior's encoder applied to the known region, with the unknown region filled by
        the decoder's mean and re-encoded, so that x0 already agrees with what is known."""
        fill = mask * known
        for _ in range(iterations):
            mu_z, _ = self.prior_model.encode(fill)
            mean, _ = self.prior_model.decode(mu_z)
            fill = mask * known + (1 - mask) * mean
        eps = torch.randn(known.shape, generator=generator, device=self.device)
        return self.x0_from_z(mu_z, eps), mu_z, 0

    @torch.no_grad()
    def sample_from_codes(self, mu_z: torch.Tensor, logvar_z: torch.Tensor, *, steps: int | None = None,
                          nfe: int | None = None, solver: str = "euler", seed: int = 0) -> SampleResult:
        """LeDiFlow started from given encoder moments (n, z_dim) instead of the latent sampler: z ~ q(z | y)
        = mu_z + exp(logvar_z / 2) eps_z, then x0 from the prior and the image ODE. With the codes of real
        images this is what a perfect latent sampler would give (the evaluation's diagnostic rows)."""
        self.prepare(solver, steps, nfe)
        g = _generator(seed, self.device)
        mu, logvar = mu_z.to(self.device), logvar_z.to(self.device)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, device=self.device)
        eps = torch.randn((mu.shape[0], *self.shape), generator=g, device=self.device)
        x0 = self.x0_from_z(z, eps)
        sol = self.flow_from(x0, steps=steps, nfe=nfe, solver=solver)
        return SampleResult(self.to_images(sol.x), x0, sol.nfe, 0, z)

    @torch.no_grad()
    def prior_mean(self, n: int, seed: int = 0) -> torch.Tensor:
        """mu(z) for latent-sampler draws: the prior's expected image, no noise and no image ODE."""
        w = torch.randn((n, self.z_dim), generator=_generator(seed, self.device), device=self.device)
        z, _ = self.latent_from_w(w)
        return self.prior_model.decode(z)[0]

    @torch.no_grad()
    def interpolate(self, seed_a: int, seed_b: int, n_points: int = 8, *, space: str = "w",
                    steps: int | None = None, nfe: int | None = None, solver: str = "euler",
                    noise_seed: int = 0) -> SampleResult:
        """Images between two seeds' latents: slerp in w (then the latent flow) or lerp in z.

        The pixel noise eps is shared by every point, so only the semantic code changes.
        """
        if space not in ("w", "z"):
            raise ValueError(f"space must be 'w' or 'z', got {space!r}")
        self.prepare(solver, steps, nfe)
        ws = [torch.randn((1, self.z_dim), generator=_generator(s, self.device), device=self.device)
              for s in (seed_a, seed_b)]
        alpha = torch.linspace(0, 1, n_points, device=self.device)
        if space == "w":
            z, latent_nfe = self.latent_from_w(slerp(ws[0].expand(n_points, -1), ws[1].expand(n_points, -1), alpha))
        else:
            (za, na), (zb, nb) = self.latent_from_w(ws[0]), self.latent_from_w(ws[1])
            z, latent_nfe = torch.lerp(za, zb, alpha[:, None]), na + nb
        eps = torch.randn((1, *self.shape), generator=_generator(noise_seed, self.device), device=self.device)
        x0 = self.x0_from_z(z, eps.expand(n_points, *self.shape))
        sol = self.flow_from(x0, steps=steps, nfe=nfe, solver=solver)
        return SampleResult(self.to_images(sol.x), x0, sol.nfe, latent_nfe, z)
