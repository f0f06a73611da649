"""Typed parameters of every pipeline, validated before anything runs.

Each top-level YAML section (``conf/base/parameters*.yml``) maps onto one dataclass in
:data:`SECTIONS`. Nothing here has a default: ``conf/base`` is the one place where every
parameter's default lives (tests/test_parameters.py checks that it lists them all). Model settings
are the core library's own configs (``fm.model`` is a :class:`~ledi_kedro.core.models.DiTConfig`,
``prior.model`` a :class:`~ledi_kedro.core.models.PriorConfig`, ...), so a new model setting is
added to its config class and to the YAML, and validated there only; the fields that come from
the data (channels, resolution, ...) are filled in by the nodes with ``dataclasses.replace``.
:func:`validate_all` also checks the rules that span sections (patch size vs the resolution the
backbone will see, latent space without an autoencoder, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from ledi_kedro.core.config import ConfigError, from_dict
from ledi_kedro.core.artifacts import PriorKind, Space
from ledi_kedro.core.data.images import ImageSpec
from ledi_kedro.core.data.ingest import SourceKind
from ledi_kedro.core.flow import TimeSamplerName
from ledi_kedro.core.losses import PriorLossName
from ledi_kedro.core.metrics.intervals import BootstrapMetric
from ledi_kedro.core.models import AutoencoderConfig, ClassifierConfig, DiTConfig, LatentFlowConfig, PriorConfig
from ledi_kedro.core.models.conv import levels_to
from ledi_kedro.core.solvers import check_solver, stages
from ledi_kedro.core.subsets import derive_seed
from ledi_kedro.core.trainer import TrainConfig


# ---------------------------------------------------------------- shared (parameters.yml)
@dataclass(frozen=True)
class RunParams:
    """Settings shared by every pipeline (``run:``)."""

    seed: int
    space: Space
    device: str  # auto: this rank's GPU if there is one, else CPU
    checkpoint_root: str
    on_config_change: Literal["restart", "error"]  # stale checkpoints of changed settings, data or code
    max_train_images: int | None  # a seeded subset of the train split for quick runs (None: all)
    cpu_threads: int | None  # CPU threads of this process (None: its affinity / OMP_NUM_THREADS / ranks)

    def __post_init__(self) -> None:
        if self.max_train_images is not None and self.max_train_images < 1:
            raise ValueError(f"max_train_images must be positive or null, got {self.max_train_images}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"cpu_threads must be a positive integer or null, got {self.cpu_threads}")


# ---------------------------------------------------------------- preprocess
@dataclass(frozen=True)
class SourceParams:
    """``data_source:`` where the images come from (conf/local/parameters_data_source.yml for DVC runs)."""

    kind: SourceKind
    path: str


@dataclass(frozen=True)
class PreprocessParams:
    image: ImageSpec
    on_bad_image: Literal["skip", "fail"]
    test_fraction: float
    validation_size: int  # training images moved to the validation split (what selection reads) ...
    max_validation_fraction: float  # ... at most this share of them
    split_seed: int  # pinned on purpose: the splits belong to the data set, not to a run's seed
    num_workers: int  # 0: the process's CPU thread budget

    def __post_init__(self) -> None:
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.validation_size < 0:
            raise ValueError(f"validation_size must be >= 0, got {self.validation_size}")
        if not 0.0 <= self.max_validation_fraction < 1.0:
            raise ValueError(f"max_validation_fraction must be in [0, 1), got {self.max_validation_fraction}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


# ---------------------------------------------------------------- trained parts
@dataclass(frozen=True)
class AugmentParams:
    hflip: bool
    crop_padding: int  # random shifts of up to this many pixels (0: no crops)

    def __post_init__(self) -> None:
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding}")


@dataclass(frozen=True)
class EmbedderParams:
    """The quality judge (``embedder:``), trained once per data set."""

    kind: Literal["domain", "clip", "inception", "cifar10_resnet56"]
    pretrained_weights: str  # the CIFAR-10 ResNet-56 judge's file (kind cifar10_resnet56; unlabeled colour data)
    min_pretrained_accuracy: float  # that judge must classify at least this share of a CIFAR-10 test split
    clip_model: str
    clip_weights: str  # a local checkpoint file, a tag already in the hub cache, or "random"
    clip_image_size: int | None  # override the model's input size (tests use tiny random models)
    inception_weights: str  # a local .pth file, "default" (torch hub cache) or "random"
    model: ClassifierConfig  # the domain classifier (width and size of its embedding)
    augment: AugmentParams
    seed: int  # pinned on purpose, not run.seed's: every replicate of a run is measured by the same judge
    train: TrainConfig

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_pretrained_accuracy <= 1.0:
            raise ValueError(f"min_pretrained_accuracy must be in [0, 1], got {self.min_pretrained_accuracy}")


@dataclass(frozen=True)
class AutoencoderParams:
    kind: Literal["train", "pretrained", "none"]
    pretrained_path: str | None  # diffusers-format AutoencoderKL folder (kind: pretrained)
    model: AutoencoderConfig
    kl_weight: float
    train: TrainConfig

    def __post_init__(self) -> None:
        if self.kind == "pretrained" and not self.pretrained_path:
            raise ValueError("kind 'pretrained' needs pretrained_path (a diffusers AutoencoderKL folder)")
        if self.kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {self.kl_weight}")

    def downsampling(self) -> int:
        return 8 if self.kind == "pretrained" else 2**self.model.levels

    def latent_channels(self) -> int:
        return 4 if self.kind == "pretrained" else self.model.latent_channels


@dataclass(frozen=True)
class PriorParams:
    model: PriorConfig
    loss: PriorLossName
    beta: float  # beta-NLL's exponent
    beta_kl: float
    eval_images: int  # held-out images (a seeded sample) for the prior's metrics
    train: TrainConfig

    def __post_init__(self) -> None:
        if self.eval_images < 1:
            raise ValueError(f"eval_images must be positive, got {self.eval_images}")
        if self.beta_kl < 0:
            raise ValueError(f"beta_kl must be >= 0, got {self.beta_kl}")


@dataclass(frozen=True)
class LatentMonitorParams:
    """The latent sampler's quality during training (when ``train.eval_every`` > 0), judged through images:
    FD on the judge's features of the prior's mean images of sampled codes against those of held-out codes."""

    n_samples: int  # codes drawn per evaluation (fixed seeds)
    n_reference: int  # held-out images (a seeded sample) whose codes are the reference
    batch_size: int

    def __post_init__(self) -> None:
        if self.n_samples < 2 or self.n_reference < 2 or self.batch_size < 1:
            raise ValueError("latent_flow.monitor.n_samples and n_reference must be >= 2, batch_size >= 1")


@dataclass(frozen=True)
class LatentFlowParams:
    model: LatentFlowConfig
    time_sampler: TimeSamplerName
    sample_steps: int  # ODE steps of the latent sampler at generation time
    sample_solver: str
    monitor: LatentMonitorParams
    train: TrainConfig

    def __post_init__(self) -> None:
        if self.sample_steps < 1:
            raise ValueError(f"sample_steps must be positive, got {self.sample_steps}")
        check_solver(self.sample_solver, adaptive=False, what="sample_solver")


@dataclass(frozen=True)
class MonitorParams:
    """Quality during training (when ``train.eval_every`` > 0): FD on the judge's features."""

    n_samples: int  # generated images per evaluation (fixed seeds)
    n_reference: int  # held-out images (a seeded sample), embedded once
    solver: str
    batch_size: int

    def __post_init__(self) -> None:
        if self.n_samples < 2 or self.n_reference < 2 or self.batch_size < 1:
            raise ValueError("monitor.n_samples and n_reference must be >= 2, batch_size >= 1")
        check_solver(self.solver, adaptive=False, what="monitor.solver")


