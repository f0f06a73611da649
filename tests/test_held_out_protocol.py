"""Select on validation, confirm on test (docs/design.md §3), by construction:

* the registered pipelines: the test split is an input of the ``evaluate`` pipeline alone, and nothing that
  trains, tunes or chooses is downstream of it;
* the sets: the monitors', the choices' (the warmth, tune) and the evaluation's rows never share an image, for
  run seeds 0-4, and another run seed moves every one of them (unless a setting pins a seed on purpose).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ledi_kedro.core.data.ingest import ImageRecord, IngestResult
from ledi_kedro.core.subsets import VALIDATION_PURPOSES, derive_seed, purpose_block
from ledi_kedro.params import parse, resolve_evaluate, with_run
from ledi_kedro.pipelines.tune.nodes import scoring_set, tune_seed
from ledi_kedro.steps.data import split_assignment, split_tensors
from ledi_kedro.steps.evaluation import evaluation_rows
from ledi_kedro.steps.training import monitor_rows, prior_eval_rows, training_subset
from tests.conftest import PROJECT_ROOT, base_params

TEST_SPLIT = {"test_image_tensors", "test_model_input"}
# The pipelines allowed downstream of the test split: the evaluation and the report that renders it.
READS_TEST = {"evaluate", "report"}


@pytest.fixture(scope="module")
def registered():
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(PROJECT_ROOT)
    return {name: pipe for name, pipe in pipelines.items() if name != "__default__"}


def _downstream(pipelines: dict, start: set[str]) -> set[str]:
    """Every dataset computed, in any registered pipeline, from ``start``."""
    reached, grew = set(start), True
    while grew:
        grew = False
        for pipe in pipelines.values():
            for node in pipe.nodes:
                if set(node.inputs) & reached and not set(node.outputs) <= reached:
                    reached |= set(node.outputs)
                    grew = True
    return reached


def test_only_the_evaluation_reads_the_test_split(registered):
    readers = {name for name, pipe in registered.items() for node in pipe.nodes if set(node.inputs) & TEST_SPLIT}
    assert readers == {"evaluate"}
    tainted = _downstream(registered, {"test_image_tensors"})
    assert "test_model_input" in tainted  # encoded by the evaluation itself
    for name, pipe in registered.items():
        if name in READS_TEST:
            continue
        reached = sorted(node.name for node in pipe.nodes if set(node.inputs) & tainted)
        assert not reached, f"pipeline {name}: nodes {reached} are downstream of the test split"
    # and every training, tuning or selection node reads the validation split instead
    validation = _downstream(registered, {"validation_image_tensors"})
    for name in ("train_embedder", "train_prior", "train_latent_flow", "train_fm", "tune"):
        assert any(set(n.inputs) & validation for n in registered[name].nodes), name


def test_the_default_pipeline_holds_the_same_graph(registered):
    # the static site of `kedro viz build` shows this graph: the test split's one edge goes to the evaluation
    evaluate_inputs = registered["evaluate"].inputs()
    assert "test_image_tensors" in evaluate_inputs and "validation_image_tensors" not in evaluate_inputs


def _dataset(n_train: int = 400, n_test: int = 300, classes: int = 5) -> IngestResult:
    """Images whose one pixel value is their id (the sets below compare ids, whatever split they sit in)."""
    ids = np.arange(n_train + n_test)
    images = np.zeros((len(ids), 1, 2, 2), dtype=np.int64)
    images[:, 0, 0, 0] = ids
    records = [ImageRecord(source=f"{i}.png", split="train" if i < n_train else "test", class_name=f"c{i % classes}",
                           width=2, height=2, mode="L", sha256=str(i)) for i in ids]
    return IngestResult(images=images, records=records, rejected=[], class_names=[f"c{c}" for c in range(classes)],
                        seconds=0.0)


def _ids(split: dict) -> set[int]:
    return set(torch.as_tensor(split["images"])[:, 0, 0, 0].tolist())


def _params(seed: int) -> dict:
    return base_params({
        "run": {"seed": seed, "device": "cpu", "max_train_images": 200},
        "preprocess": {"validation_size": 120, "max_validation_fraction": 0.5},
        "evaluate": {"n_reference": 100, "n_samples": 50},
        "prior": {"eval_images": 40},
        "latent_flow": {"monitor": {"n_reference": 30}},
        "fm": {"monitor": {"n_reference": 50}},
        "tune": {"objective": {"n_reference": 50}},
    })


def _sets(seed: int) -> dict[str, set[int]]:
    """The ids each purpose reads, through the functions the pipelines call."""
    params = _params(seed)
    run, pre = parse("run", params["run"]), parse("preprocess", params["preprocess"])
    ingested = _dataset()
    train, validation, test = (
        {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in split.items()}
        for split in split_tensors(ingested, *split_assignment(ingested, pre)))
    fm, lf, prior = parse("fm", params["fm"]), parse("latent_flow", params["latent_flow"]), parse("prior", params["prior"])
    ev = resolve_evaluate(parse("evaluate", params["evaluate"]), run)
    ref_rows, held_out_rows = evaluation_rows(int(test["images"].shape[0]), ev)
    return {
        "training": _ids(training_subset(train, run.max_train_images, run.seed)),
        "fm_monitor": _ids(monitor_rows(validation, "monitor", fm.monitor.n_reference, run, "fm")),
        "latent_monitor": _ids(monitor_rows(validation, "monitor", lf.monitor.n_reference, run, "latent")),
        "prior_monitor": _ids(prior_eval_rows(validation, prior, run)),
        "warmth_choice": _ids(monitor_rows(validation, "selection", fm.monitor.n_reference, run, "warmth")),
        "tune_scoring": _ids(scoring_set(validation, parse("tune", params["tune"]), run)),
        "evaluation_reference": _ids({"images": test["images"][ref_rows]}),
        "evaluation_held_out": _ids({"images": test["images"][held_out_rows]}),
    }


# Purposes that may share rows: the plateau monitors of the three models watch one block, the choices another.
SAME_PURPOSE = [{"fm_monitor", "latent_monitor", "prior_monitor"}, {"warmth_choice", "tune_scoring"}]


@pytest.mark.parametrize("seed", range(5))
def test_sets_drawn_for_different_purposes_never_share_an_image(seed):
    sets = _sets(seed)
    assert all(sets.values()), {k: len(v) for k, v in sets.items()}
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if any({a, b} <= group for group in SAME_PURPOSE):
                continue
            assert not sets[a] & sets[b], f"seed {seed}: {a} and {b} share {sorted(sets[a] & sets[b])[:5]}"


def test_another_run_seed_moves_every_set_and_every_derived_seed():
    a, b = _sets(0), _sets(1)
    for purpose in a:
        assert a[purpose] != b[purpose], purpose
    p0, p1 = _params(0), _params(1)
    r0, r1 = parse("run", p0["run"]), parse("run", p1["run"])
    fm0, fm1 = (with_run(parse("fm", p["fm"]).train, r, "flow") for p, r in ((p0, r0), (p1, r1)))
    assert fm0.seed != fm1.seed
    ev0, ev1 = (resolve_evaluate(parse("evaluate", p["evaluate"]), r) for p, r in ((p0, r0), (p1, r1)))
    assert ev0.seed != ev1.seed
    assert tune_seed(parse("tune", p0["tune"]), r0) != tune_seed(parse("tune", p1["tune"]), r1)
    # a setting that pins a seed on purpose keeps it: evaluate.seed, and the judge's embedder.seed
    pinned = parse("evaluate", {**p0["evaluate"], "seed": 7})
    assert resolve_evaluate(pinned, r0).seed == resolve_evaluate(pinned, r1).seed == 7


def test_derived_seeds_are_stable_and_distinct_per_purpose():
    assert derive_seed(0, "evaluate") == derive_seed(0, "evaluate")  # the same on every machine (sha256)
    seeds = {derive_seed(s, p) for s in range(5) for p in ("evaluate", "train/flow", "train/prior", "monitor/sampling")}
    assert len(seeds) == 20 and all(0 <= s < 2**31 for s in seeds)


def test_validation_blocks_partition_the_split():
    blocks = [set(purpose_block(101, VALIDATION_PURPOSES, p, seed=3).tolist()) for p in VALIDATION_PURPOSES]
    assert not blocks[0] & blocks[1] and blocks[0] | blocks[1] == set(range(101))
    assert abs(len(blocks[0]) - len(blocks[1])) <= 1
    with pytest.raises(ValueError, match="unknown purpose 'test'"):
        purpose_block(10, VALIDATION_PURPOSES, "test", seed=0)


def test_a_validation_split_too_small_for_a_monitor_names_the_setting():
    run = parse("run", base_params({"run": {"device": "cpu"}})["run"])
    few = {"images": torch.zeros(3, 1, 2, 2), "labels": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"the flow model's monitor reads the validation split's monitor block.*"
                                         r"raise preprocess.validation_size"):
        monitor_rows(few, "monitor", 10, run, "the flow model's monitor")


@pytest.mark.parametrize("name", ["select", "evaluate"])
def test_each_scoring_pipeline_imports_on_its_own(name):
    """`kedro run --pipelines=NAME` imports that pipeline's module alone, in a fresh interpreter."""
    import subprocess
    import sys

    code = f"import ledi_kedro.pipelines.{name} as p; print(len(p.create_pipeline().nodes))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and int(done.stdout.strip()) >= 6, done.stderr[-2000:]
