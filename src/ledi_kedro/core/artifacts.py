"""Trained models on disk (the pipelines' model artifacts) and the generators assembled from them.

A model directory holds ``model.safetensors``, ``ema.safetensors`` and ``state.json`` with
``{"kind": ..., "config": {...}, "meta": {...}}``; :func:`load_trained` rebuilds the network
from the JSON alone, so loading never executes stored code. :func:`make_generator` turns a flow
model's artifact (plus the prior, latent sampler and autoencoder it needs) into a
:class:`~ledi_kedro.core.generation.Generator`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
from torch import nn

from .flow import TimeSamplerName
from .checkpoint import CheckpointError, load_weights, read_checkpoint, state_dict_tensors, write_checkpoint
from .generation import GaussianSource, Generator, LearnedPriorSource, Source, WarmthTable
from .models import (
    AutoencoderConfig, ClassifierConfig, DiT, DiTConfig, DomainClassifier, KLAutoencoder, LatentFlow,
    LatentFlowConfig, PriorConfig, PriorModel,
)

MODEL_KINDS: dict[str, tuple[type[nn.Module], type]] = {
    "dit": (DiT, DiTConfig),
    "prior": (PriorModel, PriorConfig),
    "latent_flow": (LatentFlow, LatentFlowConfig),
    "autoencoder": (KLAutoencoder, AutoencoderConfig),
    "classifier": (DomainClassifier, ClassifierConfig),
}
# Kinds without weights of their own: pixel space (no autoencoder), a pretrained diffusers VAE, and the CLIP,
# Inception and CIFAR-10 ResNet-56 judges (their weights stay where the user keeps them).
WEIGHTLESS_KINDS = ("identity", "diffusers_autoencoder", "clip", "inception", "cifar10_resnet56")


@dataclass
class TrainedModel:
    """A network with its raw and EMA weights, its config and free-form metadata."""

    kind: str
    config: Any  # the kind's config dataclass, or a dict for weightless kinds
    model: nn.Module | None
    ema: nn.Module | None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def inference(self) -> nn.Module | None:
        """The weights to sample with: EMA when there are any."""
        return self.ema if self.ema is not None else self.model

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else dict(self.config or {})

    def fingerprint(self) -> str:
        """A short hash of the kind, config, record and inference weights: what tells two trained models apart
        (a weightless kind by its config, e.g. the path of its weights)."""
        h = hashlib.sha256(json.dumps([self.kind, self.config_dict(), self.meta], sort_keys=True,
                                      default=str).encode())
        module = self.inference
        for name, tensor in sorted(state_dict_tensors(module).items()) if module is not None else ():
            h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            h.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]


PriorKind = Literal["learned", "gaussian"]  # where a flow model's x0 comes from
Space = Literal["pixel", "latent"]  # where the flow models work: on pixels or on an autoencoder's latents


@dataclass(frozen=True)
class FlowRecord:
    """What an image flow model's artifact says about how to sample it (``meta`` in its state.json): where
    x0 comes from, the prior noise scale s in x0 = mu(z) + s exp(lv(z)/2) eps (``fm.prior_noise_scale``),
    whether the flow model also sees mu(z) and lv(z) as input channels (``fm.prior_channels``), and the warmth
    chosen per solver and NFE for a model with a warmth input (``fm.warmth``: {solver: [[nfe, w], ...]}; empty
    for the others)."""

    prior: PriorKind
    name: str
    time_sampler: TimeSamplerName
    prior_noise_scale: float
    prior_channels: bool
    warmth_by_solver: dict[str, list[list[float]]]
    space: Space


@dataclass(frozen=True)
class LatentSamplerRecord:
    """How LeDiFlow draws its codes at sampling time (``latent_flow.sample_solver`` x ``sample_steps``)."""

    time_sampler: TimeSamplerName
    sample_solver: str
    sample_steps: int


Record = TypeVar("Record", FlowRecord, LatentSamplerRecord)


def read_record(cls: type[Record], trained: "TrainedModel", where: str = "") -> Record:
    """The typed record in ``trained.meta``; a missing field is an error that names it (no fallback: the
    defaults live in conf/base, and an artifact that lacks a setting was made by an older version)."""
    names = [f.name for f in dataclasses.fields(cls)]
    missing = [n for n in names if n not in trained.meta]
    if missing:
        raise CheckpointError(f"{where or trained.kind + ' model'}: its state.json lacks {', '.join(missing)} "
                              f"({cls.__name__}); it was written by an older version of the project: retrain it")
    return cls(**{n: trained.meta[n] for n in names})


def build_model(kind: str, config: dict[str, Any]) -> tuple[nn.Module, Any]:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_KINDS)}")
    cls, cfg_cls = MODEL_KINDS[kind]
    cfg = cfg_cls(**config)
    return cls(cfg), cfg


def save_trained(path: str | Path, trained: TrainedModel) -> Path:
    state = {"kind": trained.kind, "config": trained.config_dict(), "meta": trained.meta}
    tensors = {}
    if trained.model is not None:
        tensors["model"] = state_dict_tensors(trained.model)
    if trained.ema is not None:
        tensors["ema"] = state_dict_tensors(trained.ema)
    return write_checkpoint(path, state, tensors)


def load_trained(path: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    ckpt = read_checkpoint(path)
    kind = ckpt.state.get("kind")
    if kind in WEIGHTLESS_KINDS:
        return TrainedModel(kind, ckpt.state.get("config", {}), None, None, ckpt.state.get("meta", {}))
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{Path(path) / 'state.json'}: unknown model kind {kind!r}")
    try:
        model, cfg = build_model(kind, ckpt.state["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{Path(path) / 'state.json'}: config does not describe a {kind} model ({exc})") from exc
    if "model" not in ckpt.tensors:
        raise CheckpointError(f"{Path(path) / 'model.safetensors'}: missing")
    load_weights(model, ckpt.tensors["model"], Path(path) / "model.safetensors")
    ema = None
    if "ema" in ckpt.tensors:
        ema, _ = build_model(kind, ckpt.state["config"])
        load_weights(ema, ckpt.tensors["ema"], Path(path) / "ema.safetensors")
        ema = ema.to(device).eval().requires_grad_(False)
    return TrainedModel(kind, cfg, model.to(device).eval(), ema, ckpt.state.get("meta", {}))


def load_autoencoder(trained: TrainedModel, device: torch.device | str = "cpu") -> nn.Module | None:
    """The autoencoder module behind a trained-model record; None in pixel space."""
    if trained.kind == "identity":
        return None
    if trained.kind == "autoencoder":
        return trained.inference.to(device).eval()
    if trained.kind == "diffusers_autoencoder":
        from .models.pretrained import DiffusersAutoencoder

        cfg = trained.config
        return DiffusersAutoencoder(cfg["path"], cfg["image_channels"], cfg["scale"]).to(device).eval()
    raise ValueError(f"{trained.kind!r} is not an autoencoder")


def make_source(record: FlowRecord, shape: tuple[int, int, int], device: torch.device | str,
                prior: TrainedModel | None = None, latent_flow: TrainedModel | None = None) -> Source:
    """Where a flow model's ODE starts, from its record: N(0, I), or LeDiFlow's learned prior (the prior model's
    and the latent sampler's EMA weights, frozen, and the latent sampler's shipped ODE setting)."""
    device = torch.device(device)
    if record.prior != "learned":
        return GaussianSource(tuple(shape), device)
    if prior is None or latent_flow is None:
        raise ValueError(f"{record.name} was trained from the learned prior: it needs the prior model and the latent "
                         "sampler too")
    lf = read_record(LatentSamplerRecord, latent_flow, "latent sampler")
    return LearnedPriorSource(prior.inference.to(device).eval().requires_grad_(False),
                              latent_flow.inference.to(device).eval().requires_grad_(False),
                              noise_scale=record.prior_noise_scale, prior_channels=record.prior_channels,
                              sample_solver=lf.sample_solver, sample_steps=lf.sample_steps, shape=tuple(shape),
                              device=device)


def make_generator(fm: TrainedModel, prior: TrainedModel | None = None, latent_flow: TrainedModel | None = None,
                   autoencoder: TrainedModel | None = None, device: torch.device | str = "cpu",
                   precision: str = "fp32") -> Generator:
    """The generator of ``fm``: its EMA weights, its source (LeDiFlow's learned prior when it was trained from
    it, else N(0, I)), the autoencoder's decoder in latent space and its warmth table (a warm model)."""
    device = torch.device(device)
    if fm.kind != "dit":
        raise ValueError(f"expected a flow model (kind 'dit'), got {fm.kind!r}")
    shape = (fm.config.state_channels, fm.config.resolution, fm.config.resolution)
    ae = load_autoencoder(autoencoder, device) if autoencoder is not None else None
    record = read_record(FlowRecord, fm, "flow model")
    warmth = WarmthTable.from_json(record.warmth_by_solver) if record.warmth_by_solver else None
    return Generator(fm.inference.to(device).eval(), make_source(record, shape, device, prior, latent_flow),
                     ae.decode_scaled if ae is not None else None, warmth, precision, record.name)


