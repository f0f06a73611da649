"""Optuna study: short LeDiFlow trainings scored by quality at a fixed low NFE, with median pruning.

Each trial copies the project's parameters, applies the suggested values (dotted keys such as
``prior.beta_kl``), shrinks the budgets to ``tune.budget`` and trains prior -> latent sampler ->
LeDiFlow flow model; the flow model is scored every ``report_every`` steps so that the median
pruner can stop weak trials early. The study lives in SQLite, so an interrupted study resumes.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import polars as pl
from filelock import FileLock
from matplotlib.figure import Figure

from ledi_kedro.core.artifacts import TrainedModel, make_generator
from ledi_kedro.core.config import ConfigError, from_dict
from ledi_kedro.core.data.tensors import as_float
from ledi_kedro.core.distributed import resolve_device
from ledi_kedro.core.embedders import build_embedder
from ledi_kedro.core.sweeps import generate_and_embed
from ledi_kedro.core.metrics import frechet_distance
from ledi_kedro.core.subsets import derive_seed
from ledi_kedro.params import Dimension, RunParams, TuneParams, parse, validate_all
from ledi_kedro.steps.training import monitor_rows
from ledi_kedro.training_nodes import (
    encode_prior_codes, train_fm_model, train_latent_flow_model, train_prior_model,
)

log = logging.getLogger(__name__)


def set_dotted(params: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = params
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in flat.items():
        set_dotted(out, k, v)
    return out


def _suggest(trial: optuna.Trial, key: str, dim: Dimension) -> Any:
    if dim.type == "categorical":
        return trial.suggest_categorical(key, dim.choices)
    if dim.type == "int":
        return trial.suggest_int(key, int(dim.low), int(dim.high), log=dim.log)
    return trial.suggest_float(key, float(dim.low), float(dim.high), log=dim.log)


def _fail_stale_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a process that died can never finish: mark them failed. A trial counts as
    dead when its heartbeat is older than ``stale_after_s``, so the running trials of other processes
    working on the same study are left alone."""
    before = {t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING}
    optuna.storages.fail_stale_trials(study)
    after = {t.number for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING}
    return len(before - after)


def _storage(path: Path, tp: TuneParams) -> optuna.storages.RDBStorage:
    """SQLite that several processes can share: a lock timeout instead of "database is locked" errors,
    and heartbeats so that a dead process's trials can be told from a live one's."""
    return optuna.storages.RDBStorage(f"sqlite:///{path}", heartbeat_interval=tp.heartbeat_s,
                                      grace_period=tp.stale_after_s,
                                      engine_kwargs={"connect_args": {"timeout": 120}})


def scoring_set(validation_model_input: dict, tp: TuneParams, run: RunParams) -> dict:
    """The images trials are scored against: a seeded sample of the validation split's selection block (a
    choice never reads the test split, nor the images the plateau monitors watch)."""
    return monitor_rows(validation_model_input, "selection", tp.objective.n_reference, run, "tune's scoring set")


def tune_seed(tp: TuneParams, run: RunParams) -> int:
    """``tune.seed``, or (null, the default) one derived from ``run.seed``."""
    return tp.seed if tp.seed is not None else derive_seed(run.seed, "tune")


