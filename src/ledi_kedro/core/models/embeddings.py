"""Time embeddings shared by the flow networks."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """(B,) times -> (B, dim) sin/cos features; t in [0, 1] is scaled by 1000 like diffusion steps."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (1000.0 * t.float())[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return torch.nn.functional.pad(emb, (0, dim % 2))


class TimestepEmbedder(nn.Module):
    """Sinusoidal features followed by a 2-layer MLP."""

    def __init__(self, hidden: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


def as_batch_time(t: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """Accept a scalar (solver) or per-sample (training) time and return shape (B,)."""
    t = torch.as_tensor(t, device=device, dtype=torch.float32)
    return t.expand(batch) if t.dim() == 0 else t