@dataclass(frozen=True)
class WarmthParams:
    """Warm-Start Diffusion's warmth (arXiv 2507.09212) for LeDiFlow: trained on sigma blended toward 1 by a random
    w ~ U(0, 1) that the flow model is told; after training, w is chosen per solver and NFE from ``grid`` (FD of
    ``fm.monitor.n_samples`` images against held-out images outside the monitor's reference)."""

    enabled: bool
    grid: list[float]  # the warmths tried at each solver and NFE
    nfe: list[int]  # the NFEs a warmth is chosen for; another NFE uses the choice of the next lower one
    solvers: list[str]  # the solvers a warmth is chosen for (at the NFEs they spend); another uses the last one's
    monitor: list[float]  # the warmths the plateau monitor watches while training; it follows the best of them

    def __post_init__(self) -> None:
        for key in ("grid", "monitor"):
            warmths = list(getattr(self, key))
            if not warmths or any(not 0.0 <= w <= 1.0 for w in warmths):
                raise ValueError(f"warmth.{key} must be warmths in [0, 1], got {warmths}")
        if not self.nfe or any(n < 1 for n in self.nfe):
            raise ValueError(f"warmth.nfe must be positive NFEs, got {list(self.nfe)}")
        if not self.solvers:
            raise ValueError("warmth.solvers must name at least one fixed-step solver")
        for solver in self.solvers:
            check_solver(solver, adaptive=False, what="warmth.solvers")
            if not any(n % stages(solver) == 0 for n in self.nfe):
                raise ValueError(f"warmth.solvers: {solver} spends {stages(solver)} evaluations per step and none "
                                 f"of warmth.nfe {list(self.nfe)} is a multiple of it")


