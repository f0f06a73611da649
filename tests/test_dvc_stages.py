"""dvc.yaml and tuning/dvc.yaml declare everything each stage's `kedro run` reads and writes, as derived
from the Kedro pipelines (ledi_kedro.dvc_deps), and the data source comes from the parameters."""

import copy

import pytest
import yaml

from ledi_kedro import dvc_deps
from tests.conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def required():
    return dvc_deps.derive(PROJECT_ROOT)


def test_every_pipeline_has_a_complete_stage(required):
    assert set(required) >= {"preprocess", "train_embedder", "train_autoencoder", "train_prior", "train_latent_flow",
                             "train_fm_ledi", "train_fm_gaussian", "evaluate", "report", "tune"}
    assert dvc_deps.check(PROJECT_ROOT, required) == []


def test_the_derivation_sees_code_catalog_params_and_data(required):
    fm = required["train_fm_ledi"]
    assert fm.command == "--pipelines=train_fm --namespaces=ledi"
    assert {"src/ledi_kedro/params.py", "src/ledi_kedro/settings.py", "src/ledi_kedro/hooks.py",
            "src/ledi_kedro/training_nodes.py", "src/ledi_kedro/core/trainer.py", "src/ledi_kedro/datasets/models.py",
            "conf/base/catalog.yml", "conf/local", "data/06_models/quality_embedder", "data/06_models/prior",
            "data/05_model_input/prior_codes.safetensors", "data/06_models/latent_flow"} <= fm.deps
    assert set(fm.params) == {"fm", "ledi", "run"} and "data/06_models/fm_ledi" in fm.outs
    # the baseline's stage reads nothing of the learned prior: a change to it (or to prior.*) leaves the baseline alone
    base = required["train_fm_gaussian"]
    assert set(base.params) == {"fm", "gaussian", "run"} and base.outs == {
        p.replace("ledi", "gaussian") for p in fm.outs}
    assert not {d for d in base.deps if d.startswith("data/") and ("prior" in d or "latent_flow" in d)}
    assert "data/08_reporting/training_quality.png" in required["evaluate"].outs
    tune = required["tune"]  # tune chains the shared training steps and copies every parameter section
    assert "src/ledi_kedro/training_nodes.py" in tune.deps and "prior" in tune.params
    assert not any(d.startswith("src/ledi_kedro/pipelines/train_") for d in tune.deps)  # no pipeline imports another
    assert required["preprocess"].params["data_source"] == "conf/local/parameters_data_source.yml"
    assert dvc_deps.SOURCE_DEP in required["preprocess"].deps


def test_a_missing_entry_is_reported(tmp_path, required):
    for name in ("dvc.yaml", "tuning/dvc.yaml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text((PROJECT_ROOT / name).read_text())
    stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    broken = copy.deepcopy(stages)
    broken["stages"]["evaluate"]["deps"].remove("src/ledi_kedro/params.py")
    broken["stages"]["train_fm_ledi"]["params"] = [p for p in broken["stages"]["train_fm_ledi"]["params"]
                                                   if "conf/base/parameters.yml" not in p]
    broken["stages"]["train_fm_gaussian"]["cmd"] = "kedro run --pipelines=train_fm"
    broken["stages"]["report"]["outs"] = []
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(broken))
    problems = dvc_deps.check(tmp_path, required)
    assert "evaluate: deps miss src/ledi_kedro/params.py" in problems
    assert "train_fm_ledi: params miss conf/base/parameters.yml: run" in problems
    assert "train_fm_gaussian: its command does not run `kedro run --pipelines=train_fm --namespaces=gaussian`" in problems
    assert "report: outs miss data/08_reporting/report.md" in problems


def test_the_data_source_is_a_templated_dependency():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    assert stages["vars"] == ["conf/local/parameters_data_source.yml"]
    source = yaml.safe_load((PROJECT_ROOT / "conf/local/parameters_data_source.yml").read_text())["data_source"]
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_preprocess.yml").read_text())["data_source"]
    assert source == base  # the tracked local copy starts as the default
    assert any(str(d).startswith("${data_source.path}") for d in stages["stages"]["preprocess"]["deps"])


@pytest.mark.slow
def test_a_prior_change_reruns_ledi_but_not_the_baseline(tiny_dvc_copy):
    """The two flow models are two stages: after a change to prior.*, `dvc repro` would rerun the prior and
    everything after it except the Gaussian baseline, which reads nothing of the prior."""
    import re

    from tests.conftest import ok, run

    path = tiny_dvc_copy / "conf/base/parameters_train_prior.yml"
    text = path.read_text()
    assert "  beta_kl: 1.0e-3\n" in text
    path.write_text(text.replace("  beta_kl: 1.0e-3\n", "  beta_kl: 2.0e-3\n"))
    # --force-downstream: a dry run cannot see that the prior's outputs would change, so it would not
    # list the stages after it; forcing them lists exactly the stages downstream of a changed one
    out = ok(run(["dvc", "repro", "--dry", "--force-downstream"], tiny_dvc_copy))
    would_run = set(re.findall(r"Running stage '([^']+)'", out))
    assert {"train_prior", "train_latent_flow", "train_fm_ledi", "evaluate", "report"} <= would_run, out
    assert "train_fm_gaussian" not in would_run and "train_embedder" not in would_run, out
