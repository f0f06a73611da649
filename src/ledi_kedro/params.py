"""Typed parameters of the training pipelines, validated before anything runs.

Each YAML section (``conf/base/parameters_<pipeline>.yml``) maps onto one dataclass below;
:func:`validate_all` also checks the rules that span sections (patch size vs the resolution
the backbone will see, latent space without an autoencoder, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ledi_kedro.core.config import ConfigError, from_dict
from ledi_kedro.core.models.conv import levels_to
from ledi_kedro.core.models.dit import DIT_SIZES
from ledi_kedro.core.solvers import FIXED_SOLVERS
from ledi_kedro.core.trainer import TrainConfig


@dataclass(frozen=True)
class RunParams:
    """Settings shared by every pipeline (``run:`` in parameters.yml)."""

    seed: int = 0
    space: Literal["pixel", "latent"] = "pixel"
    device: str = "auto"  # auto: this rank's GPU if there is one, else CPU
    checkpoint_root: str = "data/06_models/checkpoints"
    on_config_change: Literal["restart", "error"] = "restart"  # stale checkpoints of changed settings
    max_train_images: int | None = None  # a seeded subset of the train split for quick runs (None: all)
    cpu_threads: int | None = None  # CPU threads of this process (None: its affinity / OMP_NUM_THREADS / ranks)

    def __post_init__(self) -> None:
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ValueError(f"max_train_images must be positive or null, got {self.max_train_images}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be a positive integer or null, got {self.cpu_threads}")


@dataclass(frozen=True)
class AutoencoderParams:
    kind: Literal["train", "pretrained", "none"] = "train"
    pretrained_path: str | None = None  # diffusers-format AutoencoderKL folder (kind: pretrained)
    latent_channels: int = 4
    base_channels: int = 32
    levels: int = 2  # downsampling factor 2^levels
    kl_weight: float = 1e-6
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=64, lr=2e-4))

    def __post_init__(self) -> None:
        if self.kind == "pretrained" and not self.pretrained_path:
            raise ValueError("kind 'pretrained' needs pretrained_path (a diffusers AutoencoderKL folder)")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")

    def downsampling(self) -> int:
        return 8 if self.kind == "pretrained" else 2**self.levels


@dataclass(frozen=True)
class PriorParams:
    z_dim: int = 128
    base_channels: int = 32
    bottleneck: int = 4
    logvar_min: float = -10.0
    logvar_max: float = 2.0
    loss: Literal["vgl", "nll", "beta_nll"] = "vgl"
    beta: float = 0.5  # beta-NLL's exponent
    beta_kl: float = 1e-3
    eval_images: int = 2000  # held-out images for the prior's metrics
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=64, lr=2e-4))

    def __post_init__(self) -> None:
        if self.eval_images < 1:
            raise ValueError(f"eval_images must be positive, got {self.eval_images}")
        if self.z_dim < 1:
            raise ValueError(f"z_dim must be positive, got {self.z_dim}")
        if self.beta_kl < 0:
            raise ValueError(f"beta_kl must be >= 0, got {self.beta_kl}")


@dataclass(frozen=True)
class LatentFlowParams:
    hidden: int = 512
    depth: int = 4
    time_sampler: Literal["uniform", "logit_normal"] = "uniform"
    sample_steps: int = 2  # ODE steps of the latent sampler at generation time
    sample_solver: str = "midpoint"
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=256, lr=1e-3))

    def __post_init__(self) -> None:
        if self.sample_steps < 1:
            raise ValueError(f"sample_steps must be positive, got {self.sample_steps}")
        if self.sample_solver not in FIXED_SOLVERS:
            raise ValueError(f"unknown sample_solver {self.sample_solver!r}; choose one of {', '.join(FIXED_SOLVERS)}")


@dataclass(frozen=True)
class DiTSpec:
    size: str = "S"
    patch_size: int = 2
    pos_embed: Literal["sincos", "learned"] = "sincos"
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if self.size not in DIT_SIZES:
            raise ValueError(f"unknown model size {self.size!r}; choose one of {', '.join(DIT_SIZES)}")
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be positive, got {self.patch_size}")


@dataclass(frozen=True)
class MonitorParams:
    """Quality during training (when ``train.eval_every`` > 0): FD on the judge's features."""

    n_samples: int = 200  # generated images per evaluation (fixed seeds)
    n_reference: int = 1000  # held-out images (a seeded sample), embedded once
    solver: str = "midpoint"
    batch_size: int = 250

    def __post_init__(self) -> None:
        if self.n_samples < 2 or self.n_reference < 2 or self.batch_size < 1:
            raise ValueError("monitor.n_samples and n_reference must be >= 2, batch_size >= 1")
        if self.solver not in FIXED_SOLVERS:
            raise ValueError(f"unknown monitor.solver {self.solver!r}; choose one of {', '.join(FIXED_SOLVERS)}")


