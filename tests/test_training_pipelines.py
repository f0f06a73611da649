"""Training pipelines on tiny configurations: in-memory runs, parameter validation, pretrained AE."""

import numpy as np
import polars as pl
import pytest
import torch
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from ledi_kedro.core.config import ConfigError
from ledi_kedro.core.artifacts import TrainedModel, make_generator
from ledi_kedro.core.generation import WarmthTable
from ledi_kedro.params import validate_all
from ledi_kedro.pipelines import train_autoencoder, train_embedder, train_fm, train_latent_flow, train_prior
from tests.conftest import base_params
from tests.test_preprocess_pipeline import KeptDataset

TINY_TRAIN = {"steps": 6, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2, "log_every": 3, "checkpoint_every": 3,
              "eval_every": 0, "plateau_patience": 0}


def tiny_params(tmp_path, space="pixel"):
    """conf/base with tiny models, budgets and 8-px images."""
    return base_params({
        "run": {"seed": 0, "space": space, "device": "cpu", "checkpoint_root": str(tmp_path / "ckpt"),
                "max_train_images": None},
        "autoencoder": {"model": {"latent_channels": 2, "base_channels": 8, "levels": 1}, "train": dict(TINY_TRAIN)},
        "prior": {"model": {"z_dim": 4, "base_channels": 8, "bottleneck": 4}, "eval_images": 8,
                  "train": dict(TINY_TRAIN)},
        "latent_flow": {"model": {"hidden": 16, "depth": 1}, "sample_steps": 2, "train": dict(TINY_TRAIN)},
        "fm": {"model": {"size": "T", "patch_size": 2}, "train": dict(TINY_TRAIN, eval_every=3),
               "monitor": {"n_samples": 4, "n_reference": 8, "batch_size": 4}},
        "ledi": {"variant": {"monitor_nfe": 2}},
        "gaussian": {"variant": {"monitor_nfe": 4}},
        "embedder": {"model": {"width": 2, "feature_dim": 4},
                     "train": {"steps": 2, "batch_size": 8, "warmup_steps": 1, "log_every": 1, "checkpoint_every": 2}},
        "preprocess": {"image": {"resolution": 8, "channels": 1}},
    })


def image_split(n, seed):
    rng = np.random.default_rng(seed)
    return {"images": torch.from_numpy(rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)),
            "labels": torch.arange(n) % 3, "__metadata__": {"class_names": ["a", "b", "c"]}}


def run_chain(tmp_path, space="pixel", extra=None):
    """The training pipelines on tiny data; ``extra`` maps (section, key) to a value that replaces conf/base's."""
    params = tiny_params(tmp_path, space)
    for (section, key), value in (extra or {}).items():
        params[section][key] = value
    validate_all(params)
    catalog = DataCatalog({"train_image_tensors": MemoryDataset(image_split(32, 0), copy_mode="assign"),
                           "validation_image_tensors": MemoryDataset(image_split(16, 1), copy_mode="assign")})
    for key, value in params.items():
        catalog[f"params:{key}"] = MemoryDataset(value)
        if isinstance(value, dict):
            for sub, v in value.items():
                catalog[f"params:{key}.{sub}"] = MemoryDataset(v)
    pipe = (train_embedder.create_pipeline() + train_autoencoder.create_pipeline() + train_prior.create_pipeline()
            + train_latent_flow.create_pipeline() + train_fm.create_pipeline())
    outputs = [d for d in pipe.outputs() | pipe.datasets() if not d.startswith("params:") and d not in catalog.keys()]
    for name in outputs:
        catalog[name] = KeptDataset(copy_mode="assign")
    SequentialRunner().run(pipe, catalog)
    return {name: catalog.load(name) for name in outputs}


