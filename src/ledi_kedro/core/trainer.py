"""One training loop for every model of the project.

The loop owns what is common: AdamW with linear warm-up, gradient clipping, an EMA copy with
warm-up, bf16 autocast on CUDA, optional ``torch.compile``, DDP under ``torchrun`` (rank 0 logs
and writes; each rank takes its slice of every global batch), data held on the device as a
uint8 tensor when it fits, atomic checkpoints with the full state, automatic resume, a NaN/inf
guard and progress lines. What is model-specific is the ``loss_fn``::

    loss_fn(model, batch, generator) -> loss | (loss, {"name": scalar tensor, ...})

``batch`` maps each data key to the rows of this step; uint8 tensors arrive as float in [-1, 1].
Randomness inside ``loss_fn`` must come from ``generator``, which is reseeded from
(seed, rank, step) every step: that makes a resumed run bit-identical to an uninterrupted one
on the CPU without storing per-rank RNG states.

Optional quality during training: ``evaluate_fn(ema_model, step) -> float`` (lower is better) runs
every ``eval_every`` steps on rank 0; its values are logged, stored in the checkpoint and, with
``plateau_patience`` set, stop training once they no longer improve (``steps`` is then a cap).

A checkpoint is resumed only when it was written by the same settings, data *and code* (the
model's, the loss's and this trainer's, see :mod:`.code_version`), and, for a monitored model, by the
same ``evaluate_key`` (what ``evaluate_fn`` measures): the quality history a checkpoint carries, and so
where the plateau rule stopped, means nothing under another measure. Otherwise it is stale.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import (
    CheckpointError, StaleCheckpointError, list_checkpoints, load_weights, optimizer_from_tensors, optimizer_to_tensors,
    read_checkpoint, state_dict_tensors, step_dir, write_checkpoint,
)
from .code_version import combined_fingerprint, training_code
from .config import from_data
from .data.tensors import as_float
from .distributed import DistInfo, all_reduce_mean, barrier, broadcast_float, dist_info, resolve_device

log = logging.getLogger(__name__)

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]
LossFn = Callable[[nn.Module, dict[str, torch.Tensor], torch.Generator], LossOutput]
EvaluateFn = Callable[[nn.Module, int], float]  # (EMA model, step) -> quality, lower is better

# Settings that may change between a run and its resumption without invalidating the checkpoint
# (evaluation never touches the training random streams, so its settings are among them).
_RESUMABLE_CHANGES = frozenset({"steps", "log_every", "checkpoint_every", "keep_checkpoints", "compile",
                                "data_on_device", "device", "eval_every", "plateau_patience",
                                "plateau_min_rel_improvement", "plateau_window"})


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings shared by all models."""

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warm-up
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio at ``steps``
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay_t = min(ema_decay, (1 + t) / (10 + t))
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast applies on CUDA only
    compile: bool = False
    data_on_device: Literal["auto", "always", "never"] = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    seed: int = from_data(0)  # set per model from run.seed by the pipelines (not a parameter)
    device: str = "auto"  # auto: the run's device (run.device)
    eval_every: int = 0  # quality during training every so many steps (0: never; needs an evaluate_fn)
    plateau_patience: int = 0  # stop when `patience` evaluations in a row bring no real improvement (0: off)
    plateau_min_rel_improvement: float = 0.02  # "real": the best value drops by more than this fraction
    plateau_window: int = 1  # the rule reads running means of this many evaluations (1: the raw values)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.plateau_window < 1:
            raise ValueError(f"plateau_window must be a positive integer, got {self.plateau_window}")
        if self.eval_every < 0 or self.plateau_patience < 0:
            raise ValueError("eval_every and plateau_patience must be >= 0")
        if self.plateau_patience and not self.eval_every:
            raise ValueError("plateau_patience needs eval_every > 0 (the plateau is read off the evaluations)")
        if not 0.0 <= self.plateau_min_rel_improvement < 1.0:
            raise ValueError(f"plateau_min_rel_improvement must be in [0, 1), got {self.plateau_min_rel_improvement}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps, grad_clip and weight_decay must be >= 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be 'bf16' or 'fp32', got {self.precision!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def lr_at(self, step: int) -> float:
        """Linear warm-up to ``lr`` over ``warmup_steps``, then constant or a cosine decay to
        ``lr * min_lr_ratio`` at ``steps``."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    model: nn.Module  # raw weights (unwrapped, on the training device)
    ema: nn.Module  # EMA weights
    loss_history: list[float]  # one value per step, from step 1
    log_history: list[dict[str, float]] = field(default_factory=list)  # means per log interval
    steps: int = 0
    resumed_from: int | None = None
    seconds: float = 0.0
    checkpoint: Path | None = None
    eval_history: list[dict[str, float]] = field(default_factory=list)  # {"step", "quality", "seconds"}
    stop_reason: str = "step_cap"  # "plateau": the quality stopped improving; "step_cap": ran all `steps`


def running_means(values: list[float], window: int) -> list[float]:
    """Means of each full window of ``window`` consecutive values (``len(values) - window + 1`` of them)."""
    return [sum(values[i - window + 1: i + 1]) / window for i in range(window - 1, len(values))]


def plateau_reached(values: list[float], patience: int, min_rel_improvement: float, window: int = 1) -> bool:
    """True when the best of the last ``patience`` running means (of ``window`` evaluations each) is not
    better than the best mean before them by more than ``min_rel_improvement`` (relative; lower is better).

    ``window`` > 1 is what makes the rule robust to a noisy judge: one lucky evaluation neither sets a best
    that later ones cannot beat (an early stop) nor counts as progress (a late one); the mean of ``window``
    values moves by about 1/sqrt(window) of one value's noise. ``window=1`` reads the raw values.
    """
    means = running_means(values, window)
    if patience < 1 or len(means) <= patience:
        return False
    before, recent = min(means[:-patience]), min(means[-patience:])
    return recent > before - min_rel_improvement * abs(before)


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7_919 + step * 104_729 + 1) % (2**63 - 1)


def data_fingerprint(data: dict[str, torch.Tensor], max_rows: int = 4096) -> str:
    """Shapes, dtypes and the bytes of up to ``max_rows`` evenly spaced rows of every tensor:
    cheap even for large data sets, and different whenever the data set is swapped."""
    h = hashlib.sha256()
    for key in sorted(data):
        t = data[key]
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        rows = torch.linspace(0, t.shape[0] - 1, min(max_rows, t.shape[0])).long() if t.shape[0] else None
        if rows is not None:
            h.update(t[rows].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _resumable(train: TrainConfig) -> frozenset[str]:
    """Settings that may change on resumption; ``steps`` shapes a cosine schedule, so then it may not."""
    return _RESUMABLE_CHANGES - {"steps"} if train.lr_schedule == "cosine" else _RESUMABLE_CHANGES


def _fingerprint(train: TrainConfig, model_config: dict[str, Any], data_hash: str, code_hash: str,
                 evaluate_key: dict[str, Any] | None = None) -> str:
    relevant = {k: v for k, v in asdict(train).items() if k not in _resumable(train)}
    parts = {"train": relevant, "model": model_config, "data": data_hash, "code": code_hash}
    if evaluate_key is not None:  # unmonitored models keep the fingerprints they had before there was a key
        parts["evaluate"] = evaluate_key
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _changed_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The keys whose values differ between ``a`` and ``b`` (missing on one side counts), sorted."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def stale_reasons(old: dict[str, Any], new: dict[str, Any], resumable: frozenset[str]) -> list[str]:
    """What differs between a checkpoint's state and this run: settings, data, code (named per module) and
    what the quality monitor measures."""
    reasons = []
    for group in ("train_config", "model_config"):
        a, b = old.get(group, {}), new.get(group, {})
        reasons += [f"{group.split('_')[0]}.{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in _changed_keys(a, b)
                    if k not in resumable]
    if old.get("data_hash") != new.get("data_hash"):
        reasons.append("the training data differ")
    for key, what in (("code", "the code changed"), ("evaluate_key", "the quality monitor changed")):
        changed = _changed_keys(old.get(key) or {}, new.get(key) or {})
        if changed:
            reasons.append(f"{what}: {', '.join(changed)}")
    return reasons


class _EMA:
    """Exponential moving average of a model's weights, with the warm-up decay min(d, (1+t)/(10+t))."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool):
        self.module = copy.deepcopy(model).requires_grad_(False).eval()
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        torch._foreach_lerp_(list(self.module.parameters()), [p.detach() for p in model.parameters()], 1.0 - d)
        for eb, mb in zip(self.module.buffers(), model.buffers()):
            eb.copy_(mb)


class _IntervalLog:
    """Per-step losses and metrics kept on the device between log points (one host sync per interval).
    ``flush`` averages the losses over ranks, so a non-finite loss on any rank stops every rank at the
    same step, before any checkpoint of the bad state is written."""

    def __init__(self, name: str):
        self.name = name
        self.losses: list[torch.Tensor] = []
        self.extras: dict[str, list[torch.Tensor]] = {}

    def add(self, loss: torch.Tensor, metrics: dict[str, torch.Tensor]) -> None:
        self.losses.append(loss.detach().float())
        for k, v in metrics.items():
            self.extras.setdefault(k, []).append(v.detach().float())

    def flush(self, step: int, lr: float, last_good: Path | None) -> tuple[list[float], dict[str, float]]:
        """(per-step losses, interval means); raises NonFiniteLossError on every rank alike."""
        losses = all_reduce_mean(torch.stack(self.losses)).cpu()
        if not torch.isfinite(losses).all():
            first = step - len(losses) + 1 + int((~torch.isfinite(losses)).nonzero()[0])
            where = f"the last good checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
            raise NonFiniteLossError(
                f"{self.name}: loss became {losses[~torch.isfinite(losses)][0].item()} at step {first} (mean over "
                f"ranks); training stopped and {where}. Lower lr or check the data.")
        entry = {"step": step, "loss": float(losses.mean()), "lr": lr}
        entry.update({k: float(all_reduce_mean(torch.stack(v).mean())) for k, v in self.extras.items()})
        self.losses, self.extras = [], {}
        return losses.tolist(), entry


class _DataFeed:
    """Global batches from per-epoch seeded permutations; each rank keeps its slice."""

    def __init__(self, data: dict[str, torch.Tensor], batch: int, seed: int, info: DistInfo,
                 device: torch.device, placement: str):
        sizes = {k: v.shape[0] for k, v in data.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all data tensors need the same first dimension, got {sizes}")
        self.n = next(iter(sizes.values()))
        if batch % info.world_size:
            raise ValueError(f"batch_size={batch} is not divisible by the {info.world_size} processes")
        if self.n < batch:
            raise ValueError(f"batch_size={batch} is larger than the data set ({self.n} items)")
        self.batch, self.seed, self.info, self.device = batch, seed, info, device
        self.local = batch // info.world_size
        nbytes = sum(v.numel() * v.element_size() for v in data.values())
        on_device = placement == "always" or device.type == "cpu" or (
            placement == "auto" and nbytes < 0.25 * torch.cuda.mem_get_info(device)[0])
        self.data = {k: v.to(device) if on_device else (v.pin_memory() if device.type == "cuda" else v)
                     for k, v in data.items()}
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)

    def _permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_step_seed(self.seed, 0, epoch) ^ 0x5EED)
        return torch.randperm(self.n, generator=g)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def restore(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._perm = self._permutation(self.epoch)

    def next(self) -> dict[str, torch.Tensor]:
        if self.pos + self.batch > self.n:  # drop the incomplete tail, start a new epoch
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        idx = self._perm[self.pos: self.pos + self.batch]
        self.pos += self.batch
        r = self.info.rank
        idx = idx[r * self.local: (r + 1) * self.local]
        out = {}
        for k, v in self.data.items():
            rows = v[idx.to(v.device)].to(self.device, non_blocking=True)
            out[k] = as_float(rows) if rows.dtype == torch.uint8 else rows  # labels and codes pass unchanged
        return out


class Trainer:
    """Train ``model`` on ``data`` with ``loss_fn``; see the module docstring."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: dict[str, torch.Tensor], config: TrainConfig,
                 checkpoint_dir: str | Path | None = None, model_config: dict[str, Any] | None = None,
                 name: str = "model", evaluate_fn: EvaluateFn | None = None,
                 evaluate_key: dict[str, Any] | None = None):
        """``evaluate_key``: what ``evaluate_fn`` measures (JSON-able: its settings, fingerprints of the judge
        and the reference), part of the checkpoints' fingerprint."""
        self.cfg, self.loss_fn, self.name, self.evaluate_fn = config, loss_fn, name, evaluate_fn
        self.evaluate_key = evaluate_key
        if config.eval_every and evaluate_fn is None:
            raise ValueError(f"{name}: eval_every={config.eval_every} needs an evaluate_fn")
        self.info = dist_info()
        self.device = resolve_device(config.device, self.info)
        self.model = model.to(self.device)
        self.model_config = model_config or {}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.data_hash = data_fingerprint(data)
        self.code = training_code(model, loss_fn)
        self.fingerprint = _fingerprint(config, self.model_config, self.data_hash, combined_fingerprint(self.code),
                                        evaluate_key)
        self.feed = _DataFeed(data, config.batch_size, config.seed, self.info, self.device, config.data_on_device)
        self._ema = _EMA(self.model, config.ema_decay, config.ema_warmup)
        self.ema = self._ema.module
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]  # biases and norms are not decayed
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(config.beta1, config.beta2), fused=self.device.type == "cuda")
        self.step = 0
        self.loss_history: list[float] = []
        self.log_history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self.noise = torch.Generator(device=self.device)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {"name": self.name, "step": self.step, "fingerprint": self.fingerprint, "data_hash": self.data_hash,
                "code": self.code, "train_config": asdict(self.cfg), "model_config": self.model_config,
                "evaluate_key": self.evaluate_key}

    def _checkpoint_state(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        opt_tensors, opt_rest = optimizer_to_tensors(self.optimizer.state_dict())
        state = self._state() | {"optimizer": opt_rest, "data": self.feed.state(), "log_history": self.log_history,
                                 "eval_history": self.eval_history, "world_size": self.info.world_size}
        extra = {"loss_history": torch.tensor(self.loss_history, dtype=torch.float64),
                 "torch_rng": torch.get_rng_state()}
        return state, {"model": state_dict_tensors(self.model), "ema": state_dict_tensors(self.ema),
                       "optimizer": opt_tensors, "extra": extra}

    def save_checkpoint(self) -> Path | None:
        """Rank 0 writes ``step_N/`` atomically and prunes old ones; other ranks wait."""
        path = None
        if self.checkpoint_dir is not None and self.info.is_main:
            state, tensors = self._checkpoint_state()
            path = write_checkpoint(step_dir(self.checkpoint_dir, self.step), state, tensors)
            for old in list_checkpoints(self.checkpoint_dir)[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("%s: checkpoint %s", self.name, path)
        barrier()
        return path

    def _resume(self) -> int | None:
        if self.checkpoint_dir is None:
            return None
        found = list_checkpoints(self.checkpoint_dir)
        if not found:
            return None
        ckpt = read_checkpoint(found[-1])
        if ckpt.state.get("fingerprint") != self.fingerprint:
            reasons = stale_reasons(ckpt.state, self._state(), _resumable(self.cfg))
            raise StaleCheckpointError(
                f"{ckpt.path}: checkpoint was trained with different settings, data, code or quality monitor "
                f"({'; '.join(reasons) or 'fingerprint differs'}). Delete {self.checkpoint_dir} to start over, "
                "or restore the old settings to resume.")
        if ckpt.step > self.cfg.steps:
            raise StaleCheckpointError(
                f"{ckpt.path}: checkpoint is at step {ckpt.step}, beyond steps={self.cfg.steps}; a shorter run "
                f"cannot be recovered from it. Delete {self.checkpoint_dir} to train {self.cfg.steps} steps afresh.")
        for group in ("model", "ema", "optimizer", "extra"):
            if group not in ckpt.tensors:
                raise CheckpointError(f"{ckpt.path}: {group}.safetensors is missing")
        load_weights(self.model, ckpt.tensors["model"], ckpt.path / "model.safetensors")
        load_weights(self.ema, ckpt.tensors["ema"], ckpt.path / "ema.safetensors")
        opt_state = optimizer_from_tensors(
            {k: v.to(self.device) for k, v in ckpt.tensors["optimizer"].items()}, ckpt.state["optimizer"])
        try:
            self.optimizer.load_state_dict(opt_state)
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{ckpt.path / 'optimizer.safetensors'}: does not fit the optimizer ({exc})") from exc
        self.step = ckpt.step
        self.feed.restore(ckpt.state["data"])
        self.loss_history = ckpt.tensors["extra"]["loss_history"].tolist()
        self.log_history = list(ckpt.state.get("log_history", []))
        self.eval_history = list(ckpt.state.get("eval_history", []))
        torch.set_rng_state(ckpt.tensors["extra"]["torch_rng"])
        log.info("%s: resumed from %s (step %d)", self.name, ckpt.path, self.step)
        return self.step

    # ------------------------------------------------------------------ quality during training
    def _at_plateau(self) -> bool:
        return plateau_reached([e["quality"] for e in self.eval_history], self.cfg.plateau_patience,
                               self.cfg.plateau_min_rel_improvement, self.cfg.plateau_window)

    def _evaluate(self) -> None:
        """Rank 0 scores the EMA model; every rank gets the value (so all take the same stop decision)."""
        start = time.perf_counter()
        value = float("nan")
        if self.info.is_main:
            with torch.no_grad():
                value = float(self.evaluate_fn(self.ema, self.step))
        value = broadcast_float(value, self.device)
        seconds = time.perf_counter() - start
        self.eval_history.append({"step": self.step, "quality": value, "seconds": seconds})
        best = min(e["quality"] for e in self.eval_history)
        if self.info.is_main:
            log.info("%s: step %d | quality %.4g (best %.4g) | evaluated in %.1f s", self.name, self.step, value,
                     best, seconds)

    # ------------------------------------------------------------------ loop
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_model(self) -> nn.Module:
        model: nn.Module = self.model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.cfg.compile else model

    def _optimizer_step(self, train_model: nn.Module, lr: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = self.feed.next()
        self.noise.manual_seed(_step_seed(self.cfg.seed, self.info.rank, self.step))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self._autocast():
            out = self.loss_fn(train_model, batch, self.noise)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._ema.update(self.model, self.step)
        return loss, metrics

    def _log_line(self, entry: dict[str, float]) -> None:
        if not self.info.is_main:
            return
        rate = entry["steps_per_s"]
        eta = (self.cfg.steps - self.step) / max(rate, 1e-9)
        extra = "".join(f" | {k} {v:.4g}" for k, v in entry.items() if k not in ("step", "loss", "lr", "steps_per_s"))
        log.info("%s: step %d/%d | loss %.4f%s | %.2f it/s | %.0f img/s | ETA %s%s", self.name, self.step,
                 self.cfg.steps, entry["loss"], extra, rate, rate * self.cfg.batch_size, _fmt_seconds(eta),
                 " (or earlier at a plateau)" if self.cfg.plateau_patience else "")

    def fit(self) -> TrainResult:
        cfg = self.cfg
        start_time = time.perf_counter()
        resumed = self._resume()
        if self.step >= cfg.steps or self._at_plateau():
            reason = "quality at its plateau" if self._at_plateau() else f"steps={cfg.steps}"
            log.info("%s: already trained to step %d (%s); nothing to do", self.name, self.step, reason)
            return self._result(resumed, 0.0)
        train_model = self._train_model()
        self.model.train()
        interval = _IntervalLog(self.name)
        last_good = list_checkpoints(self.checkpoint_dir)[-1] if self.checkpoint_dir and resumed else None
        t_log, step_log = time.perf_counter(), self.step
        log.info("%s: training steps %d..%d, global batch %d on %s x%d", self.name, self.step + 1, cfg.steps,
                 cfg.batch_size, self.device, self.info.world_size)
        while self.step < cfg.steps:
            lr = cfg.lr_at(self.step)
            loss, metrics = self._optimizer_step(train_model, lr)
            self.step += 1
            interval.add(loss, metrics)
            at_log = self.step % cfg.log_every == 0 or self.step == cfg.steps
            at_eval = bool(cfg.eval_every) and (self.step % cfg.eval_every == 0 or self.step == cfg.steps)
            at_ckpt = self.checkpoint_dir is not None and (self.step % cfg.checkpoint_every == 0
                                                           or self.step == cfg.steps)
            if not (at_log or at_eval or at_ckpt):
                continue
            losses, entry = interval.flush(self.step, lr, last_good)
            self.loss_history.extend(losses)
            now = time.perf_counter()
            entry["steps_per_s"] = (self.step - step_log) / max(now - t_log, 1e-9)
            self.log_history.append(entry)
            if at_log:
                self._log_line(entry)
            stop = False
            if at_eval:
                self._evaluate()
                stop = self._at_plateau()
                if stop:
                    log.info("%s: quality reached its plateau at step %d (no improvement beyond %.0f%% in the last "
                             "%d evaluations); stopping before the cap of %d steps", self.name, self.step,
                             100 * cfg.plateau_min_rel_improvement, cfg.plateau_patience, cfg.steps)
            if (at_ckpt or stop) and self.checkpoint_dir is not None:
                last_good = self.save_checkpoint() or last_good
            t_log, step_log = time.perf_counter(), self.step  # evaluation and checkpoints are not training time
            if stop:
                break
        self.model.eval()
        return self._result(resumed, time.perf_counter() - start_time, last_good)

    def _result(self, resumed: int | None, seconds: float, ckpt: Path | None = None) -> TrainResult:
        if ckpt is None and self.checkpoint_dir is not None:
            found = list_checkpoints(self.checkpoint_dir)
            ckpt = found[-1] if found else None
        return TrainResult(self.model, self.ema, list(self.loss_history), list(self.log_history),
                           self.step, resumed, seconds, ckpt, list(self.eval_history),
                           "plateau" if self._at_plateau() else "step_cap")


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