@dataclass(frozen=True)
class FMParams:
    model: DiTSpec = field(default_factory=DiTSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    time_sampler: Literal["uniform", "logit_normal"] = "logit_normal"
    prior_noise_scale: float = 1.0  # s in x0 = mu(z) + s * exp(lv(z) / 2) * eps
    monitor: MonitorParams = field(default_factory=MonitorParams)

    def __post_init__(self) -> None:
        if self.prior_noise_scale < 0:
            raise ValueError(f"prior_noise_scale must be >= 0, got {self.prior_noise_scale}")


@dataclass(frozen=True)
class FMVariant:
    """What differs between the two instances of ``train_fm``: where x0 comes from, and the NFE at
    which quality is monitored during training (LeDiFlow's few steps, the baseline's reference NFE)."""

    prior: Literal["learned", "gaussian"] = "learned"
    name: str = "fm_ledi"
    monitor_nfe: int = 4

    def __post_init__(self) -> None:
        if self.monitor_nfe < 1:
            raise ValueError(f"monitor_nfe must be positive, got {self.monitor_nfe}")


@dataclass(frozen=True)
class AugmentParams:
    hflip: bool = True
    crop_padding: int = 0  # random shifts of up to this many pixels (0: no crops)

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")


@dataclass(frozen=True)
class EmbedderParams:
    """The quality judge (``embedder:`` in parameters_train_embedder.yml), trained once per data set."""

    kind: Literal["domain", "clip", "inception"] = "domain"
    clip_model: str = "ViT-L-14-336"
    clip_weights: str = "openai"  # a local checkpoint file, a tag already in the hub cache, or "random"
    clip_image_size: int | None = None  # override the model's input size (tests use tiny random models)
    inception_weights: str = "default"  # a local .pth file, "default" (torch hub cache) or "random"
    domain_width: int = 16
    domain_feature_dim: int = 128
    augment: AugmentParams = field(default_factory=AugmentParams)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=900, batch_size=128, lr=3e-3, warmup_steps=135, lr_schedule="cosine", weight_decay=5e-4,
        ema_decay=0.0))


