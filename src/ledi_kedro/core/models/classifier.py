"""A small convolutional classifier whose penultimate features serve as the `domain` embedding."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .conv import group_norm


@dataclass(frozen=True)
class ClassifierConfig:
    in_channels: int = 1
    resolution: int = 32
    num_classes: int = 10
    width: int = 32
    feature_dim: int = 128

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")

    def to_dict(self) -> dict:
        return asdict(self)


class DomainClassifier(nn.Module):
    """conv -> (GN, SiLU, conv, 2x pool) x 3 -> global average -> feature_dim -> logits."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = cfg = config
        w = cfg.width
        chans = [w, 2 * w, 4 * w]
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)]
        c_prev = chans[0]
        for c in chans:
            layers += [group_norm(c_prev), nn.SiLU(), nn.Conv2d(c_prev, c, 3, padding=1), nn.AvgPool2d(2)]
            c_prev = c
        self.body = nn.Sequential(*layers, group_norm(c_prev), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.to_features = nn.Linear(c_prev, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_features(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.nn.functional.silu(self.features(x)))
