"""Assemble samplers from trained parts (flow model, prior, latent sampler, autoencoder)."""

from __future__ import annotations

import torch

from .registry import TrainedModel, load_autoencoder
from .sampling import FlowSampler, GaussianSampler, LeDiFlowSampler


def make_sampler(fm: TrainedModel, prior: TrainedModel | None = None, latent_flow: TrainedModel | None = None,
                 autoencoder: TrainedModel | None = None, device: torch.device | str = "cpu",
                 precision: str = "fp32") -> FlowSampler:
    """The right sampler for ``fm``: LeDiFlow when it was trained from the learned prior, else
    the Gaussian baseline. EMA weights are used; latent models decode through the autoencoder."""
    device = torch.device(device)
    if fm.kind != "dit":
        raise ValueError(f"expected a flow model (kind 'dit'), got {fm.kind!r}")
    shape = (fm.config.in_channels, fm.config.resolution, fm.config.resolution)
    ae = load_autoencoder(autoencoder, device) if autoencoder is not None else None
    decode = ae.decode_scaled if ae is not None else None
    flow = fm.inference.to(device).eval()
    if fm.meta.get("prior") == "learned":
        if prior is None or latent_flow is None:
            raise ValueError(f"{fm.meta.get('name', 'flow model')} was trained from the learned prior: "
                             "it needs the prior model and the latent sampler too")
        lf_meta = latent_flow.meta
        return LeDiFlowSampler(flow, prior.inference.to(device), latent_flow.inference.to(device), shape,
                               noise_scale=float(fm.meta.get("prior_noise_scale", 1.0)),
                               latent_steps=int(lf_meta.get("sample_steps", 16)),
                               latent_solver=str(lf_meta.get("sample_solver", "midpoint")),
                               decode=decode, device=device, precision=precision)
    return GaussianSampler(flow, shape, decode=decode, device=device, precision=precision)
