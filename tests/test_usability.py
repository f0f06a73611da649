"""The sampler API, the `ledi` command, Kedro-Viz's static build, the notebook and the tune pipeline."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ok
import torch

import ledi_kedro
from ledi_kedro.api import IncompatibleModelError, ModelNotFoundError


def test_load_generator_both_kinds(tiny_trained_project):
    models = tiny_trained_project / "data/06_models"
    ledi = ledi_kedro.load_generator(models / "fm_ledi")
    gauss = ledi_kedro.load_sampler(models / "fm_gaussian", device="cpu")  # the earlier name, the same function
    assert ledi.learned and not gauss.learned and ledi_kedro.load_sampler is ledi_kedro.load_generator
    # the one-artifact generator that train_fm writes samples exactly as the flow model with its sibling parts
    whole = ledi_kedro.load_generator(models / "generator_ledi")
    torch.testing.assert_close(whole.sample(3, nfe=4, solver="midpoint", seed=0).images,
                               ledi.sample(3, nfe=4, solver="midpoint", seed=0).images, rtol=0, atol=0)
    out = ledi.sample(3, nfe=4, solver="midpoint", seed=0)
    assert out.images.shape == (3, 1, 8, 8) and out.nfe == 4
    torch.testing.assert_close(ledi.sample(3, nfe=4, solver="midpoint", seed=0).images, out.images)
    assert ledi.interpolate(0, 1, 4, steps=2).images.shape[0] == 4
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    known = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(gauss.inpaint(known, mask, steps=2).images[..., :4], known[..., :4])


def test_load_generator_errors(tiny_trained_project, tmp_path):
    models = tiny_trained_project / "data/06_models"
    with pytest.raises(ModelNotFoundError, match="no trained flow model at .*nowhere"):
        ledi_kedro.load_sampler(tmp_path / "nowhere")
    with pytest.raises(IncompatibleModelError, match="holds a 'prior' model, not a flow model"):
        ledi_kedro.load_sampler(models / "prior")
    with pytest.raises(ModelNotFoundError, match="no prior"):
        ledi_kedro.load_sampler(models / "fm_ledi", prior=tmp_path)


def ledi_cli(*args):
    """`ledi ...` in this process (the entry point is `ledi_kedro.sampler_cli:main`): code, stdout, stderr."""
    import contextlib
    import io

    from ledi_kedro.sampler_cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse errors and --help
            code = exc.code
    return subprocess.CompletedProcess(["ledi", *args], code, out.getvalue(), err.getvalue())


def test_cli_generate_and_interpolate(tiny_trained_project, tmp_path):
    from PIL import Image

    model = tiny_trained_project / "data/06_models/fm_ledi"
    proc = ledi_cli("generate", "--model", str(model), "--n", "6", "--nfe", "4", "--solver", "midpoint",
                    "--out", str(tmp_path / "grid.png"), "--nrow", "3", "--device", "cpu")
    ok(proc)
    assert "6 images from the LeDiFlow model" in proc.stdout and "image NFE 4" in proc.stdout
    assert Image.open(tmp_path / "grid.png").size == (3 * 10 + 2, 2 * 10 + 2)
    proc = ledi_cli("interpolate", "--model", str(model.parent / "fm_gaussian"), "--points", "5",
                    "--out", str(tmp_path / "strip.png"), "--nfe", "2", "--solver", "euler")
    ok(proc)
    assert Image.open(tmp_path / "strip.png").size == (5 * 10 + 2, 12)


def test_cli_errors_and_help(tiny_trained_project, tmp_path):
    proc = ledi_cli("generate", "--model", str(tmp_path), "--out", str(tmp_path / "x.png"))
    assert proc.returncode == 2 and "no trained flow model" in proc.stderr
    assert not (tmp_path / "x.png").exists()
    proc = ledi_cli("generate", "--model", str(tiny_trained_project / "data/06_models/prior"), "--out", "x.png")
    assert proc.returncode == 2 and "not a flow model" in proc.stderr
    proc = ledi_cli("generate", "--model", "m", "--out", "x.png", "--solver", "midpoint", "--nfe", "3")
    assert proc.returncode == 2 and "--nfe: nfe=3 is not a positive multiple of midpoint's 2" in proc.stderr
    helptext = ledi_cli("generate", "--help").stdout
    for option in ("--model", "--n ", "--nfe", "--solver", "--seed", "--out", "--device", "--precision", "--prior",
                   "--latent-flow", "--autoencoder", "--rtol", "--nrow"):
        assert option in helptext, option


@pytest.mark.slow
def test_kedro_viz_build_has_every_pipeline_and_node(tiny_trained_project):
    from kedro.framework.project import configure_project, pipelines

    proc = subprocess.run([sys.executable, "-m", "kedro", "viz", "build"], cwd=tiny_trained_project,
                          capture_output=True, text=True, timeout=300)
    ok(proc)
    api = tiny_trained_project / "build" / "api"
    main = json.loads((api / "main").read_text())
    configure_project("ledi_kedro")
    registered = set(pipelines.keys())
    assert {p["id"] for p in main["pipelines"]} >= registered
    for name in registered:
        graph = json.loads((api / "pipelines" / name).read_text())
        names = {n["name"] for n in graph["nodes"] if n["type"] == "task"}
        for node in pipelines[name].nodes:
            assert node.name in names or node.name.split(".")[-1] in names, (name, node.name)
    layers = {n.get("layer") for n in main["nodes"] if n["type"] == "data"}
    assert {"model_input", "models", "reporting"} <= layers
    assert {"ledi", "gaussian"} <= set(main["modular_pipelines"])  # the namespaces collapse in the graph


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tiny_trained_project):
    import nbformat
    from nbclient import NotebookClient

    src = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"
    nb = nbformat.read(src, as_version=4)
    (tiny_trained_project / "notebooks").mkdir(exist_ok=True)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tiny_trained_project / "notebooks")}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "LearnedPriorSource" in outputs and "images" in outputs


def test_the_ledi_entry_point_is_installed():
    from importlib.metadata import entry_points

    from ledi_kedro.sampler_cli import main

    (entry,) = entry_points(group="console_scripts", name="ledi")
    assert entry.load() is main  # the `ledi` script itself runs in the round-trip test
    proc = ledi_cli("--help")
    ok(proc)
    assert "generate" in proc.stdout and "interpolate" in proc.stdout


def test_both_generators_come_from_the_catalog_and_sample_through_one_generate(tiny_trained_project, monkeypatch):
    """Each trained generator is one catalog dataset (`<namespace>.generator`); LeDiFlow and the baseline differ
    only in their source, and the same `generate` samples both."""
    from kedro.config import OmegaConfigLoader
    from kedro.io import DataCatalog

    from ledi_kedro.core.generation import GaussianSource, LearnedPriorSource, generate

    monkeypatch.chdir(tiny_trained_project)
    catalog = DataCatalog.from_config(OmegaConfigLoader(conf_source="conf", base_env="base",
                                                        default_run_env="local")["catalog"])
    generators = {ns: catalog.load(f"{ns}.generator").build() for ns in ("ledi", "gaussian")}
    assert isinstance(generators["ledi"].source, LearnedPriorSource)
    assert isinstance(generators["gaussian"].source, GaussianSource)
    for gen in generators.values():
        out = generate(gen.flow, gen.source, 3, solver="midpoint", nfe=2, seed=0, warmth=gen.warmth,
                       decode=gen.decode)
        assert out.images.shape == (3, 1, 8, 8) and out.nfe == 2
        torch.testing.assert_close(out.images, gen.sample(3, solver="midpoint", nfe=2, seed=0).images, rtol=0, atol=0)