def test_pixel_chain(tmp_path):
    params = tiny_params(tmp_path)
    own = dict(params["gaussian"]["variant"], time_sampler="uniform")  # the baseline's own selection
    out = run_chain(tmp_path, extra={("gaussian", "variant"): own})
    assert out["gaussian.fm_model"].meta["time_sampler"] == "uniform"
    assert out["ledi.fm_model"].meta["time_sampler"] == params["fm"]["time_sampler"] == "logit_normal"
    assert out["autoencoder_model"].kind == "identity"
    assert out["train_model_input"]["images"].dtype == torch.uint8
    for name in ("prior_model", "latent_flow_model", "ledi.fm_model", "gaussian.fm_model"):
        assert isinstance(out[name], TrainedModel) and out[name].ema is not None, name
    assert out["ledi.fm_model"].meta["prior"] == "learned" and out["gaussian.fm_model"].meta["prior"] == "gaussian"
    assert out["prior_codes"]["mu_z"].shape == (32, 4)
    hist = out["ledi.fm_loss_history"]
    assert isinstance(hist, pl.DataFrame) and hist["step"].to_list() == list(range(1, 7))
    assert {"validation_loss", "validation_kl_per_dim", "validation_recon_mse_of_mean",
            "validation_mean_predicted_std"} <= set(out["prior_metrics"])
    assert out["ledi.fm_metrics"]["steps"] == 6
    for ns in ("ledi", "gaussian"):  # quality during training at steps 3 and 6, on the judge's features
        quality = out[f"{ns}.fm_quality_history"]
        assert quality["step"].to_list() == [3, 6] and (quality["quality"] > 0).all()
        assert out[f"{ns}.fm_metrics"]["stop_reason"] == "step_cap" and out[f"{ns}.fm_metrics"]["evaluations"] == 2
    # the two variants share init and batches but not the prior, so they end up different
    a, b = out["ledi.fm_model"].model.state_dict(), out["gaussian.fm_model"].model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "ckpt" / "fm_ledi" / "step_00000006").is_dir()


def test_latent_chain_with_the_prior_as_input_channels_and_warmth(tmp_path):
    warmth = {"enabled": True, "grid": [0.0, 1.0], "nfe": [1, 4], "solvers": ["euler", "midpoint"],
              "monitor": [0.0, 1.0]}
    out = run_chain(tmp_path, space="latent", extra={("fm", "prior_channels"): True, ("fm", "warmth"): warmth})
    ae = out["autoencoder_model"]
    assert ae.kind == "autoencoder" and float(ae.ema.scale) > 0
    latents = out["train_model_input"]["images"]
    assert latents.dtype == torch.float32 and latents.shape == (32, 2, 4, 4)
    assert out["autoencoder_metrics"]["space"] == "latent" and "validation_psnr_db" in out["autoencoder_metrics"]
    # LeDiFlow sees [x_t, mu(z), lv(z)] (3 x 2 latent channels) and predicts 2; the baseline has no prior to see
    ledi, gaussian = out["ledi.fm_model"], out["gaussian.fm_model"]
    assert (ledi.config.in_channels, ledi.config.state_channels, ledi.config.resolution) == (6, 2, 4)
    assert (gaussian.config.in_channels, gaussian.config.state_channels) == (2, 2)
    assert ledi.meta["prior_channels"] is True and gaussian.meta["prior_channels"] is False
    quality = out["ledi.fm_quality_history"]["quality"]  # the monitor samples through the same channels
    assert quality.len() == 2 and (quality > 0).all()
    sampler = make_generator(ledi, out["prior_model"], out["latent_flow_model"], ae)
    res = sampler.sample(3, nfe=2, solver="midpoint", seed=0)
    assert res.x0.shape == (3, 2, 4, 4) and res.images.shape == (3, 1, 8, 8)
    # warmth: LeDiFlow's model is told w, chosen after training from the grid by FD for each listed solver at each
    # listed NFE it spends (midpoint cannot spend NFE 1)
    assert ledi.config.warmth_input and not gaussian.config.warmth_input and gaussian.meta["warmth_by_solver"] == {}
    fd = out["ledi.fm_metrics"]["warmth_fd"]
    assert {s: set(by_nfe) for s, by_nfe in fd.items()} == {"euler": {"1", "4"}, "midpoint": {"4"}}
    assert all(set(row) == {"0", "1"} and min(row.values()) > 0 for by_nfe in fd.values() for row in by_nfe.values())
    chosen = {s: {int(n): w for n, w in rows} for s, rows in ledi.meta["warmth_by_solver"].items()}
    assert chosen == {s: {int(n): float(min(row, key=row.get)) for n, row in by_nfe.items()}
                      for s, by_nfe in fd.items()}
    assert sampler.warmth == WarmthTable.from_json(ledi.meta["warmth_by_solver"])
    assert {s: {n: sampler.warmth.lookup(s, n) for n in table} for s, table in chosen.items()} == chosen
    assert "warmth_fd" not in out["gaussian.fm_metrics"]
    # while training, the plateau monitor followed the better of its two warmths (the baseline: its one sampler)
    assert out["ledi.fm_metrics"]["monitor"] == "fd at NFE 2 (midpoint), the best of warmths 0, 1, 4 samples"
    assert out["gaussian.fm_metrics"]["monitor"] == "fd at NFE 4 (midpoint), 4 samples"


