"""conf/base is the one source of every parameter's default: it lists every field of every section
(nothing falls back to a default in code), and every configuration environment loads through the
real config loader and validates."""

import dataclasses
import typing

import pytest
from kedro.config import OmegaConfigLoader

from ledi_kedro.core.config import ConfigError, from_dict, is_from_data
from ledi_kedro.params import SECTIONS, parse, validate_all
from ledi_kedro.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

ENVIRONMENTS = sorted(p.name for p in (PROJECT_ROOT / "conf").iterdir() if p.is_dir() and p.name != "base")


def load(env: str) -> dict:
    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return loader["parameters"]


def missing_fields(cls: type, value: typing.Any, where: str) -> list[str]:
    """Dotted names of the fields of ``cls`` (recursively) that ``value`` does not give."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if is_from_data(f):
            continue
        if f.name not in value:
            out.append(f"{where}.{f.name}")
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(value[f.name], dict):
            out += missing_fields(hints[f.name], value[f.name], f"{where}.{f.name}")
    return out


def test_conf_base_lists_every_parameter_of_every_section():
    params = load("base")
    assert set(SECTIONS) <= set(params), f"sections missing from conf/base: {set(SECTIONS) - set(params)}"
    missing = [m for name, cls in SECTIONS.items() for m in missing_fields(cls, params[name], name)]
    assert missing == [], f"conf/base does not list: {missing}"


@pytest.mark.parametrize("env", ["base", *ENVIRONMENTS])
def test_every_environment_loads_and_validates(env):
    params = load(env)
    validate_all(params)
    for section in SECTIONS:
        parse(section, params[section])


def test_parameter_classes_have_no_defaults_of_their_own():
    """Defaults live in the YAML; a parameter class may only give structural options (tune's Dimension)."""
    from ledi_kedro.params import Dimension

    for cls in {c for c in SECTIONS.values()} | {Dimension}:
        for f in dataclasses.fields(cls):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            assert not has_default or cls is Dimension, f"{cls.__name__}.{f.name} has a default in code"


def test_missing_unknown_and_data_derived_keys_are_named():
    params = load("base")
    run = dict(params["run"])
    del run["seed"]
    with pytest.raises(ConfigError, match=r"run: missing parameter\(s\) seed"):
        parse("run", run)
    with pytest.raises(ConfigError, match=r"fm.model: unknown parameter\(s\) resolution \(resolution come\(s\) from"):
        parse("fm", {**params["fm"], "model": {**params["fm"]["model"], "resolution": 32}})
    from ledi_kedro.core.trainer import TrainConfig

    with pytest.raises(ConfigError, match="unknown parameter"):
        from_dict(TrainConfig, {**params["fm"]["train"], "seed": 3}, "fm.train")  # the seed comes from run.seed


def test_the_cifar10_cpu_profile_has_the_fashion_mnist_profiles_budget():
    """conf/cifar10_cpu compares the data sets on one chain: only the data, the channels, the judge, the
    latent-sampler sweep's breadth and the ablation's choices (the warmth, a longer plateau patience) may differ
    from conf/cpu_benchmark."""
    fmnist, cifar = load("cpu_benchmark"), load("cifar10_cpu")
    assert cifar["fm"]["warmth"].pop("enabled") is True is not fmnist["fm"]["warmth"].pop("enabled")
    assert cifar["fm"]["train"].pop("plateau_patience") == 5 > fmnist["fm"]["train"].pop("plateau_patience")
    for section in ("run", "prior", "latent_flow", "fm", "gaussian", "ledi", "autoencoder"):
        assert cifar[section] == fmnist[section], section
    assert {k: v for k, v in cifar["evaluate"].items() if k != "latent_sweep"} == {
        k: v for k, v in fmnist["evaluate"].items() if k != "latent_sweep"}
    assert cifar["preprocess"]["image"]["resolution"] == fmnist["preprocess"]["image"]["resolution"] == 16
    assert cifar["embedder"]["kind"] == "cifar10_resnet56" and cifar["preprocess"]["image"]["channels"] == 3


@pytest.mark.parametrize("change, message", [
    ({"grid": [0.0, 1.5]}, r"fm.warmth: warmth.grid must be warmths in \[0, 1\], got \[0.0, 1.5\]"),
    ({"nfe": []}, r"warmth.nfe must be positive NFEs, got \[\]"),
    ({"monitor": []}, r"fm.warmth: warmth.monitor must be warmths in \[0, 1\], got \[\]"),
    ({"solvers": []}, r"fm.warmth: warmth.solvers must name at least one fixed-step solver"),
    ({"solvers": ["dopri5"]}, r"unknown warmth.solvers 'dopri5'"),
    ({"solvers": ["rk4"], "nfe": [1, 2]}, r"warmth.solvers: rk4 spends 4 evaluations per step and none of warmth.nfe"),
    ({"monitor": [-0.5]}, r"warmth.monitor must be warmths in \[0, 1\], got \[-0.5\]"),
    ({"enabled": "yes"}, r"fm.warmth.enabled"),
])
def test_bad_warmth_settings_name_the_parameter(change, message):
    fm = load("base")["fm"]
    with pytest.raises(ConfigError, match=message):
        parse("fm", {**fm, "warmth": {**fm["warmth"], **change}})