@dataclass(frozen=True)
class ConvergenceParams:
    """When a monitored flow model counts as converged: the least-squares line of its quality over the last
    ``tail_fraction`` of training has a ``confidence`` t-interval of its change that holds 0."""

    tail_fraction: float
    confidence: float

    def __post_init__(self) -> None:
        if not 0.0 < self.tail_fraction <= 1.0:
            raise ValueError(f"convergence.tail_fraction must be in (0, 1], got {self.tail_fraction}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"convergence.confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class FMParams:
    model: DiTConfig
    train: TrainConfig
    time_sampler: TimeSamplerName
    prior_noise_scale: float  # s in x0 = mu(z) + s * exp(lv(z) / 2) * eps
    prior_channels: bool  # LeDiFlow's flow model also sees mu(z) and lv(z) of its x0 as input channels
    warmth: WarmthParams
    monitor: MonitorParams
    convergence: ConvergenceParams

    def __post_init__(self) -> None:
        if self.prior_noise_scale < 0:
            raise ValueError(f"prior_noise_scale must be >= 0, got {self.prior_noise_scale}")


@dataclass(frozen=True)
class FMVariant:
    """What differs between the two instances of ``train_fm``: where x0 comes from, the NFE at which quality is
    monitored during training (LeDiFlow's few steps, the baseline's reference NFE), and the settings each model
    may select on its own (null: ``fm``'s), so that the baseline gets a selection of its own on the same terms."""

    prior: PriorKind
    name: str
    monitor_nfe: int
    time_sampler: TimeSamplerName | None  # null: fm.time_sampler
    lr: float | None  # null: fm.train.lr
    ema_decay: float | None  # null: fm.train.ema_decay

    def __post_init__(self) -> None:
        if self.monitor_nfe < 1:
            raise ValueError(f"monitor_nfe must be positive, got {self.monitor_nfe}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"lr must be positive or null, got {self.lr}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) or null, got {self.ema_decay}")

    def own_settings(self, p: "FMParams") -> "FMParams":
        """``p`` with this variant's own time sampler, learning rate and EMA where it sets them."""
        train = replace(p.train, lr=self.lr if self.lr is not None else p.train.lr,
                        ema_decay=self.ema_decay if self.ema_decay is not None else p.train.ema_decay)
        return replace(p, train=train, time_sampler=self.time_sampler or p.time_sampler)


@dataclass(frozen=True)
class VariantSection:
    """``ledi:`` / ``gaussian:``: the parameters of one namespace of ``train_fm``."""

    variant: FMVariant


# ---------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class BootstrapParams:
    resamples: int  # paired half-sample replicates per quality point (core/metrics/intervals.py)
    confidence: float

    def __post_init__(self) -> None:
        if self.resamples < 2:
            raise ValueError(f"resamples must be at least 2, got {self.resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")


@dataclass(frozen=True)
class ReliabilityParams:
    """When the evaluation itself cannot be trusted (then metrics.json says so instead of a speedup)."""

    min_noise_to_floor: float  # the N(0, I) row must score at least this many times the real-vs-real floor
    min_judge_accuracy: float  # a domain classifier below this test accuracy is too weak a judge


@dataclass(frozen=True)
class ImagePoint:
    """One column of the latent-sampler sweep: the image flow's solver and NFE."""

    solver: str
    nfe: int

    def __post_init__(self) -> None:
        check_solver(self.solver, adaptive=False, what="latent_sweep.image_points solver")
        if self.nfe < 1 or self.nfe % stages(self.solver):
            raise ValueError(f"latent_sweep.image_points: {self.solver} cannot spend NFE {self.nfe} "
                             f"(a positive multiple of its {stages(self.solver)} stage(s))")


@dataclass(frozen=True)
class LatentSweepParams:
    """LeDiFlow at a few image NFE with its latent sampler's solver and steps varied, and from encoder codes
    (a perfect latent sampler): quality against the cost of drawing x0."""

    steps: list[int]  # latent sampler steps to try (empty: only the encoder-code rows)
    solvers: list[str]
    image_points: list[ImagePoint]  # the columns (empty: no latent-sampler sweep)
    choice_nfe: int  # the column (by image NFE) where the frontier (best, cheapest within its interval) is read

    def __post_init__(self) -> None:
        if any(s < 1 for s in self.steps):
            raise ValueError(f"latent_sweep.steps must be positive, got {self.steps}")
        for s in self.solvers:
            check_solver(s, adaptive=False, what="latent_sweep.solvers")
        nfes = [p.nfe for p in self.image_points]
        if len(set(nfes)) != len(nfes):
            raise ValueError(f"latent_sweep.image_points: one column per image NFE, got {nfes}")
        if nfes and self.choice_nfe not in nfes:
            raise ValueError(f"latent_sweep.choice_nfe={self.choice_nfe} is not an NFE of image_points {nfes}")


@dataclass(frozen=True)
class MemorisationParams:
    """When a model counts as copying its training set (then the evaluation says so instead of a verdict)."""

    # The family-wise false-alarm rate of the check: a model is flagged when one of its points has more samples
    # near a training image than a model that copies nothing shows with probability alpha / (its points)
    # (core.metrics.memorisation.close_fraction_limit: the exact null at the sample sizes, Bonferroni-corrected).
    alpha: float

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"memorisation.alpha must be in (0, 1), got {self.alpha}")


