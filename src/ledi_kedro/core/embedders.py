"""Image embedders for quality metrics. Images come in as (N, C, H, W) floats in [-1, 1].

* :class:`ClipEmbedder`: open-clip image tower (default ``ViT-L-14-336`` with OpenAI weights, the
  CMMD paper's choice). Weights come from a local file or the local hub cache only; when they
  are not there it fails at once with instructions instead of retrying a download.
* :class:`InceptionEmbedder`: the 2048-d pool features of the FID Inception-v3 (pytorch-fid's port
  of the TensorFlow graph that published FIDs use), from a local file or the torch hub cache.
* :class:`DomainEmbedder`: features of a model trained on the data set itself (a classifier's
  penultimate layer, or an autoencoder's bottleneck for unlabeled data), or of a third-party classifier
  (the CIFAR-10 ResNet-56, ``pretrained:cifar10_resnet56``: 64-d pooled features of images resized to 32 px).

:func:`build_embedder` turns a ``quality_embedder`` record (:class:`~.registry.TrainedModel`) into one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable
from unittest import mock

import torch
from torch import nn

if TYPE_CHECKING:
    from .artifacts import TrainedModel

# pytorch-fid's file name for the FID Inception weights (in torch.hub's checkpoint cache).
FID_INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_INCEPTION_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_INCEPTION_FILE}"

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipWeightsUnavailable(RuntimeError):
    pass


class InceptionWeightsUnavailable(RuntimeError):
    pass


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch: int,
             device: torch.device) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            out.append(fn(images[i: i + batch].to(device).float()).float().cpu())
    return torch.cat(out)


def _cached_hub_file(model_name: str, tag: str) -> str | None:
    """Path of the tagged weights if they are already in the local hub cache (no network)."""
    from open_clip.pretrained import get_pretrained_cfg

    cfg = get_pretrained_cfg(model_name, tag)
    repo = (cfg or {}).get("hf_hub", "").strip("/")
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return found
    return None


class ClipEmbedder:
    """L2-normalised CLIP image embeddings.

    ``weights``: a local checkpoint file, a pretrained tag such as ``openai`` (used only when it
    is already in the local hub cache), or ``random`` (random init; for tests of the plumbing).
    """

    def __init__(self, model_name: str = "ViT-L-14-336", weights: str = "openai", device: str | torch.device = "cpu",
                 batch_size: int = 64, image_size: int | None = None):
        try:
            import open_clip
        except ImportError as exc:
            raise ClipWeightsUnavailable("the clip embedder needs `pip install open-clip-torch`") from exc
        self.device = torch.device(device)
        kwargs = {"force_image_size": image_size} if image_size else {}
        if weights == "random":
            pretrained = None
        elif Path(weights).is_file():
            pretrained = str(weights)
        else:
            pretrained = _cached_hub_file(model_name, weights)
            if pretrained is None:
                raise ClipWeightsUnavailable(
                    f"CLIP weights {model_name}/{weights} are not available offline. Download them on a machine "
                    f"with internet access (e.g. `open_clip.create_model('{model_name}', pretrained='{weights}')`, "
                    "which fills the Hugging Face cache), then either copy the cache or set "
                    "evaluate.embedder.clip_weights to the local checkpoint file. Or use evaluate.embedder.kind: domain.")
        model = open_clip.create_model(model_name, pretrained=pretrained, device=self.device, **kwargs)
        self.visual = model.visual.eval().requires_grad_(False)
        size = self.visual.image_size
        self.image_size = size if isinstance(size, int) else size[0]
        self.batch_size = batch_size
        self.name = f"clip:{model_name}:{'random' if weights == 'random' else Path(str(weights)).name}"
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                                      align_corners=False, antialias=True).clamp(0, 1)
        feats = self.visual((x - self.mean) / self.std)
        return feats / feats.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return _batched(self._embed, images, self.batch_size, self.device)


class DomainEmbedder:
    """Features of a project-trained network: ``features(x)`` of a classifier, or the flattened
    posterior mean of an autoencoder."""

    def __init__(self, module: nn.Module, kind: str, device: str | torch.device = "cpu", batch_size: int = 256,
                 name: str | None = None):
        self.module = module.eval().to(device)
        self.kind, self.device, self.batch_size = kind, torch.device(device), batch_size
        self.name = name or f"domain:{kind}"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "classifier":
            return self.module.features(x)
        return self.module.encode(x)[0].flatten(1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return _batched(self._embed, images, self.batch_size, self.device)


def fid_inception_weights_path(weights: str) -> Path | None:
    """The weights file for ``weights``: a local file, or ``default`` = pytorch-fid's file in the torch
    hub cache; None when that cache holds no copy (``random`` needs no file)."""
    if weights == "default":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_INCEPTION_FILE
        return cached if cached.is_file() else None
    path = Path(weights).expanduser()
    return path if path.is_file() else None


class InceptionEmbedder:
    """FID Inception-v3 pool features (N, 2048), as pytorch-fid computes them: images scaled to
    [0, 1], grey repeated to RGB, bilinearly resized to 299 px.

    ``weights``: a local ``.pth`` file, ``default`` (pytorch-fid's file in the torch hub cache:
    ``torch.hub.get_dir()/checkpoints/pt_inception-2015-12-05-6726825d.pth``), or ``random``
    (random init; for tests of the plumbing). Never downloads.
    """

    def __init__(self, weights: str = "default", device: str | torch.device = "cpu", batch_size: int = 50):
        try:
            import torchvision
            from pytorch_fid import inception as fid_inception
        except ImportError as exc:
            raise InceptionWeightsUnavailable("the inception embedder needs `pip install pytorch-fid`") from exc
        if weights == "random":
            # Same parameter names and shapes as the FID network: torchvision's Inception-v3 with 1008 classes.
            state = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008,
                                                    init_weights=True).state_dict()
        else:
            path = fid_inception_weights_path(weights)
            if path is None:
                where = (f"the torch hub cache ({Path(torch.hub.get_dir()) / 'checkpoints'})" if weights == "default"
                         else f"the file {weights}")
                raise InceptionWeightsUnavailable(
                    f"FID Inception weights are not available offline: nothing at {where}. Download "
                    f"{FID_INCEPTION_URL} on a machine with internet access and either copy it into "
                    f"{Path(torch.hub.get_dir()) / 'checkpoints'} (then embedder.inception_weights: default) or set "
                    "embedder.inception_weights to the file's path. Or use embedder.kind: domain.")
            state = torch.load(path, map_location="cpu", weights_only=True)
        # pytorch-fid fetches its weights by URL inside the constructor; hand it the state loaded above.
        with mock.patch.object(fid_inception, "load_state_dict_from_url", lambda *a, **k: state):
            model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        self.model = model.eval().requires_grad_(False).to(device)
        self.device, self.batch_size = torch.device(device), batch_size
        self.name = f"inception:{'random' if weights == 'random' else Path(str(weights)).name}"

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.model(x)[0].flatten(1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return _batched(self._embed, images, self.batch_size, self.device)


Embedder = Callable[[torch.Tensor], torch.Tensor]


def build_embedder(record: "TrainedModel", device: str | torch.device = "cpu") -> Embedder:
    """The embedding function behind a ``quality_embedder`` record: CLIP, Inception or a domain network."""
    if record.kind == "clip":
        cfg = record.config
        return ClipEmbedder(cfg["model"], cfg["weights"], device, image_size=cfg.get("image_size"))
    if record.kind == "inception":
        return InceptionEmbedder(record.config["weights"], device)
    if record.kind in ("classifier", "autoencoder"):
        return DomainEmbedder(record.inference, record.kind, device)
    if record.kind == PRETRAINED_JUDGE:
        return DomainEmbedder(pretrained_judge(record.config["weights"]), "classifier", device, name=PRETRAINED_NAME)
    raise ValueError(f"a {record.kind!r} model is not a quality embedder (clip, inception, classifier, autoencoder, "
                     f"{PRETRAINED_JUDGE})")


PRETRAINED_JUDGE = "cifar10_resnet56"  # the record kind (embedder.kind) of the third-party CIFAR-10 judge
PRETRAINED_NAME = "pretrained:cifar10_resnet56"


def pretrained_judge(weights: str | Path) -> nn.Module:
    """The CIFAR-10 ResNet-56 judge behind the project's images (see :mod:`.models.cifar_resnet`)."""
    from .models.cifar_resnet import ImageJudge, load_cifar_resnet

    return ImageJudge(load_cifar_resnet(weights))
