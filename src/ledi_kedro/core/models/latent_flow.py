"""Latent sampler: a residual-MLP velocity model in the prior's z-space (w ~ N(0, I) -> z)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import from_data, require_data_fields
from .embeddings import TimestepEmbedder, as_batch_time


@dataclass(frozen=True)
class LatentFlowConfig:
    z_dim: int | None = from_data()  # the prior's latent size
    hidden: int = 512
    depth: int = 4

    def __post_init__(self) -> None:
        if min(self.z_dim or 1, self.hidden, self.depth) < 1:
            raise ValueError(f"z_dim, hidden and depth must be positive, got {self}")

    def to_dict(self) -> dict:
        return asdict(self)


class _ResBlock(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mod = nn.Linear(hidden, 2 * hidden)  # time-dependent scale and shift
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.mod(c).chunk(2, dim=1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class LatentFlow(nn.Module):
    """``forward(z (B, z_dim), t) -> velocity (B, z_dim)``."""

    def __init__(self, config: LatentFlowConfig):
        super().__init__()
        require_data_fields(config)
        self.config = cfg = config
        self.inp = nn.Linear(cfg.z_dim, cfg.hidden)
        self.t_embed = TimestepEmbedder(cfg.hidden)
        self.blocks = nn.ModuleList(_ResBlock(cfg.hidden) for _ in range(cfg.depth))
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.Linear(cfg.hidden, cfg.z_dim))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        c = nn.functional.silu(self.t_embed(as_batch_time(t, z.shape[0], z.device)))
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, c)
        return self.out(h)
