"""DiT-style transformer velocity model v(x_t, t) (Peebles & Xie, 2023), built from timm blocks.

Image (B, C, H, W) -> patches (B, N, p*p*C) -> N tokens of width ``hidden`` -> ``depth`` blocks
with adaLN-Zero conditioning on t (and on the warmth w in [0, 1] with ``warmth_input``) -> linear head ->
unpatchify to (B, C_out, H, W). adaLN modulations and the output head start at zero, so a fresh model
predicts v = 0; the warmth's embedding starts at zero too, so it adds nothing until training uses it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import nn

from ..config import from_data, require_data_fields
from .embeddings import TimestepEmbedder, as_batch_time

# name -> (depth, hidden, heads); S/B/L as in DiT, XS/T for CPU tests and quick runs.
DIT_SIZES: dict[str, tuple[int, int, int]] = {
    "T": (3, 96, 3),
    "XS": (4, 128, 4),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
    "L": (24, 1024, 16),
}


@dataclass(frozen=True)
class DiTConfig:
    """Architecture of a :class:`DiT`; ``size`` picks depth/hidden/heads from ``DIT_SIZES``."""

    in_channels: int | None = from_data()
    resolution: int | None = from_data()
    patch_size: int = 2
    size: str = "S"
    mlp_ratio: float = 4.0
    pos_embed: Literal["sincos", "learned"] = "sincos"
    out_channels: int | None = None
    # A second conditioning scalar besides t: the warmth w of Warm-Start Diffusion (arXiv 2507.09212), set by
    # train_flow from ``fm.warmth.enabled`` for LeDiFlow (the YAML's fm.model does not set it).
    warmth_input: bool = from_data(False)

    def __post_init__(self) -> None:
        if self.size not in DIT_SIZES:
            raise ValueError(f"unknown DiT size {self.size!r}; choose one of {', '.join(DIT_SIZES)}")
        if self.patch_size < 1 or (self.resolution is not None and self.resolution % self.patch_size):
            raise ValueError(f"patch_size={self.patch_size} does not divide resolution={self.resolution}")
        if self.in_channels is not None and self.in_channels < 1:
            raise ValueError(f"in_channels must be positive, got {self.in_channels}")
        if self.pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {self.pos_embed!r}")

    @property
    def state_channels(self) -> int | None:
        """Channels of the flow's state x_t (and of its velocity): ``out_channels``, or ``in_channels`` when
        the model sees nothing but x_t."""
        return self.out_channels or self.in_channels

    @property
    def depth(self) -> int:
        return DIT_SIZES[self.size][0]

    @property
    def hidden(self) -> int:
        return DIT_SIZES[self.size][1]

    @property
    def heads(self) -> int:
        return DIT_SIZES[self.size][2]

    @property
    def tokens(self) -> int:
        return (self.resolution // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def sincos_2d(hidden: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position table (grid*grid, hidden), half the channels per axis."""
    if hidden % 4:
        raise ValueError(f"sincos positions need hidden divisible by 4, got {hidden}")
    quarter = hidden // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                            indexing="ij")
    parts = []
    for pos in (ys.reshape(-1), xs.reshape(-1)):
        out = pos[:, None] * omega[None]
        parts += [torch.sin(out), torch.cos(out)]
    return torch.cat(parts, dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float):
        # Imported here, not at the top: timm pulls in torchvision and torch._dynamo (~2 s), which
        # every process that only reads a DiTConfig (each `kedro run`, via the parameters) would pay.
        from timm.layers import Mlp
        from timm.models.vision_transformer import Attention

        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden, num_heads=heads, qkv_bias=True)  # fused SDPA inside
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, int(hidden * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=1)
        x = x + gate1.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift1, scale1))
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    def __init__(self, hidden: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, patch_dim)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """Velocity model: ``forward(x (B,C,H,W), t (B,) or scalar) -> v (B,C_out,H,W)``."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        require_data_fields(config)
        self.config = cfg = config
        p, hidden = cfg.patch_size, cfg.hidden
        self.out_channels = cfg.out_channels or cfg.in_channels
        self.grid = cfg.resolution // p
        self.patch_embed = nn.Linear(p * p * cfg.in_channels, hidden)
        self.t_embed = TimestepEmbedder(hidden)
        self.w_embed = TimestepEmbedder(hidden) if cfg.warmth_input else None
        if cfg.pos_embed == "learned":
            self.pos = nn.Parameter(torch.zeros(1, self.grid**2, hidden))
            nn.init.normal_(self.pos, std=0.02)
        else:
            self.register_buffer("pos", sincos_2d(hidden, self.grid)[None], persistent=False)
        self.blocks = nn.ModuleList(DiTBlock(hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.final = FinalLayer(hidden, p * p * self.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for lin in (self.t_embed.mlp[0], self.t_embed.mlp[2]):
            nn.init.normal_(lin.weight, std=0.02)
        if self.w_embed is not None:  # the warmth enters closed: a fresh model ignores it
            nn.init.normal_(self.w_embed.mlp[0].weight, std=0.02)
            nn.init.zeros_(self.w_embed.mlp[2].weight)
        for block in self.blocks:  # adaLN-Zero: every residual branch starts closed
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
        nn.init.zeros_(self.final.adaLN[-1].weight)
        nn.init.zeros_(self.final.adaLN[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float,
                warmth: torch.Tensor | float | None = None) -> torch.Tensor:
        """``warmth`` (B,) or scalar in [0, 1]: required by a model with ``warmth_input``, refused by others."""
        p = self.config.patch_size
        tokens = rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=p, p2=p)
        h = self.patch_embed(tokens) + self.pos
        c = self.t_embed(as_batch_time(t, x.shape[0], x.device))
        if self.w_embed is not None:
            if warmth is None:
                raise ValueError("this flow model was trained with a warmth input (fm.warmth.enabled): pass warmth")
            c = c + self.w_embed(as_batch_time(warmth, x.shape[0], x.device))
        elif warmth is not None:
            raise ValueError("this flow model has no warmth input: it was trained without fm.warmth.enabled")
        for block in self.blocks:
            h = block(h, c)
        out = self.final(h, c)
        return rearrange(out, "b (h w) (p1 p2 c) -> b c (h p1) (w p2)", h=self.grid, p1=p, p2=p)

    def flops_per_image(self) -> float:
        """Forward matmul FLOPs for one image (2 per multiply-add; attention scores included)."""
        cfg, n, d = self.config, self.config.tokens, self.config.hidden
        p2c = cfg.patch_size**2
        per_block = 2 * n * (3 * d * d + d * d + 2 * d * int(d * cfg.mlp_ratio)) + 2 * 2 * n * n * d
        embed = 2 * n * p2c * (cfg.in_channels + self.out_channels) * d
        return float(cfg.depth * per_block + embed)
