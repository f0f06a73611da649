"""Auxiliary prior model: encoder q(z | y) and decoder P_L(x | z) = N(mu(z), diag exp(lv(z))).

Encoder: image y (B, C, H, W) -> (mu_z, logvar_z), each (B, z_dim).
Decoder: z (B, z_dim) -> per-pixel mean (B, C, H, W) and log-variance in [lv_min, lv_max].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import from_data, require_data_fields
from .conv import ConvDecoder, ConvEncoder, levels_to


@dataclass(frozen=True)
class PriorConfig:
    in_channels: int | None = from_data()
    resolution: int | None = from_data()
    z_dim: int = 128
    base_channels: int = 32
    bottleneck: int = 4  # spatial size before the vector latent
    logvar_min: float = -10.0
    logvar_max: float = 2.0

    def __post_init__(self) -> None:
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {self.z_dim}")
        if self.logvar_min >= self.logvar_max:
            raise ValueError(f"logvar_min ({self.logvar_min}) must be below logvar_max ({self.logvar_max})")
        if self.resolution is not None:
            levels_to(self.resolution, self.bottleneck)

    def to_dict(self) -> dict:
        return asdict(self)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """A draw from N(mu, diag exp(logvar)) given standard normal ``eps``: mu + exp(logvar / 2) eps."""
    return mu + torch.exp(0.5 * logvar) * eps


@dataclass
class PriorOutput:
    mu_z: torch.Tensor  # (B, z_dim)
    logvar_z: torch.Tensor  # (B, z_dim)
    z: torch.Tensor  # (B, z_dim) reparameterised sample
    mean: torch.Tensor  # (B, C, H, W)
    logvar: torch.Tensor  # (B, C, H, W)


class PriorModel(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        require_data_fields(config)
        self.config = cfg = config
        levels = levels_to(cfg.resolution, cfg.bottleneck)
        self.encoder = ConvEncoder(cfg.in_channels, cfg.base_channels, levels)
        flat = self.encoder.out_channels * cfg.bottleneck**2
        self.to_z = nn.Linear(flat, 2 * cfg.z_dim)
        self.from_z = nn.Linear(cfg.z_dim, flat)
        self.decoder = ConvDecoder(2 * cfg.in_channels, cfg.base_channels, levels)

    def encode(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.to_z(self.encoder(y).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        h = self.from_z(z).view(z.shape[0], self.decoder.in_channels, cfg.bottleneck, cfg.bottleneck)
        mean, raw = self.decoder(h).chunk(2, dim=1)
        # Soft clamp keeps a gradient everywhere, unlike torch.clamp.
        logvar = cfg.logvar_min + (cfg.logvar_max - cfg.logvar_min) * torch.sigmoid(raw)
        return mean, logvar

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> PriorOutput:
        mu_z, logvar_z = self.encode(y)
        eps = torch.randn(mu_z.shape, generator=generator, device=mu_z.device, dtype=mu_z.dtype)
        z = reparameterize(mu_z, logvar_z, eps)
        mean, logvar = self.decode(z)
        return PriorOutput(mu_z, logvar_z, z, mean, logvar)

    @torch.no_grad()
    def sample_x0(self, z: torch.Tensor, noise_scale: float = 1.0,
                  generator: torch.Generator | None = None, eps: torch.Tensor | None = None) -> torch.Tensor:
        """x0 = mu(z) + s * exp(lv(z) / 2) * eps: a draw from the learned prior P_L(x | z)."""
        return self.sample_x0_and_moments(z, noise_scale, generator, eps)[0]

    @torch.no_grad()
    def sample_x0_and_moments(self, z: torch.Tensor, noise_scale: float = 1.0,
                              generator: torch.Generator | None = None, eps: torch.Tensor | None = None,
                              warmth: torch.Tensor | float | None = None,
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x0 as :meth:`sample_x0` draws it, with the mean mu(z) and log-variance lv(z) it was drawn from. With
        ``warmth`` w (a scalar, or (B,) per sample) sigma is blended toward 1: x0 = mu + s ((1 - w) sigma + w) eps
        (w = 0: the learned prior; w = 1: unit noise around the mean)."""
        mean, logvar = self.decode(z)
        if eps is None:
            eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        sigma = torch.exp(0.5 * logvar)
        if warmth is not None:
            w = torch.as_tensor(warmth, device=mean.device, dtype=sigma.dtype)
            w = w.view(-1, *[1] * (mean.dim() - 1)) if w.dim() else w
            sigma = (1 - w) * sigma + w
        return mean + noise_scale * sigma * eps, mean, logvar