@pytest.mark.parametrize("change, message", [
    (("fm", "train", "steps", 0), "fm.train: steps must be a positive integer, got 0"),
    (("fm", "train", "steps", -5), "steps must be a positive integer, got -5"),
    (("latent_flow", "sample_solver", None, "rk5"), "unknown sample_solver 'rk5'"),
    (("fm", "model", "size", "XL"), "unknown DiT size 'XL'"),
    (("fm", "model", "patch_size", 3), "fm.model.patch_size=3 does not divide the resolution 8"),
    (("prior", "loss", None, "mse"), "prior.loss: 'mse' is not one of"),
    (("fm", "model", "depth", 3), "unknown parameter"),
    (("fm", "model", "in_channels", 3), "in_channels come.s. from the data"),
])
def test_parameter_errors_name_the_value(tmp_path, change, message):
    params = tiny_params(tmp_path)
    section, key, sub, value = change
    if sub is None:
        params[section][key] = value
    else:
        params[section].setdefault(key, {})[sub] = value
    with pytest.raises(ConfigError, match=message):
        validate_all(params)


def test_latent_space_needs_an_autoencoder(tmp_path):
    params = tiny_params(tmp_path, space="latent")
    params["autoencoder"]["kind"] = "none"
    with pytest.raises(ConfigError, match="latent space needs an autoencoder"):
        validate_all(params)
    params["autoencoder"] = dict(params["autoencoder"], kind="pretrained")
    with pytest.raises(ConfigError, match="needs pretrained_path"):
        validate_all(params)


def test_pretrained_diffusers_autoencoder(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4,
        sample_size=32)
    vae.save_pretrained(tmp_path / "vae")
    from ledi_kedro.pipelines.train_autoencoder.nodes import cache_latents, train_autoencoder

    params = base_params({"run": {"space": "latent", "device": "cpu", "checkpoint_root": str(tmp_path / "ck")},
                          "autoencoder": {"kind": "pretrained", "pretrained_path": str(tmp_path / "vae")}})
    run, ae = params["run"], params["autoencoder"]
    rng = np.random.default_rng(0)
    split = {"images": torch.from_numpy(rng.integers(0, 256, (6, 1, 32, 32), dtype=np.uint8)), "labels": torch.zeros(6)}
    model, history = train_autoencoder(split, ae, run)
    assert model.kind == "diffusers_autoencoder" and history.height == 0
    train, test, metrics = cache_latents(model, split, split, run)
    assert train["images"].shape == (6, 4, 4, 4)
    assert abs(float(train["images"].std()) - 1.0) < 0.05  # scale fitted to unit variance
    assert "validation_psnr_db" in metrics
    with pytest.raises(Exception, match="config.json is missing"):
        train_autoencoder(split, dict(ae, pretrained_path=str(tmp_path)), run)
