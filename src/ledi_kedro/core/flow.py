"""Flow matching on the linear (rectified) path.

Time runs from t=0 (prior sample x0) to t=1 (data x1):

    x_t = (1 - t) * x0 + t * x1,        target velocity u = x1 - x0,
    loss = E_t E_(x0, x1) || v_theta(x_t, t) - u ||^2   (mean over all elements).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

TimeSamplerName = Literal["uniform", "logit_normal"]


def expand_time(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-sample times (B,) to broadcast against ``like`` (B, ...)."""
    return t.reshape(t.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


def linear_path(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Point on the path and its velocity: (x_t, x1 - x0); ``t`` has shape (B,)."""
    tt = expand_time(t, x0)
    return (1 - tt) * x0 + tt * x1, x1 - x0


def sample_time(
    n: int,
    kind: TimeSamplerName = "uniform",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    mean: float = 0.0,
    std: float = 1.0,
) -> torch.Tensor:
    """Training times in (0, 1): ``uniform``, or ``logit_normal`` (sigmoid of N(mean, std^2), SD3)."""
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    raise ValueError(f"unknown time sampler {kind!r}; use 'uniform' or 'logit_normal'")


def fm_loss(
    velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    x1: torch.Tensor,
    t: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error between ``velocity(x_t, t)`` and the path's velocity ``x1 - x0``."""
    xt, target = linear_path(x0, x1, t)
    pred = velocity(xt, t)
    return (pred.float() - target.float()).pow(2).mean()
