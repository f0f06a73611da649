"""A small ResNet classifier whose penultimate features serve as the `domain` quality embedding.

Sized for a 2-core CPU: a 3x3 stem at full resolution, then three residual stages that halve the
resolution and double the width (w -> 2w -> 4w -> 8w), global average pooling, a ``feature_dim``
projection (the embedding) and the class logits. On Fashion-MNIST (32 px) width 16 reaches
about 0.91 test accuracy after 900 steps of batch 128 (docs/evaluation.md has the measurement).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import from_data, require_data_fields


@dataclass(frozen=True)
class ClassifierConfig:
    in_channels: int | None = from_data()
    resolution: int | None = from_data()
    num_classes: int | None = from_data()
    width: int = 16
    feature_dim: int = 128

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.num_classes}")
        if self.width < 1 or self.feature_dim < 1:
            raise ValueError(f"width and feature_dim must be positive, got {self.width}, {self.feature_dim}")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"the classifier downsamples 8x; resolution {self.resolution} is too small")

    def to_dict(self) -> dict:
        return asdict(self)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a (projected) skip connection."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(c_out)
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else
                     nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.skip(x) + self.norm2(self.conv2(h)))


class DomainClassifier(nn.Module):
    """(B, C, H, W) in [-1, 1] -> logits (B, num_classes); ``features`` gives the (B, feature_dim) embedding."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        require_data_fields(config)
        self.config = cfg = config
        w = cfg.width
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.stages = nn.Sequential(_BasicBlock(w, 2 * w, 2), _BasicBlock(2 * w, 4 * w, 2), _BasicBlock(4 * w, 8 * w, 2))
        self.to_features = nn.Linear(8 * w, cfg.feature_dim)
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: the CPU convolution kernels for these narrow layers are much faster with it
        h = self.stages(self.stem(x.contiguous(memory_format=torch.channels_last)))
        return self.to_features(h.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.features(x)))