# ---------------------------------------------------------------- one trained generator, one artifact
GENERATOR_PARTS = ("flow", "prior", "latent_flow", "autoencoder")


@dataclass
class GeneratorArtifact:
    """A trained generator as one artifact: its flow model, its source's parts (LeDiFlow's prior and latent sampler;
    None for the baseline), its decoder (the autoencoder record; ``identity`` in pixel space) and, in the flow's
    record, its warmth table. :meth:`build` gives the :class:`~ledi_kedro.core.generation.Generator`."""

    flow: TrainedModel
    prior: TrainedModel | None
    latent_flow: TrainedModel | None
    autoencoder: TrainedModel

    @classmethod
    def of(cls, flow: TrainedModel, prior: TrainedModel | None, latent_flow: TrainedModel | None,
           autoencoder: TrainedModel) -> "GeneratorArtifact":
        """The artifact of ``flow`` with the parts its record says it needs (the baseline keeps no prior)."""
        learned = read_record(FlowRecord, flow, "flow model").prior == "learned"
        if learned and (prior is None or latent_flow is None):
            raise ValueError(f"{flow.meta.get('name', 'the flow model')} was trained from the learned prior: its "
                             "generator needs the prior model and the latent sampler too")
        return cls(flow, prior if learned else None, latent_flow if learned else None, autoencoder)

    @property
    def name(self) -> str:
        return str(self.flow.meta.get("name", "generator"))

    def parts(self) -> dict[str, TrainedModel]:
        return {n: p for n in GENERATOR_PARTS if (p := getattr(self, n)) is not None}

    def build(self, device: torch.device | str = "cpu", precision: str = "fp32") -> Generator:
        return make_generator(self.flow, self.prior, self.latent_flow, self.autoencoder, device, precision)