@dataclass(frozen=True)
class BootstrapParams:
    resamples: int = 200  # paired half-sample replicates per quality point (core/uncertainty.py)
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ValueError(f"resamples must be at least 2, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class ReliabilityParams:
    """When the evaluation itself cannot be trusted (then metrics.json says so instead of a speedup)."""

    min_noise_to_floor: float = 10.0  # the N(0, I) row must score at least this many times the real-vs-real floor
    min_judge_accuracy: float = 0.85  # a domain classifier below this test accuracy is too weak a judge


@dataclass(frozen=True)
class LatentSweepParams:
    """Quality against cost of LeDiFlow's latent sampler (its steps and solver) at a fixed image NFE."""

    steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # empty: no sweep
    solvers: list[str] = field(default_factory=lambda: ["euler", "midpoint"])
    image_nfe: int = 4
    image_solver: str = "midpoint"

    def __post_init__(self) -> None:
        if any(s < 1 for s in self.steps):
            raise ValueError(f"latent_sweep.steps must be positive, got {self.steps}")
        bad = [s for s in [*self.solvers, self.image_solver] if s not in FIXED_SOLVERS]
        if bad:
            raise ValueError(f"unknown solver(s) {bad} in latent_sweep; choose from {', '.join(FIXED_SOLVERS)}")


@dataclass(frozen=True)
class EvaluateParams:
    n_samples: int = 1000  # generated images per sweep point
    n_reference: int = 5000  # held-out (test) images for the reference statistics
    batch_size: int = 250
    nfe_grid: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    solvers: list[str] = field(default_factory=lambda: ["euler", "midpoint"])
    adaptive_rtols: list[float] = field(default_factory=lambda: [1e-2, 1e-3])  # dopri5 rows
    reference_nfe: int = 64
    primary_metric: Literal["fd", "kid", "mmd"] = "fd"
    straightness_samples: int = 128
    straightness_steps: int = 32
    grid_solver: str = "midpoint"
    grid_images: int = 8
    interpolation_points: int = 8
    inpaint_examples: int = 4
    seed: int = 0
    sampling_seeds: int = 1  # > 1: repeat the sweep with more sampling seeds and report their spread
    bootstrap: BootstrapParams = field(default_factory=BootstrapParams)
    reliability: ReliabilityParams = field(default_factory=ReliabilityParams)
    latent_sweep: LatentSweepParams = field(default_factory=LatentSweepParams)

    def __post_init__(self) -> None:
        for name in ("n_samples", "n_reference", "batch_size", "straightness_samples", "straightness_steps",
                     "grid_images", "interpolation_points", "inpaint_examples", "sampling_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_samples < 4 or self.n_reference < 4:
            raise ValueError("n_samples and n_reference must be at least 4 (error bars use half-samples)")
        bad = [s for s in self.solvers if s not in FIXED_SOLVERS and s != "dopri5"]
        if bad:
            raise ValueError(f"unknown solver(s) {bad}; choose from {', '.join(FIXED_SOLVERS)} or dopri5")
        if self.grid_solver not in FIXED_SOLVERS:
            raise ValueError(f"unknown grid_solver {self.grid_solver!r}")
        if sorted(set(self.nfe_grid)) != list(self.nfe_grid) or min(self.nfe_grid) < 1:
            raise ValueError(f"nfe_grid must be increasing positive integers, got {self.nfe_grid}")
        if self.reference_nfe not in self.nfe_grid:
            raise ValueError(f"reference_nfe={self.reference_nfe} is not in nfe_grid {self.nfe_grid}")


SECTIONS: dict[str, type] = {
    "run": RunParams, "autoencoder": AutoencoderParams, "prior": PriorParams,
    "latent_flow": LatentFlowParams, "fm": FMParams, "embedder": EmbedderParams, "evaluate": EvaluateParams,
}


def parse(section: str, raw: dict[str, Any] | None) -> Any:
    return from_dict(SECTIONS[section], raw, section)


def with_run(train: TrainConfig, run: RunParams, offset: int) -> TrainConfig:
    """The run's device and a per-model seed (offset keeps the models' random streams apart)."""
    device = run.device if train.device == "auto" else train.device
    return replace(train, device=device, seed=run.seed * 100 + offset)


def model_input_geometry(params: dict[str, Any]) -> tuple[int, int]:
    """(channels, resolution) of the tensors the prior and flow models will see."""
    pre = params.get("preprocess", {}) or {}
    image = pre.get("image", {}) or {}
    channels, resolution = int(image.get("channels", 1)), int(image.get("resolution", 32))
    run = parse("run", params.get("run"))
    if run.space == "latent":
        ae = parse("autoencoder", params.get("autoencoder"))
        if resolution % ae.downsampling():
            raise ConfigError(f"preprocess.image.resolution={resolution} is not divisible by the autoencoder's "
                              f"downsampling factor {ae.downsampling()}")
        return (4 if ae.kind == "pretrained" else ae.latent_channels), resolution // ae.downsampling()
    return channels, resolution


def validate_all(params: dict[str, Any]) -> None:
    """Parse every known section and check the cross-section rules; raise ConfigError naming the value."""
    parsed = {name: parse(name, params.get(name)) for name in SECTIONS if name in params}
    run = parsed.get("run", RunParams())
    ae = parsed.get("autoencoder", AutoencoderParams())
    if run.space == "latent" and ae.kind == "none":
        raise ConfigError("run.space is 'latent' but autoencoder.kind is 'none': latent space needs an autoencoder "
                          "(set autoencoder.kind to 'train' or 'pretrained', or run.space to 'pixel')")
    _, resolution = model_input_geometry(params)
    fm = parsed.get("fm")
    if fm is not None and resolution % fm.model.patch_size:
        raise ConfigError(f"fm.model.patch_size={fm.model.patch_size} does not divide the resolution {resolution} "
                          f"the backbone sees (run.space={run.space})")
    prior = parsed.get("prior")
    if prior is not None:
        try:
            levels_to(resolution, prior.bottleneck)
        except ValueError as exc:
            raise ConfigError(f"prior.bottleneck={prior.bottleneck}: {exc}") from exc
