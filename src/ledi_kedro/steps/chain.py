"""The default pipeline (`kedro run`) in one process without Kedro: the same steps, in the same order, on the
same parameters, with the hand-offs in memory instead of files. For machines without Kedro (the GPU check);
the test suite checks that it trains the same weights as `kedro run` on the same settings and data.

Nothing is written but the training checkpoints (``run.checkpoint_root``): the caller keeps what it needs
from the returned :class:`ChainResult`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ledi_kedro.core.artifacts import GeneratorArtifact, TrainedModel
from ledi_kedro.params import FMVariant, SECTIONS, parse, resolve_evaluate, validate_all

from ledi_kedro.core.config import from_dict
from ledi_kedro.steps import evaluation as ev_steps
from ledi_kedro.steps import training as train_steps
from ledi_kedro.steps.data import ingest_source, split_assignment, split_tensors

log = logging.getLogger(__name__)

FLOW_NAMESPACES = ("ledi", "gaussian")  # the two instances of train_fm (parameters `ledi:` and `gaussian:`)


@dataclass
class ChainResult:
    judge_metrics: dict[str, Any]
    models: dict[str, TrainedModel]  # judge, autoencoder, prior, latent_flow, ledi, gaussian
    flow_status: dict[str, dict[str, Any]]  # per flow model: where it stopped and why
    rows: list[dict[str, Any]]  # the NFE sweep with intervals and memorisation fields
    latent_rows: list[dict[str, Any]]  # the latent-sampler sweep and the encoder-code rows
    straightness: dict[str, float]
    summary: ev_steps.Summary
    minutes: dict[str, float] = field(default_factory=dict)  # per stage


def _tensors(split: dict[str, Any]) -> dict[str, Any]:
    """What a stored tensor file gives back: torch tensors (Kedro's TensorDictDataset round trip)."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in split.items()}


def run_chain(params: dict[str, Any], progress: Callable[[str], None] = log.info) -> ChainResult:
    """Run preprocess, train_embedder, train_autoencoder, train_prior, train_latent_flow, train_fm (both
    namespaces) and evaluate on ``params`` (every section, as :func:`ledi_kedro.conf_files.load_parameters`
    gives them), after the same validation as `kedro run`."""
    validate_all(params)
    p = {name: parse(name, params[name]) for name in SECTIONS if name in params and name not in ("tune", "report")}
    run, minutes, clock = p["run"], {}, time.perf_counter()
    torch.manual_seed(run.seed)  # what the project's seeding hook does before a Kedro run

    def stage(name: str) -> None:
        nonlocal clock
        minutes[name] = (time.perf_counter() - clock) / 60
        progress(f"{name}: {minutes[name]:.1f} min")
        clock = time.perf_counter()

    ingested = ingest_source(p["data_source"], p["preprocess"])
    train_images, validation_images, test_images = map(
        _tensors, split_tensors(ingested, *split_assignment(ingested, p["preprocess"])))
    stage("preprocess")
    judge, judge_metrics, _ = train_steps.train_judge(train_images, validation_images, p["embedder"], run)
    stage("train_embedder")
    autoencoder, _ = train_steps.train_autoencoder(train_images, p["autoencoder"], run)
    train_input, validation_input, _ = train_steps.model_inputs(autoencoder, train_images, validation_images, run)
    stage("train_autoencoder")
    prior, _ = train_steps.train_prior(train_input, validation_input, p["prior"], run)
    codes = train_steps.encode_codes(prior, train_input, run)
    stage("train_prior")
    latent_flow, _ = train_steps.train_latent_flow(codes, prior, autoencoder, judge, validation_input,
                                                   p["latent_flow"], run)
    stage("train_latent_flow")
    flows, status = {}, {}
    for ns in FLOW_NAMESPACES:
        variant = from_dict(FMVariant, params[ns]["variant"], f"{ns}.variant")
        learned = variant.prior == "learned"  # the baseline reads nothing of the learned prior, as in train_fm
        flows[ns], result = train_steps.train_flow(train_input, prior if learned else None, codes if learned else None,
                                                   latent_flow if learned else None, autoencoder, judge,
                                                   validation_images,
                                                   p["fm"], variant, run)
        status[ns] = train_steps.flow_training_status([e["quality"] for e in result.eval_history], result.steps,
                                                      p["fm"], variant, [e["step"] for e in result.eval_history])
    generators = {ns: GeneratorArtifact.of(flows[ns], prior, latent_flow, autoencoder) for ns in FLOW_NAMESPACES}
    stage("train_fm")
    ev = resolve_evaluate(p["evaluate"], run)
    test_input = train_steps.model_input(autoencoder, test_images, run)  # the evaluation's encode_test_split
    ref = ev_steps.reference_set(judge, train_images, test_images, ev, run, autoencoder, test_input)
    points, _ = ev_steps.sweep_points(generators["ledi"], generators["gaussian"], judge, ref, ev, run,
                                      progress=progress)
    rows = ev_steps.with_intervals(points, ref, ev)
    straight = ev_steps.flow_straightness(generators["ledi"], generators["gaussian"], ev, run)
    latent_rows = ev_steps.latent_sampler_points(generators["ledi"], judge, train_input, test_input, ref, ev, run)
    summary = ev_steps.summarize(rows, latent_rows, straight, judge_metrics, ref, status["ledi"], status["gaussian"],
                                 ev)
    stage("evaluate")
    models = {"judge": judge, "autoencoder": autoencoder, "prior": prior, "latent_flow": latent_flow, **flows}
    return ChainResult(judge_metrics, models, status, rows, latent_rows, straight, summary, minutes)
