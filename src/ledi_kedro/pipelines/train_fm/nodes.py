"""Summaries and plots of the image flow models (the training step itself, shared with ``tune``, is
:func:`ledi_kedro.training.train_fm_model`: LeDiFlow from the learned prior, or the N(0, I) baseline)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ledi_kedro.core.config import from_dict  # noqa: E402
from ledi_kedro.params import FMVariant, parse  # noqa: E402
from ledi_kedro.steps.training import flow_training_status  # noqa: E402
from ledi_kedro.training import final_loss, plot_loss_history  # noqa: E402


def summarize_fm(history: pl.DataFrame, quality_history: pl.DataFrame, fm: dict, variant: dict) -> dict[str, Any]:
    """Training figures, and whether the quality reached its plateau or training hit the step cap."""
    status = flow_training_status(quality_history["quality"].to_list() if quality_history.height else [],
                                  history.height, parse("fm", fm), from_dict(FMVariant, variant, "variant"))
    return status | {"final_train_loss": final_loss(history)}


def plot_fm_loss(history: pl.DataFrame, variant: dict):
    v = from_dict(FMVariant, variant, "variant")
    return plot_loss_history(history, f"flow model ({v.prior} prior)")


def plot_training_quality(ledi: pl.DataFrame, gaussian: pl.DataFrame, ledi_variant: dict,
                          gaussian_variant: dict) -> Figure:
    """Quality (FD, judge features) against training step for both flow models."""
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for frame, variant, style in ((ledi, ledi_variant, "o-"), (gaussian, gaussian_variant, "s--")):
        v = from_dict(FMVariant, variant, "variant")
        if frame.height:
            ax.plot(frame["step"].to_list(), frame["quality"].to_list(), style,
                    label=f"{'LeDiFlow' if v.prior == 'learned' else 'Gaussian'} (NFE {v.monitor_nfe})")
    if ledi.height or gaussian.height:
        ax.set_yscale("log")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "quality not monitored (fm.train.eval_every: 0)", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("training step")
    ax.set_ylabel("FD (judge features)")
    ax.set_title("quality during training")
    fig.tight_layout()
    return fig
