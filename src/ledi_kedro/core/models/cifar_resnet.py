"""The CIFAR ResNet of He et al. (2016), to load third-party CIFAR-10 weights as a quality judge that no model
of this project shaped.

Depth 6n + 2: ``conv1`` 3x3 (3 -> 16, no bias) + ``bn1`` + ReLU; ``layer1..3`` of n basic blocks with 16, 32
and 64 channels (the first block of ``layer2`` and ``layer3`` has stride 2); global average pooling; ``linear``
64 -> 10. A block: conv 3x3 (stride) + BN + ReLU, conv 3x3 + BN, plus the shortcut, then ReLU. The shortcut is
"option A": the identity, or where the shape changes the input subsampled by 2 and zero-padded with
(out - in) / 2 channels on each side (no parameters). These are the parameter names of the weights of
akamaster/pytorch_resnet_cifar10 (BSD 2-clause, Yerlan Idelbayev), whose ``resnet56`` file
:func:`load_cifar_resnet` reads without executing code (``torch.load(weights_only=True)``).

Input: RGB in [0, 1] at 32 x 32, normalised with the ImageNet mean and std (what those weights were trained
with); :class:`~ledi_kedro.core.embedders.PretrainedEmbedder` converts the project's images to it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESOLUTION = 32


class WeightsUnavailable(RuntimeError):
    """The pretrained weights file is missing or is not the network it should be; the message names it."""


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """``features(x)`` (N, 64): the pooled features; ``forward(x)`` (N, 10): the class logits. ``x`` is what the
    weights expect (normalised RGB, 32 px)."""

    def __init__(self, depth: int = 56, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"a CIFAR ResNet has depth 6n + 2, got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        widths, cin, layers = (16, 32, 64), 16, []
        for i, cout in enumerate(widths):
            layers.append(nn.Sequential(*[_Block(cin if b == 0 else cout, cout, 2 if b == 0 and i > 0 else 1)
                                          for b in range(n)]))
            cin = cout
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


def load_cifar_resnet(path: str | Path, depth: int = 56) -> CifarResNet:
    """The network with the weights of ``path`` (a dict with ``state_dict``, keys prefixed ``module.`` as saved
    from DataParallel), in eval mode. Raises :class:`WeightsUnavailable` naming the file when it is missing,
    unreadable or holds another network."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(
            f"{path}: no such file. The CIFAR-10 ResNet-56 judge needs the weights of akamaster/pytorch_resnet_cifar10 "
            "(pretrained_models/resnet56-4bfd9763.th, BSD 2-clause); set embedder.pretrained_weights to their path, "
            "or use embedder.kind: domain")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling or format error: the file is not these weights
        raise WeightsUnavailable(f"{path}: not a readable weights file ({exc})") from exc
    state = saved.get("state_dict", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path}: expected a dict of tensors (or one under 'state_dict')")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = CifarResNet(depth)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a shape that does not fit
        raise WeightsUnavailable(f"{path}: not a CIFAR ResNet-{depth} ({exc})") from exc
    if missing or unexpected:
        raise WeightsUnavailable(f"{path}: not a CIFAR ResNet-{depth} (missing {sorted(missing)[:3]}, unexpected "
                                 f"{sorted(unexpected)[:3]})")
    return model.eval().requires_grad_(False)


class ImageJudge(nn.Module):
    """A CIFAR ResNet behind images as the project holds them: (N, C, H, W) in [-1, 1], grey or RGB, any size.
    They are made RGB (grey repeated), resized to 32 px (bilinear, antialiased; real and generated images
    alike) and normalised as the weights expect. ``features`` (N, 64) is the embedding, ``forward`` the logits."""

    def __init__(self, net: CifarResNet):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float().clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"the CIFAR-10 judge takes grey or RGB images, got {x.shape[1]} channels")
        if x.shape[-2:] != (RESOLUTION, RESOLUTION):
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.prepare(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))
