import json
import subprocess
import sys

import pytest
import torch

from ledi_kedro.core.models import (
    DIT_SIZES, AutoencoderConfig, DiT, DiTConfig, KLAutoencoder, LatentFlow, LatentFlowConfig, PriorConfig,
    PriorModel,
)


@pytest.mark.parametrize("channels, res, patch, pos", [(1, 32, 2, "sincos"), (3, 16, 4, "learned"), (4, 8, 1, "sincos")])
def test_dit_shapes_and_zero_init(channels, res, patch, pos):
    model = DiT(DiTConfig(in_channels=channels, resolution=res, patch_size=patch, size="T", pos_embed=pos))
    x = torch.randn(3, channels, res, res)
    with torch.no_grad():
        v = model(x, torch.rand(3))
    assert v.shape == x.shape
    assert float(v.abs().max()) == 0.0  # adaLN-Zero + zero head: a fresh model predicts v = 0
    assert model(x, 0.5).shape == x.shape  # scalar time from a solver


def test_dit_learns_and_depends_on_time():
    torch.manual_seed(0)
    model = DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(4, 1, 8, 8)
    for _ in range(60):
        opt.zero_grad()
        loss = (model(x, torch.full((4,), 0.2)) - 1.0).pow(2).mean() + (model(x, torch.full((4,), 0.8)) + 0.5).pow(2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float((model(x, 0.2) - model(x, 0.8)).abs().mean()) > 0.1


def test_dit_warmth_input_starts_closed_and_is_required():
    torch.manual_seed(0)
    warm = DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T", warmth_input=True))
    with torch.no_grad():
        for name, p in warm.named_parameters():
            if not name.startswith("w_embed.mlp.2"):  # everything but the warmth's closed output layer
                p.add_(0.05 * torch.randn(p.shape))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(warm(x, t, warmth=0.0), warm(x, t, warmth=torch.tensor([1.0, 0.3])))
        warm.w_embed.mlp[2].weight.add_(0.05 * torch.randn(warm.w_embed.mlp[2].weight.shape))
        assert float((warm(x, t, warmth=0.0) - warm(x, t, warmth=1.0)).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="trained with a warmth input"):
        warm(x, t)
    cold = DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T"))
    with pytest.raises(ValueError, match="has no warmth input"):
        cold(x, t, warmth=0.5)


def test_dit_registry_and_errors():
    assert {"S", "B"} <= set(DIT_SIZES)
    cfg = DiTConfig(size="B", resolution=32, patch_size=2)
    assert (cfg.depth, cfg.hidden, cfg.heads, cfg.tokens) == (12, 768, 12, 256)
    with pytest.raises(ValueError, match="patch_size=3 does not divide resolution=32"):
        DiTConfig(resolution=32, patch_size=3)
    with pytest.raises(ValueError, match="unknown DiT size 'XL'"):
        DiTConfig(size="XL")
    assert DiT(DiTConfig(size="T", in_channels=1, resolution=8)).flops_per_image() > 0
    with pytest.raises(ValueError, match=r"in_channels, resolution come\(s\) from the data"):
        DiT(DiTConfig(size="T"))  # parameters leave the data-derived fields to dataclasses.replace


def test_prior_model_shapes_and_logvar_range():
    cfg = PriorConfig(in_channels=3, resolution=16, z_dim=8, base_channels=8, logvar_min=-6, logvar_max=1)
    model = PriorModel(cfg)
    y = torch.randn(2, 3, 16, 16)
    out = model(y, generator=torch.Generator().manual_seed(0))
    assert out.mu_z.shape == out.logvar_z.shape == out.z.shape == (2, 8)
    assert out.mean.shape == out.logvar.shape == y.shape
    assert float(out.logvar.detach().min()) >= -6 and float(out.logvar.detach().max()) <= 1
    z, eps = torch.randn(2, 8), torch.randn(2, 3, 16, 16)
    mean, lv = model.decode(z)
    torch.testing.assert_close(model.sample_x0(z, 0.5, eps=eps), mean + 0.5 * torch.exp(0.5 * lv) * eps)
    torch.testing.assert_close(model.sample_x0(z, 0.0), mean)
    with pytest.raises(ValueError, match="resolution 20 cannot be halved down to 4"):
        PriorConfig(resolution=20)


def test_latent_flow_and_autoencoder_shapes():
    lf = LatentFlow(LatentFlowConfig(z_dim=8, hidden=32, depth=2))
    assert lf(torch.randn(5, 8), torch.rand(5)).shape == (5, 8)
    assert float(lf(torch.randn(5, 8), 0.3).abs().max()) == 0.0
    ae = KLAutoencoder(AutoencoderConfig(in_channels=3, latent_channels=4, base_channels=8, levels=2))
    x = torch.randn(2, 3, 16, 16)
    recon, mean, logvar = ae(x)
    assert recon.shape == x.shape and mean.shape == logvar.shape == (2, 4, 4, 4)
    ae.scale.fill_(0.5)
    lat = ae.encode_scaled(x)
    torch.testing.assert_close(lat, ae.encode(x)[0] * 0.5)
    torch.testing.assert_close(ae.decode_scaled(lat), ae.decode(ae.encode(x)[0]))


@pytest.mark.slow
def test_import_layering_in_a_fresh_interpreter():
    """In one fresh interpreter: every module of ledi_kedro.core, imported together, pulls in no Kedro
    layer; then reading the parameters (every `kedro run` does; they hold a DiTConfig) imports no timm
    (with torchvision and torch._dynamo behind it, ~2 s of start-up), which only building a DiT needs;
    then the chain's steps and the configuration reader pull in no Kedro, polars or matplotlib."""
    code = ("import importlib, json, pkgutil, sys, ledi_kedro.core as core\n"
            "mods = [m.name for m in pkgutil.walk_packages(core.__path__, 'ledi_kedro.core.')]\n"
            "[importlib.import_module(m) for m in mods]\n"
            "layers = ('kedro', 'polars', 'ledi_kedro.params', 'ledi_kedro.pipelines')\n"
            "out = {'modules': len(mods), 'core': sorted(m for m in layers if m in sys.modules)}\n"
            "import ledi_kedro.params, ledi_kedro.core.models as m\n"
            "out['params'] = sorted(k for k in ('timm', 'torchvision') if k in sys.modules)\n"
            "m.DiT(m.DiTConfig(in_channels=1, resolution=8, size='T', patch_size=4))\n"
            "out['dit_needs_timm'] = 'timm' in sys.modules\n"
            "import ledi_kedro.steps.chain, ledi_kedro.conf_files\n"
            "out['steps'] = sorted(m for m in ('kedro', 'polars', 'matplotlib', 'ledi_kedro.pipelines') if m in sys.modules)\n"
            "print(json.dumps(out))")
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out["modules"] >= 30 and out["core"] == [], out
    assert out["params"] == [] and out["dit_needs_timm"], out
    assert out["steps"] == [], out  # the chain's steps run where Kedro is not installed (the GPU check)