def run_study(train_model_input: dict, validation_model_input: dict, quality_embedder: TrainedModel,
              parameters: dict[str, Any], tune: dict) -> tuple[dict, pl.DataFrame, Figure, Figure, Figure]:
    """Run (or resume) the study; return the best parameters, the trials table and Optuna's plots.

    Trials train on the train split and are scored with the project's judge (``quality_embedder``, trained once
    by ``train_embedder``) against :func:`scoring_set`: validation images, never test images."""
    tp = parse("tune", tune)
    run = parse("run", parameters["run"])
    seed = tune_seed(tp, run)
    if train_model_input.get("__metadata__", {}).get("space") == "latent":
        raise ConfigError("tune scores pixel-space runs only (run.space: pixel)")
    space = {k: from_dict(Dimension, v, f"tune.search_space.{k}") for k, v in tp.search_space.items()}
    storage_path = Path(tp.storage)
    storage_path.parent.mkdir(parents=True, exist_ok=True)
    work = storage_path.parent / "trials"
    base = {k: copy.deepcopy(parameters[k]) for k in ("run", "prior", "latent_flow", "fm", "ledi", "evaluate",
                                                      "autoencoder", "preprocess")}
    device = resolve_device(base["run"]["device"])
    embed = build_embedder(quality_embedder, device)
    ref = embed(as_float(scoring_set(validation_model_input, tp, run)["images"]))

    def objective(trial: optuna.Trial) -> float:
        params = copy.deepcopy(base)
        for key, dim in space.items():
            set_dotted(params, key, _suggest(trial, key, dim))
        set_dotted(params, "prior.train.steps", tp.budget.prior_steps)
        set_dotted(params, "latent_flow.train.steps", tp.budget.latent_flow_steps)
        for model in ("prior", "latent_flow", "fm"):  # trials are scored (and pruned) below, not by the training monitor
            set_dotted(params, f"{model}.train.eval_every", 0)
            set_dotted(params, f"{model}.train.plateau_patience", 0)
        params["run"] = dict(params["run"], checkpoint_root=str(work / f"trial_{trial.number:04d}"),
                             on_config_change="error")
        validate_all(params)  # a bad combination fails this trial with a clear message
        prior, _ = train_prior_model(train_model_input, validation_model_input, params["prior"], params["run"])
        codes = encode_prior_codes(prior, train_model_input, params["run"])
        pixel_space = TrainedModel("identity", {}, None, None)
        latent, *_ = train_latent_flow_model(codes, prior, pixel_space, quality_embedder, validation_model_input,
                                             params["latent_flow"], params["run"])
        variant = params["ledi"]["variant"]
        value = math.inf
        for step in range(tp.budget.report_every, tp.budget.fm_steps + 1, tp.budget.report_every):
            set_dotted(params, "fm.train.steps", step)  # resumes from the trial's own checkpoint
            fm, *_ = train_fm_model(train_model_input, prior, codes, latent, pixel_space, quality_embedder,
                                    validation_model_input, params["fm"], variant, params["run"])
            sampler = make_generator(fm, prior, latent, pixel_space, device)
            gen = generate_and_embed(sampler, embed, tp.objective.n_samples, min(250, tp.objective.n_samples),
                                     tp.objective.solver, nfe=tp.objective.nfe, seed=seed)
            value = frechet_distance(gen.features, ref)
            trial.report(value, step)
            log.info("trial %d step %d: FD %.4f at NFE %d", trial.number, step, value, tp.objective.nfe)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    # Workers that start together would each create the database's tables (Optuna's schema set-up is not
    # safe against a concurrent one: "UNIQUE constraint failed: alembic_version"); one at a time.
    with FileLock(f"{storage_path}.lock"):
        study = optuna.create_study(
            study_name=tp.study_name, storage=_storage(storage_path, tp), load_if_exists=True, direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed + 1000 * tp.worker),  # workers must not suggest alike
            pruner=optuna.pruners.MedianPruner(n_startup_trials=tp.pruner_startup_trials,
                                               n_warmup_steps=tp.pruner_warmup_steps))
    stale = _fail_stale_trials(study)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)]
    remaining = max(0, tp.n_trials - len(finished))
    log.info("study %s in %s: %d finished trial(s), %d stale marked failed, %d to run", tp.study_name, storage_path,
             len(finished), stale, remaining)
    if remaining:
        # Other processes may work on the same study: stop once the study as a whole has its trials.
        enough = optuna.study.MaxTrialsCallback(tp.n_trials, states=(optuna.trial.TrialState.COMPLETE,
                                                                     optuna.trial.TrialState.PRUNED,
                                                                     optuna.trial.TrialState.RUNNING))
        study.optimize(objective, n_trials=remaining, catch=(ConfigError,), gc_after_trial=True, callbacks=[enough])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"study {tp.study_name}: no trial completed (all pruned or failed); see the log")
    best = study.best_trial
    log.info("best trial %d: FD %.4f with %s", best.number, best.value, best.params)
    trials = pl.DataFrame([{"number": t.number, "state": t.state.name, "value": t.value,
                            **{f"param.{k}": str(v) for k, v in t.params.items()}} for t in study.trials],
                          infer_schema_length=None)
    return nest(best.params), trials, *_plots(study)


def _plots(study: optuna.Study) -> tuple[Figure, Figure, Figure]:
    import matplotlib

    matplotlib.use("Agg")  # Optuna draws through pyplot: to files, never to a window
    from optuna.visualization import matplotlib as ovm

    figs = []
    for fn in (ovm.plot_optimization_history, ovm.plot_param_importances, ovm.plot_parallel_coordinate):
        try:
            with warnings.catch_warnings():  # Optuna marks its matplotlib backend as experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = fn(study)
            fig = (ax if not hasattr(ax, "__len__") else ax.flat[0]).figure
        except (ValueError, RuntimeError) as exc:  # e.g. importances need >= 2 completed trials
            fig = Figure(figsize=(5, 2))
            axis = fig.subplots()
            axis.text(0.5, 0.5, f"{fn.__name__}: {exc}", ha="center", va="center", wrap=True, fontsize=8)
            axis.set_axis_off()
        fig.set_size_inches(7, 4.5)
        fig.tight_layout()
        figs.append(fig)
    return figs[0], figs[1], figs[2]


def best_params_for_kedro(best: dict) -> tuple[dict, dict]:
    """The same best values as a parameters file (drop into conf/<env>/) and as a `kedro run
    --config` file (``run: {params: ...}``)."""
    return best, {"run": {"params": best}}
