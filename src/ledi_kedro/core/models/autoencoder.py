"""A small KL autoencoder (image <-> latent grid) for latent-space runs.

encode: (B, C, H, W) -> mean, logvar of shape (B, latent_channels, H / f, W / f), f = 2^levels.
decode: latent -> (B, C, H, W). Latents are multiplied by ``scale`` (set from data at caching
time, so cached latents have unit variance) before the flow models see them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import from_data, require_data_fields
from .conv import ConvDecoder, ConvEncoder


@dataclass(frozen=True)
class AutoencoderConfig:
    in_channels: int | None = from_data()
    latent_channels: int = 4
    base_channels: int = 32
    levels: int = 2  # downsampling factor 2^levels

    def __post_init__(self) -> None:
        if self.levels < 1 or self.latent_channels < 1:
            raise ValueError(f"levels and latent_channels must be positive, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


class ScaledLatents:
    """``encode_scaled`` / ``decode_scaled`` on top of ``encode`` / ``decode`` and a ``scale`` buffer."""

    scale: torch.Tensor

    @torch.no_grad()
    def encode_scaled(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic latents (the posterior mean) times ``scale``."""
        return self.encode(x)[0] * self.scale  # type: ignore[attr-defined]

    @torch.no_grad()
    def decode_scaled(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decode(latent / self.scale)  # type: ignore[attr-defined]


class KLAutoencoder(ScaledLatents, nn.Module):
    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        require_data_fields(config)
        self.config = cfg = config
        self.encoder = ConvEncoder(cfg.in_channels, cfg.base_channels, cfg.levels)
        self.to_moments = nn.Conv2d(self.encoder.out_channels, 2 * cfg.latent_channels, 1)
        self.from_latent = nn.Conv2d(cfg.latent_channels, self.encoder.out_channels, 1)
        self.decoder = ConvDecoder(cfg.in_channels, cfg.base_channels, cfg.levels)
        self.register_buffer("scale", torch.ones(()))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.to_moments(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.from_latent(latent))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        latent = mean + torch.exp(0.5 * logvar) * eps
        return self.decode(latent), mean, logvar
