"""Helpers shared by the training nodes: running the Trainer under the project's policies,
loss histories as tables and plots."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # nodes render to files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from ledi_kedro.core.checkpoint import CheckpointError  # noqa: E402
from ledi_kedro.core.distributed import barrier, dist_info  # noqa: E402
from ledi_kedro.core.trainer import EvaluateFn, LossFn, TrainConfig, Trainer, TrainResult  # noqa: E402
from ledi_kedro.params import RunParams  # noqa: E402

log = logging.getLogger(__name__)


def run_training(name: str, make_model: Callable[[], nn.Module], loss_fn: LossFn, data: dict[str, torch.Tensor],
                 train: TrainConfig, run: RunParams, model_config: dict[str, Any],
                 evaluate_fn: EvaluateFn | None = None) -> TrainResult:
    """Train (or resume, or skip when finished) with checkpoints in ``run.checkpoint_root/name``.

    When the settings, the data or the code changed since the checkpoints were written (or they
    went past ``steps``, or they no longer load), ``run.on_config_change`` decides: ``restart``
    deletes them and trains afresh, ``error`` stops and says what changed.
    """
    ckpt_dir = Path(run.checkpoint_root) / name

    def fit() -> TrainResult:
        torch.manual_seed(train.seed)  # the same initial weights for the same seed
        return Trainer(make_model(), loss_fn, data, train, checkpoint_dir=ckpt_dir, model_config=model_config,
                       name=name, evaluate_fn=evaluate_fn).fit()

    try:
        return fit()
    except CheckpointError as exc:  # stale, or unreadable (truncated, or no longer fits the model)
        if run.on_config_change != "restart":
            raise
        log.warning("%s; run.on_config_change=restart: deleting %s and training from scratch", exc, ckpt_dir)
        if dist_info().is_main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        barrier()
        return fit()


def history_frame(result: TrainResult) -> pl.DataFrame:
    """One row per training step: step, loss."""
    return pl.DataFrame({"step": list(range(1, len(result.loss_history) + 1)), "loss": result.loss_history},
                        schema={"step": pl.Int64, "loss": pl.Float64})


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema={"step": pl.Int64, "loss": pl.Float64})


def plot_loss_history(history: pl.DataFrame, title: str) -> Figure:
    """Per-step loss (faint) and its moving average, log-scaled."""
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if history.height:
        steps, loss = history["step"].to_numpy(), history["loss"].to_numpy()
        ax.plot(steps, loss, alpha=0.3, lw=0.8, label="per step")
        window = max(1, history.height // 50)
        smooth = history["loss"].rolling_mean(window_size=window, min_samples=1).to_numpy()
        ax.plot(steps, smooth, lw=1.5, label=f"mean of {window}")
        if (loss > 0).all():
            ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "not trained (pixel space)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def final_loss(history: pl.DataFrame) -> float | None:
    """Mean loss over the last 10 % of the steps (a less noisy end-of-training figure)."""
    if history.height == 0:
        return None
    tail = max(1, history.height // 10)
    return float(history["loss"].tail(tail).mean())
