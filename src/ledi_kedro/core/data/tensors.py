"""Image tensors as the models use them: uint8 pixels (N, C, H, W) <-> floats in [-1, 1], batches,
and pictures (grids) of them. The only module of ``core.data`` that imports torch."""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float in [-1, 1]; float tensors (latents) pass through."""
    return images.float() / 127.5 - 1.0 if images.dtype == torch.uint8 else images.float()


def batches(x: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    """Consecutive chunks of at most ``size`` rows."""
    for i in range(0, x.shape[0], size):
        yield x[i: i + size]


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Images in [-1, 1] (N, C, H, W) -> one uint8 picture, ``nrow`` images per row (default: all in
    one row) with ``pad`` black pixels around each; (H', W') for grey images, (H', W', 3) for colour."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    nrow = nrow or n
    rows = math.ceil(n / nrow)
    canvas = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top: top + h, left: left + w] = x[i].permute(1, 2, 0).numpy()
    return canvas[..., 0] if c == 1 else canvas