@dataclass(frozen=True)
class EvaluateParams:
    n_samples: int  # generated images per sweep point (and the real-vs-real floor's size)
    n_reference: int  # held-out (test) images for the reference statistics (a seeded sample)
    batch_size: int
    nfe_grid: list[int]
    solvers: list[str]
    adaptive_rtols: list[float]  # dopri5 rows
    reference_nfe: int
    extend_baseline_grid: bool  # the baseline's best at the grid's largest NFE: one more point at twice that NFE
    primary_metric: BootstrapMetric
    straightness_samples: int
    straightness_steps: int
    grid_solver: str
    grid_nfe: list[int]  # the sample grid's rows: LeDiFlow and the baseline side by side at these NFE
    grid_images: int
    interpolation_points: int
    inpaint_examples: int
    seed: int | None  # None (the default): derived from run.seed; a number pins it on purpose
    sampling_seeds: int  # > 1: repeat the sweep with more sampling seeds and report their spread
    bootstrap: BootstrapParams
    reliability: ReliabilityParams
    memorisation: MemorisationParams
    latent_sweep: LatentSweepParams

    def __post_init__(self) -> None:
        for name in ("n_samples", "n_reference", "batch_size", "straightness_samples", "straightness_steps",
                     "grid_images", "interpolation_points", "inpaint_examples", "sampling_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_samples < 4 or self.n_reference < 4:
            raise ValueError("n_samples and n_reference must be at least 4 (error bars use half-samples)")
        for s in self.solvers:
            check_solver(s, adaptive=True, what="evaluate.solvers")
        check_solver(self.grid_solver, adaptive=False, what="grid_solver")
        if sorted(set(self.nfe_grid)) != list(self.nfe_grid) or min(self.nfe_grid) < 1:
            raise ValueError(f"nfe_grid must be increasing positive integers, got {self.nfe_grid}")
        if self.reference_nfe not in self.nfe_grid:
            raise ValueError(f"reference_nfe={self.reference_nfe} is not in nfe_grid {self.nfe_grid}")


def resolve_evaluate(ev: EvaluateParams, run: RunParams) -> EvaluateParams:
    """``ev`` with its seed resolved: ``evaluate.seed`` when set (pinned on purpose), else derived from
    ``run.seed``, so that another run seed moves the evaluation's sets, sampling and bootstrap too."""
    return ev if ev.seed is not None else replace(ev, seed=derive_seed(run.seed, "evaluate"))


@dataclass(frozen=True)
class ReportParams:

    title: str
    hash_paths: list[str]  # data and model files whose SHA-256 (and DVC lock hash) go into the report


# ---------------------------------------------------------------- tune
@dataclass(frozen=True)
class Dimension:
    """One dimension of the search space; ``low``/``high`` for numbers, ``choices`` for categories."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None  # a structural option, not a default: which keys apply depends on `type`
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    def __post_init__(self) -> None:
        if self.type == "categorical" and not self.choices:
            raise ValueError("a categorical dimension needs choices")
        if self.type != "categorical" and (self.low is None or self.high is None or self.low >= self.high):
            raise ValueError(f"a {self.type} dimension needs low < high, got {self.low}, {self.high}")


@dataclass(frozen=True)
class Objective:
    nfe: int
    solver: str
    n_samples: int
    n_reference: int


@dataclass(frozen=True)
class Budget:
    prior_steps: int
    latent_flow_steps: int
    fm_steps: int
    report_every: int  # the flow model is scored (and may be pruned) every so many steps


@dataclass(frozen=True)
class TuneParams:
    n_trials: int
    study_name: str
    storage: str
    seed: int | None  # None: derived from run.seed
    objective: Objective
    budget: Budget
    pruner_startup_trials: int
    pruner_warmup_steps: int
    search_space: dict[str, Any]
    worker: int  # this process's index when several work on one study (seeds its sampler)
    heartbeat_s: int  # running trials record a heartbeat this often ...
    stale_after_s: int  # ... and count as dead (their process killed) when it is older than this

    def __post_init__(self) -> None:
        if self.n_trials < 1:
            raise ValueError(f"n_trials must be positive, got {self.n_trials}")
        if not self.search_space:
            raise ValueError("search_space is empty: declare at least one dimension")


SECTIONS: dict[str, type] = {
    "run": RunParams, "data_source": SourceParams, "preprocess": PreprocessParams, "embedder": EmbedderParams,
    "autoencoder": AutoencoderParams, "prior": PriorParams, "latent_flow": LatentFlowParams, "fm": FMParams,
    "ledi": VariantSection, "gaussian": VariantSection, "evaluate": EvaluateParams, "report": ReportParams,
    "tune": TuneParams,
}


def parse(section: str, raw: dict[str, Any] | None) -> Any:
    """The typed parameters of one section; errors name the parameter and the value."""
    return from_dict(SECTIONS[section], raw, section)


def with_run(train: TrainConfig, run: RunParams, model: str) -> TrainConfig:
    """The run's device and the ``model``'s seed, derived from ``run.seed`` (one stream per model)."""
    device = run.device if train.device == "auto" else train.device
    return replace(train, device=device, seed=derive_seed(run.seed, f"train/{model}"))


def model_input_geometry(params: dict[str, Any]) -> tuple[int, int]:
    """(channels, resolution) of the tensors the prior and flow models will see."""
    image = parse("preprocess", params["preprocess"]).image
    run = parse("run", params["run"])
    if run.space == "latent":
        ae = parse("autoencoder", params["autoencoder"])
        if image.resolution % ae.downsampling():
            raise ConfigError(f"preprocess.image.resolution={image.resolution} is not divisible by the autoencoder's "
                              f"downsampling factor {ae.downsampling()}")
        return ae.latent_channels(), image.resolution // ae.downsampling()
    return image.channels, image.resolution


def validate_all(params: dict[str, Any]) -> None:
    """Parse every known section that is present and check the cross-section rules; raise ConfigError
    naming the parameter and the value."""
    parsed = {name: parse(name, params[name]) for name in SECTIONS if name in params}
    run, ae = parsed.get("run"), parsed.get("autoencoder")
    if run is not None and ae is not None and run.space == "latent" and ae.kind == "none":
        raise ConfigError("run.space is 'latent' but autoencoder.kind is 'none': latent space needs an autoencoder "
                          "(set autoencoder.kind to 'train' or 'pretrained', or run.space to 'pixel')")
    if not {"run", "preprocess"} <= set(parsed) or (run.space == "latent" and ae is None):
        return  # the geometry rules need these sections
    _, resolution = model_input_geometry(params)
    fm = parsed.get("fm")
    if fm is not None and resolution % fm.model.patch_size:
        raise ConfigError(f"fm.model.patch_size={fm.model.patch_size} does not divide the resolution {resolution} "
                          f"the backbone sees (run.space={run.space})")
    prior = parsed.get("prior")
    if prior is not None:
        try:
            levels_to(resolution, prior.model.bottleneck)
        except ValueError as exc:
            raise ConfigError(f"prior.model.bottleneck={prior.model.bottleneck}: {exc}") from exc
