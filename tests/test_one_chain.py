"""One chain for every figure: the benchmarks run the pipelines' steps on the pipelines' settings.

* ``ledi_kedro.conf_files`` (the GPU check's reader, no Kedro) reads every configuration environment exactly
  as Kedro does;
* the GPU check's settings are ``conf/gpu_check``'s, two paths aside;
* ``ledi_kedro.steps.chain.run_chain`` (the default pipeline without Kedro) trains the same weights and
  reports the same metrics as `kedro run` on the same settings and data.
"""

import json
from pathlib import Path

import pytest
import torch
from kedro.config import OmegaConfigLoader
from safetensors.torch import load_file

from ledi_kedro.conf_files import ConfFilesError, load_parameters
from ledi_kedro.core.checkpoint import state_dict_tensors
from ledi_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

ENVIRONMENTS = sorted(p.name for p in (PROJECT_ROOT / "conf").iterdir() if p.is_dir() and p.name != "base")


def kedro_parameters(conf: Path, env: str | None) -> dict:
    return OmegaConfigLoader(conf_source=str(conf), env=env, **CONFIG_LOADER_ARGS)["parameters"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_conf_reader_agrees_with_kedro(env):
    assert load_parameters(PROJECT_ROOT / "conf", env) == kedro_parameters(PROJECT_ROOT / "conf", env)


def test_the_conf_reader_names_what_is_wrong(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "parameters.yml").write_text("run: {seed: 0}\n")
    (tmp_path / "base" / "parameters_x.yml").write_text("run: {seed: 1}\n")
    with pytest.raises(ConfFilesError, match=r"parameters_x.yml: section 'run' is defined in .*parameters.yml too"):
        load_parameters(tmp_path, None)
    (tmp_path / "base" / "parameters_x.yml").write_text("fm: [1\n")
    with pytest.raises(ConfFilesError, match="parameters_x.yml: not valid YAML"):
        load_parameters(tmp_path, None)
    (tmp_path / "base" / "parameters_x.yml").write_text("fm: {steps: 3}\n")
    with pytest.raises(ConfFilesError, match="no_such_env: no such configuration environment"):
        load_parameters(tmp_path, "no_such_env")
    assert load_parameters(tmp_path, "local") == {"run": {"seed": 0}, "fm": {"steps": 3}}  # no conf/local: base


@pytest.mark.parametrize("env", ["gpu_check", "gpu_check_cifar10"])
def test_the_gpu_check_runs_its_environments_settings(monkeypatch, env):
    """Only where things are differs from Kedro's reading of the environment: the data, the checkpoint folder and
    (for the CIFAR-10 part) the judge's weights file."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import gpu_check

    assert {p.env for p in gpu_check.PARTS} == {"gpu_check", "gpu_check_cifar10"}
    params = gpu_check.chain_parameters(env, Path("/data/x"), Path("/tmp/ck"), Path("/w/r.th"))
    kedro = kedro_parameters(PROJECT_ROOT / "conf", env)
    where = {("data_source", "path"): "/data/x", ("run", "checkpoint_root"): "/tmp/ck",
             ("embedder", "pretrained_weights"): "/w/r.th"}
    for (section, key), value in where.items():
        assert params[section].pop(key) == value
        kedro[section].pop(key)
    assert params == kedro
    assert params["fm"]["model"]["size"] == "XS" and params["fm"]["model"]["patch_size"] == 2


@pytest.mark.slow
def test_the_gpu_checks_chain_trains_what_kedro_run_trains(tiny_trained_project, monkeypatch):
    """The tiny project ran `kedro run` with conf/tiny's settings (in conf/local) on its own data; the GPU check's
    part 2 on `conf/tiny` with that data (run_chain, no Kedro) trains the same weights and reports the same
    metrics."""
    monkeypatch.syspath_prepend(str(PROJECT_ROOT / "benchmarks"))
    import gpu_check

    data = Path(load_parameters(tiny_trained_project / "conf", "local")["data_source"]["path"])
    lines, summary, result = gpu_check.flow_comparison("tiny", data, lambda m: None)
    models = tiny_trained_project / "data" / "06_models"
    for name, folder in (("judge", "quality_embedder"), ("prior", "prior"), ("latent_flow", "latent_flow"),
                         ("ledi", "fm_ledi"), ("gaussian", "fm_gaussian")):
        stored = load_file(models / folder / "ema.safetensors")
        ours = state_dict_tensors(result.models[name].ema)
        assert stored.keys() == ours.keys(), name
        assert all(torch.equal(stored[k], ours[k].cpu()) for k in stored), name
    stored = json.loads((tiny_trained_project / "data/08_reporting/metrics.json").read_text())
    ours = json.loads(json.dumps(summary["metrics"]))
    stored.pop("wallclock"), ours.pop("wallclock")
    assert ours == stored
    assert any(line.startswith("| midpoint | ledi |") for line in lines) and json.dumps(summary)  # JSON-able