def save_generator(path: str | Path, artifact: GeneratorArtifact) -> Path:
    """One checkpoint directory (atomic): ``state.json`` with every part's kind, config and record, and one
    safetensors file of inference weights per part that has weights (the EMA's where there is one)."""
    parts = artifact.parts()
    state = {"kind": "generator", "parts": {n: {"kind": p.kind, "config": p.config_dict(), "meta": p.meta}
                                           for n, p in parts.items()}}
    tensors = {n: state_dict_tensors(p.inference) for n, p in parts.items() if p.inference is not None}
    return write_checkpoint(path, state, tensors)


def load_generator_artifact(path: str | Path, device: torch.device | str = "cpu") -> GeneratorArtifact:
    """The artifact :func:`save_generator` wrote (rebuilt from JSON and safetensors: no stored code runs)."""
    ckpt = read_checkpoint(path)
    if ckpt.state.get("kind") != "generator":
        raise CheckpointError(f"{Path(path) / 'state.json'}: not a generator (kind {ckpt.state.get('kind')!r})")
    parts: dict[str, TrainedModel | None] = {n: None for n in GENERATOR_PARTS}
    for name, spec in ckpt.state.get("parts", {}).items():
        if name not in parts:
            raise CheckpointError(f"{Path(path) / 'state.json'}: unknown part {name!r}")
        kind = spec.get("kind")
        if kind in WEIGHTLESS_KINDS:
            parts[name] = TrainedModel(kind, spec.get("config", {}), None, None, spec.get("meta", {}))
            continue
        try:
            module, cfg = build_model(kind, spec["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{Path(path) / 'state.json'}: part {name} is not a {kind} model ({exc})") from exc
        if name not in ckpt.tensors:
            raise CheckpointError(f"{Path(path) / f'{name}.safetensors'}: missing")
        load_weights(module, ckpt.tensors[name], Path(path) / f"{name}.safetensors")
        parts[name] = TrainedModel(kind, cfg, None, module.to(device).eval().requires_grad_(False), spec.get("meta", {}))
    if parts["flow"] is None or parts["autoencoder"] is None:
        raise CheckpointError(f"{Path(path) / 'state.json'}: a generator needs its flow and autoencoder parts")
    return GeneratorArtifact(parts["flow"], parts["prior"], parts["latent_flow"], parts["autoencoder"])
