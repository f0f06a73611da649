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
from .distributed import DistInfo, barrier, dist_info, resolve_device

log = logging.getLogger(__name__)

LossOutput = torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]
LossFn = Callable[[nn.Module, dict[str, torch.Tensor], torch.Generator], LossOutput]

# Settings that may change between a run and its resumption without invalidating the checkpoint.
_RESUMABLE_CHANGES = frozenset({"steps", "log_every", "checkpoint_every", "keep_checkpoints", "compile",
                                "data_on_device", "device"})


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
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
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


def _fingerprint(train: TrainConfig, model_config: dict[str, Any], data_hash: str) -> str:
    relevant = {k: v for k, v in asdict(train).items() if k not in _resumable(train)}
    blob = json.dumps({"train": relevant, "model": model_config, "data": data_hash}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
            out[k] = rows.float() / 127.5 - 1.0 if rows.dtype == torch.uint8 else rows
        return out


class Trainer:
    """Train ``model`` on ``data`` with ``loss_fn``; see the module docstring."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data: dict[str, torch.Tensor], config: TrainConfig,
                 checkpoint_dir: str | Path | None = None, model_config: dict[str, Any] | None = None,
                 name: str = "model"):
        self.cfg, self.loss_fn, self.name = config, loss_fn, name
        self.info = dist_info()
        self.device = resolve_device(config.device, self.info)
        self.model = model.to(self.device)
        self.model_config = model_config or {}
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.data_hash = data_fingerprint(data)
        self.fingerprint = _fingerprint(config, self.model_config, self.data_hash)
        self.feed = _DataFeed(data, config.batch_size, config.seed, self.info, self.device, config.data_on_device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]  # biases and norms are not decayed
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(config.beta1, config.beta2), fused=self.device.type == "cuda")
        self.step = 0
        self.loss_history: list[float] = []
        self.log_history: list[dict[str, float]] = []
        self.noise = torch.Generator(device=self.device)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        opt_tensors, opt_rest = optimizer_to_tensors(self.optimizer.state_dict())
        state = {
            "name": self.name, "step": self.step, "fingerprint": self.fingerprint, "data_hash": self.data_hash,
            "train_config": asdict(self.cfg), "model_config": self.model_config,
            "optimizer": opt_rest, "data": self.feed.state(), "log_history": self.log_history,
            "world_size": self.info.world_size,
        }
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
            old = {"train": ckpt.state.get("train_config", {}), "model": ckpt.state.get("model_config", {})}
            new = {"train": asdict(self.cfg), "model": self.model_config}
            diffs = [f"{g}.{k}: {old[g].get(k)!r} -> {new[g].get(k)!r}" for g in new
                     for k in sorted(set(old[g]) | set(new[g]))
                     if old[g].get(k) != new[g].get(k) and k not in _resumable(self.cfg)]
            if ckpt.state.get("data_hash") != self.data_hash:
                diffs.append("the training data differ")
            raise StaleCheckpointError(
                f"{ckpt.path}: checkpoint was trained with a different configuration "
                f"({'; '.join(diffs) or 'fingerprint differs'}). Delete {self.checkpoint_dir} to start over, "
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
        torch.set_rng_state(ckpt.tensors["extra"]["torch_rng"])
        log.info("%s: resumed from %s (step %d)", self.name, ckpt.path, self.step)
        return self.step

    # ------------------------------------------------------------------ loop
    @torch.no_grad()
    def _update_ema(self) -> None:
        d = self.cfg.ema_decay
        if self.cfg.ema_warmup:
            d = min(d, (1 + self.step) / (10 + self.step))
        ema_p = [p for p in self.ema.parameters()]
        model_p = [p.detach() for p in self.model.parameters()]
        torch._foreach_lerp_(ema_p, model_p, 1.0 - d)
        for eb, mb in zip(self.ema.buffers(), self.model.buffers()):
            eb.copy_(mb)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self) -> TrainResult:
        cfg = self.cfg
        start_time = time.perf_counter()
        resumed = self._resume()
        if self.step >= cfg.steps:
            log.info("%s: already trained to step %d (steps=%d); nothing to do", self.name, self.step, cfg.steps)
            return self._result(resumed, 0.0)
        train_model: nn.Module = self.model
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            train_model = torch.compile(train_model)
        self.model.train()
        window: list[torch.Tensor] = []
        extras: dict[str, list[torch.Tensor]] = {}
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        last_good = list_checkpoints(self.checkpoint_dir)[-1] if self.checkpoint_dir and resumed else None
        t_log, step_log = time.perf_counter(), self.step
        log.info("%s: training steps %d..%d, global batch %d on %s x%d", self.name, self.step + 1, cfg.steps,
                 cfg.batch_size, self.device, self.info.world_size)
        while self.step < cfg.steps:
            batch = self.feed.next()
            self.noise.manual_seed(_step_seed(cfg.seed, self.info.rank, self.step))
            lr = cfg.lr_at(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with self._autocast():
                out = self.loss_fn(train_model, batch, self.noise)
            loss, metrics = out if isinstance(out, tuple) else (out, {})
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._update_ema()
            self.step += 1
            loss = loss.detach().float()
            bad |= ~torch.isfinite(loss)
            window.append(loss)
            for k, v in metrics.items():
                extras.setdefault(k, []).append(v.detach().float())
            at_log = self.step % cfg.log_every == 0 or self.step == cfg.steps
            at_ckpt = self.checkpoint_dir is not None and (self.step % cfg.checkpoint_every == 0
                                                           or self.step == cfg.steps)
            if at_log or at_ckpt:
                losses = torch.stack(window).cpu()
                if bool(bad):  # one host sync per interval, not per step
                    first = self.step - len(window) + 1 + int((~torch.isfinite(losses)).nonzero()[0])
                    where = f"the last good checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
                    raise NonFiniteLossError(
                        f"{self.name}: loss became {losses[~torch.isfinite(losses)][0].item()} at step {first}; "
                        f"training stopped and {where}. Lower lr or check the data.")
                self.loss_history.extend(losses.tolist())
                entry = {"step": self.step, "loss": float(losses.mean()), "lr": lr}
                entry.update({k: float(torch.stack(v).mean()) for k, v in extras.items()})
                window, extras = [], {}
                now = time.perf_counter()
                rate = (self.step - step_log) / max(now - t_log, 1e-9)
                entry["steps_per_s"] = rate
                self.log_history.append(entry)
                if self.info.is_main:
                    eta = (cfg.steps - self.step) / max(rate, 1e-9)
                    extra_txt = "".join(f" | {k} {v:.4g}" for k, v in entry.items()
                                        if k not in ("step", "loss", "lr", "steps_per_s"))
                    log.info("%s: step %d/%d | loss %.4f%s | %.2f it/s | %.0f img/s | ETA %s", self.name,
                             self.step, cfg.steps, entry["loss"], extra_txt, rate, rate * cfg.batch_size,
                             _fmt_seconds(eta))
                t_log, step_log = now, self.step
                if at_ckpt:
                    last_good = self.save_checkpoint() or last_good
        self.model.eval()
        return self._result(resumed, time.perf_counter() - start_time, last_good)

    def _result(self, resumed: int | None, seconds: float, ckpt: Path | None = None) -> TrainResult:
        if ckpt is None and self.checkpoint_dir is not None:
            found = list_checkpoints(self.checkpoint_dir)
            ckpt = found[-1] if found else None
        return TrainResult(self.model, self.ema, list(self.loss_history), list(self.log_history),
                           self.step, resumed, seconds, ckpt)


def _fmt_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
