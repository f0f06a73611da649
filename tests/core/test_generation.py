"""One generator for both models: sources (N(0, I), the learned prior), the stateless generate / interpolate /
inpaint, the warmth table, and the one flow-matching objective that takes any source."""

import dataclasses

import pytest
import torch
from torch import nn

from ledi_kedro.core.generation import (
    Draw, GaussianSource, Generator, LearnedPriorSource, WarmthTable, generate, integrate_from, slerp,
)
from ledi_kedro.core.models import DiT, DiTConfig, LatentFlow, LatentFlowConfig, PriorConfig, PriorModel
from ledi_kedro.core.metrics.model_quality import straightness

SHAPE = (1, 8, 8)
CPU = torch.device("cpu")


def gaussian(flow: nn.Module, shape=SHAPE, **kwargs) -> Generator:
    return Generator(flow, GaussianSource(shape, CPU), **kwargs)


def learned(flow: nn.Module, prior: nn.Module, latent: nn.Module, prior_channels: bool = False,
            **kwargs) -> Generator:
    return Generator(flow, LearnedPriorSource(prior, latent, noise_scale=1.0, prior_channels=prior_channels,
                                              sample_solver="midpoint", sample_steps=4, shape=SHAPE, device=CPU),
                     **kwargs)


def randomised(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fresh flow models output zero (zero-init heads); perturb every weight so tests see real flows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module.eval()


class Constant(nn.Module):
    """A flow of constant velocity v everywhere (a latent or an image flow: v(x, t) = v)."""

    def __init__(self, v):
        super().__init__()
        self.v = nn.Parameter(torch.tensor(float(v)))

    def forward(self, x, t):
        return torch.zeros_like(x) + self.v


@pytest.fixture(scope="module")
def generators():
    torch.manual_seed(0)
    flow = randomised(DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T")))
    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=6, base_channels=8)).eval()
    latent = randomised(LatentFlow(LatentFlowConfig(z_dim=6, hidden=16, depth=1)), seed=1)
    return gaussian(flow), learned(flow, prior, latent)


@pytest.mark.parametrize("which", [0, 1])
def test_shapes_nfe_and_seeds(generators, which):
    s = generators[which]
    a = s.sample(3, nfe=4, solver="midpoint", seed=5)
    assert a.images.shape == (3, *SHAPE) and a.x0.shape == (3, *SHAPE)
    assert a.nfe == 4
    assert a.latent_nfe == (0 if which == 0 else 4 * 2)  # latent sampler: 4 midpoint steps
    torch.testing.assert_close(s.sample(3, nfe=4, solver="midpoint", seed=5).images, a.images, rtol=0, atol=0)
    assert not torch.equal(s.sample(3, nfe=4, solver="midpoint", seed=6).images, a.images)
    assert s.sample(2, solver="dopri5", seed=0).nfe > 0
    with pytest.raises(ValueError, match="n must be positive"):
        s.sample(0, steps=1)


def test_ledi_prior_is_the_decoder_distribution(generators):
    _, ledi = generators
    res = ledi.sample(4, steps=1, seed=3)
    with torch.no_grad():
        mean, logvar = ledi.source.prior.decode(res.z)
    # x0 = mu + s * sigma * eps: standardised residuals look like N(0, 1) noise
    eps = (res.x0 - mean) / torch.exp(0.5 * logvar)
    assert abs(float(eps.mean())) < 0.2 and abs(float(eps.std()) - 1) < 0.2
    assert ledi.prior_mean(4, seed=3).shape == (4, *SHAPE)


class SpyFlow(nn.Module):
    """A velocity field that records what it is given: v(x, t) = -x[:, :1] (one channel out)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))  # for the sampler's device
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t):
        self.inputs.append(x.clone())
        return -x[:, :1]


def test_with_prior_channels_the_flow_sees_the_priors_mean_and_log_variance_of_its_x0(generators):
    _, plain = generators
    spy = SpyFlow()
    ledi = learned(spy, plain.source.prior, plain.source.latent_flow, prior_channels=True)
    res = ledi.sample(3, steps=2, solver="euler", seed=4)
    assert res.images.shape == (3, *SHAPE) and len(spy.inputs) == 2
    with torch.no_grad():
        mean, logvar = ledi.source.prior.decode(res.z)
    for x in spy.inputs:  # every evaluation: [x_t, mu(z), lv(z)]
        assert x.shape == (3, 3, 8, 8)
        torch.testing.assert_close(x[:, 1:], torch.cat([mean, logvar], 1))
    torch.testing.assert_close(spy.inputs[0][:, :1], res.x0)
    torch.testing.assert_close(res.images, res.x0 * 0.25)  # two Euler steps of v = -x: (1 - 1/2)^2
    # the same x0 as the sampler without channels (same draws), and the other paths that start the ODE
    torch.testing.assert_close(res.x0, plain.sample(3, steps=1, seed=4).x0)
    mu_z, logvar_z = torch.zeros(2, 6), torch.zeros(2, 6)
    assert ledi.sample_from_codes(mu_z, logvar_z, steps=1).images.shape == (2, *SHAPE)
    assert spy.inputs[-1].shape == (2, 3, 8, 8)
    assert ledi.interpolate(1, 2, n_points=4, steps=1).images.shape == (4, *SHAPE)
    known, mask = torch.zeros(2, *SHAPE), torch.ones(2, *SHAPE)
    assert ledi.inpaint(known, mask, steps=1).images.shape == (2, *SHAPE)


class WarmthSpy(SpyFlow):
    """SpyFlow that also records the warmth it is told."""

    def __init__(self):
        super().__init__()
        self.warmths: list = []

    def forward(self, x, t, warmth=None):
        self.warmths.append(warmth)
        return super().forward(x, t)


def test_the_warmth_table_looks_up_by_solver_and_nfe_and_round_trips_its_json():
    table = WarmthTable.from_json({"euler": [[4, 0.0], [1, 1.0]], "midpoint": [[2, 0.5]]})
    assert [table.lookup("euler", n) for n in (1, 2, 3, 4, 64, None)] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # midpoint's own table; a solver without one (rk4, adaptive dopri5) uses the last one listed, midpoint's
    assert [table.lookup(s, n) for s, n in (("midpoint", 4), ("rk4", 4), ("dopri5", None))] == [0.5] * 3
    assert table.to_json() == {"euler": [[1, 1.0], [4, 0.0]], "midpoint": [[2, 0.5]]}
    assert WarmthTable.from_json(table.to_json()) == table
    for empty in ({}, {"euler": []}):
        with pytest.raises(ValueError, match="at least one solver with one"):
            WarmthTable.from_json(empty)
    with pytest.raises(ValueError, match=r"warmths must lie in \[0, 1\]"):
        WarmthTable.from_json({"euler": [[1, 1.5]]})


def test_a_warm_generator_looks_its_warmth_up_by_the_calls_solver_and_nfe_and_blends_sigma_toward_one(generators):
    _, plain = generators
    spy = WarmthSpy()
    table = WarmthTable.from_json({"euler": [[4, 0.0], [1, 1.0]], "midpoint": [[2, 0.5]]})
    ledi = learned(spy, plain.source.prior, plain.source.latent_flow, warmth=table)
    hot = ledi.sample(3, nfe=2, solver="euler", seed=4)  # euler, NFE 2 -> the entry of NFE 1: w = 1
    assert spy.warmths == [1.0, 1.0]
    with torch.no_grad():
        mean, logvar = ledi.source.prior.decode(hot.z)
    # w = 1: x0 - mu is the unit noise itself, the same eps as the cold sampler's x0 - mu over its sigma
    cold = plain.sample(3, steps=1, seed=4)
    torch.testing.assert_close(hot.x0 - mean, (cold.x0 - mean) / torch.exp(0.5 * logvar))
    spy.warmths.clear()
    same = ledi.sample(3, steps=4, solver="euler", seed=4)  # 4 euler steps = NFE 4 -> w = 0
    assert spy.warmths == [0.0] * 4
    torch.testing.assert_close(same.x0, cold.x0)  # w = 0 is the learned prior itself
    spy.warmths.clear()
    ledi.sample(3, steps=2, solver="midpoint", seed=4)  # the same NFE 4 with midpoint: its own w = 0.5
    assert spy.warmths == [0.5] * 4
    spy.warmths.clear()
    ledi.sample_from_codes(torch.zeros(2, 6), torch.zeros(2, 6), nfe=1)
    ledi.interpolate(1, 2, n_points=3, nfe=4, solver="euler")
    assert spy.warmths == [1.0] + [0.0] * 4
    # a fixed warmth is a number, for one call or for the generator; nothing is kept between calls
    spy.warmths.clear()
    ledi.sample(3, nfe=2, solver="euler", seed=4, warmth=0.25)
    ledi.with_warmth(0.75).sample(3, nfe=1, solver="euler", seed=4)
    ledi.sample(3, nfe=1, solver="euler", seed=4)
    assert spy.warmths == [0.25, 0.25, 0.75, 1.0]


def test_interpolation_end_points(generators):
    gauss, ledi = generators
    strip = gauss.interpolate(11, 12, n_points=5, steps=3)
    torch.testing.assert_close(strip.images[0], gauss.sample(1, steps=3, seed=11).images[0])
    torch.testing.assert_close(strip.images[-1], gauss.sample(1, steps=3, seed=12).images[0])
    for space in ("w", "z"):
        ls = ledi.interpolate(11, 12, n_points=5, space=space, steps=3, noise_seed=0)
        torch.testing.assert_close(ls.z[0], ledi.sample(1, steps=3, seed=11).z[0])
        torch.testing.assert_close(ls.z[-1], ledi.sample(1, steps=3, seed=12).z[0])
        assert ls.images.shape == (5, *SHAPE)
    with pytest.raises(ValueError, match="space must be 'w' or 'z'"):
        ledi.interpolate(1, 2, space="x", steps=2)


def test_slerp_end_points_and_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 64, generator=g), torch.randn(1, 64, generator=g)
    b = b / b.norm() * a.norm()  # equal norms: slerp stays on the sphere between them
    alpha = torch.linspace(0, 1, 7)
    out = slerp(a.expand(7, -1), b.expand(7, -1), alpha)
    torch.testing.assert_close(out[0], a[0])
    torch.testing.assert_close(out[-1], b[0])
    torch.testing.assert_close(out.norm(dim=1), a.norm().expand(7), rtol=1e-5, atol=1e-5)
    lerp_mid = (a[0] + b[0]) / 2
    assert lerp_mid.norm() < 0.95 * a.norm()  # a straight line would shrink the norm of Gaussian noise


@pytest.mark.parametrize("which", [0, 1])
def test_inpainting_keeps_known_pixels(generators, which):
    s = generators[which]
    known = torch.rand(2, *SHAPE) * 2 - 1
    mask = torch.zeros(1, *SHAPE)
    mask[..., :4] = 1  # left half known
    out = s.inpaint(known, mask, steps=4, solver="heun", seed=0)
    torch.testing.assert_close(out.images[..., :4], known[..., :4], rtol=0, atol=0)
    assert not torch.allclose(out.images[..., 4:], known[..., 4:])


def test_straightness_is_zero_for_a_straight_flow():
    assert straightness(gaussian(Constant(0.3)), n=4, steps=8) == pytest.approx(0.0, abs=1e-12)


def test_sampling_from_codes_is_ledi_with_the_latent_sampler_replaced(generators):
    """Point-mass codes (logvar -> -inf): z is mu_z itself, and x0 is the prior's draw at mu_z with the same eps."""
    _, ledi = generators
    mu = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    out = ledi.sample_from_codes(mu, torch.full_like(mu, -60.0), nfe=2, solver="midpoint", seed=4)
    torch.testing.assert_close(out.z, mu)
    g = torch.Generator().manual_seed(4)
    torch.randn(mu.shape, generator=g)  # the draw for z
    eps = torch.randn((3, *SHAPE), generator=g)
    torch.testing.assert_close(out.x0, ledi.source.prior.sample_x0(mu, ledi.source.noise_scale, eps=eps))
    torch.testing.assert_close(out.images, integrate_from(ledi.flow, Draw(out.x0), nfe=2, solver="midpoint").x)
    assert out.nfe == 2 and out.latent_nfe == 0


def test_latent_quality_monitor_sees_a_shifted_sampler():
    """Codes q(z|y) = N(0, I), judged through identity 'images': the identity latent flow (zero velocity, z = w)
    scores about the sampling noise; a constant velocity 3 shifts every code by 3 (FD ~ 9 per dimension)."""
    from ledi_kedro.core.sweeps import latent_quality_monitor

    dim = 4
    codes = {"mu_z": torch.zeros(2000, dim), "logvar_z": torch.zeros(2000, dim)}
    monitor = latent_quality_monitor(lambda z: z, lambda x: x, codes, n_samples=2000, solver="euler", steps=2,
                                     batch_size=500)
    still, shifted = monitor(Constant(0.0), 1), monitor(Constant(3.0), 1)
    assert still < 0.1 and abs(shifted - 9 * dim) < 1.5
    assert monitor(Constant(0.0), 2) == still  # fixed seeds: successive evaluations differ only by the model


def test_flow_quality_monitor_follows_the_best_of_several_samplers():
    """Images x0 + v from x0 ~ N(0, I) under a constant velocity v (one Euler step), judged through identity
    features against N(0, I) draws: v = 0 scores about the sampling noise, v = 0.5 a shift; a monitor given
    both ways of sampling (a warm model at two warmths) reports the better one, in any order."""
    from ledi_kedro.core.sweeps import flow_quality_monitor

    shape = (1, 2, 2)
    still, shifted = gaussian(Constant(0.0), shape), gaussian(Constant(0.5), shape)
    reference = torch.randn(4000, *shape, generator=torch.Generator().manual_seed(7)).clamp(-1, 1)

    def monitor(*samplers):
        return flow_quality_monitor(lambda ema: list(samplers), lambda x: x.flatten(1), reference, n_samples=2000,
                                    nfe=1, solver="euler", batch_size=1000)(nn.Identity(), 1)

    alone, worse = monitor(still), monitor(shifted)
    assert alone < 0.05 < 0.3 < worse
    assert monitor(shifted, still) == monitor(still, shifted) == alone
    with pytest.raises(ValueError, match="no sampler"):
        monitor()


class Decay(nn.Module):
    """dx/dt = -c x: from x0 ~ N(0, I), one Euler step of size h multiplies x by 1 - c h, one midpoint step by
    1 - c h + (c h)^2 / 2 (closed forms for the solvers' choice of warmth below)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x, t):
        return -self.c * x


def test_the_warmth_is_chosen_per_solver_where_the_solvers_disagree():
    """Warmth w gives decay c = 0.5 + 0.5 w, judged against N(0, 0.5^2 I). At NFE 2 euler's gain (1 - c/2)^2 is
    0.56 at w = 0 and 0.25 at w = 1, and midpoint's 1 - c + c^2/2 is 0.63 and exactly 0.5: euler takes w = 0 and
    midpoint w = 1 at the same NFE. At NFE 1 (euler only) 1 - c is exactly 0.5 at w = 0."""
    from ledi_kedro.core.sweeps import choose_warmth

    shape = (1, 2, 2)
    reference = (0.5 * torch.randn(4000, *shape, generator=torch.Generator().manual_seed(7))).clamp(-1, 1)
    choice = choose_warmth(lambda w: gaussian(Decay(0.5 + 0.5 * w), shape), lambda x: x.flatten(1),
                           reference, grid=[0.0, 1.0], nfes=[1, 2], n_samples=2000, solvers=["euler", "midpoint"],
                           batch_size=1000)
    assert choice.by_solver == {"euler": {1: 0.0, 2: 0.0}, "midpoint": {2: 1.0}}
    assert set(choice.fd["midpoint"][2]) == {0.0, 1.0} and choice.fd["midpoint"][2][1.0] < 0.05
    with pytest.raises(ValueError, match="rk4"):  # rk4 spends 4 per step: neither NFE 1 nor 2
        choose_warmth(lambda w: gaussian(Decay(0.5), shape), lambda x: x.flatten(1), reference, [0.0],
                      [1, 2], 10, ["euler", "rk4"])


def test_generate_is_the_generators_sample_and_a_source_swap_is_a_new_generator(generators):
    gauss, ledi = generators
    a = generate(ledi.flow, ledi.source, 3, solver="midpoint", nfe=4, seed=9)
    torch.testing.assert_close(a.images, ledi.sample(3, solver="midpoint", nfe=4, seed=9).images, rtol=0, atol=0)
    faster = ledi.with_source(ledi.source.with_latent_sampler("euler", 1))
    assert faster.sample(3, nfe=4, solver="midpoint", seed=9).latent_nfe == 1
    assert ledi.sample(3, nfe=4, solver="midpoint", seed=9).latent_nfe == 8  # the original is untouched
    with pytest.raises(ValueError, match="has no learned prior"):
        gauss.sample_from_codes(torch.zeros(2, 6), torch.zeros(2, 6), nfe=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ledi.warmth = 0.5
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        gaussian(Constant(0.0), precision="fp16")


def test_one_objective_trains_either_source_with_the_draws_of_its_data():
    """fm_objective: the Gaussian source's x0 is N(0, I) of the batch's shape; the learned prior's x0 is drawn from
    the codes of the batch's own images. Both losses equal flow matching from that x0 at the same t."""
    from ledi_kedro.core.flow import fm_loss, sample_time
    from ledi_kedro.core.objectives import fm_objective

    y = torch.rand(4, *SHAPE) * 2 - 1
    flow = Constant(0.1)
    loss = fm_objective(GaussianSource(SHAPE, CPU), "uniform")
    value = loss(flow, {"images": y}, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(y.shape, generator=g)
    expected = fm_loss(flow, x0, y, sample_time(4, "uniform", generator=g))
    torch.testing.assert_close(value, expected)
    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=6, base_channels=8)).eval()
    latent = LatentFlow(LatentFlowConfig(z_dim=6, hidden=16, depth=1)).eval()
    source = LearnedPriorSource(prior, latent, noise_scale=1.0, prior_channels=False, sample_solver="euler",
                                sample_steps=1, shape=SHAPE, device=CPU)
    batch = {"images": y, "mu_z": torch.randn(4, 6), "logvar_z": torch.full((4, 6), -60.0)}  # z = mu_z
    draw = source.for_data(batch, torch.Generator().manual_seed(3))
    with torch.no_grad():
        mean, logvar = prior.decode(batch["mu_z"])
    eps = (draw.x0 - mean) / torch.exp(0.5 * logvar)
    assert abs(float(eps.mean())) < 0.3 and abs(float(eps.std()) - 1) < 0.3  # x0 ~ P_L(x | z of y)
    value = fm_objective(source, "uniform")(flow, batch, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    again = source.for_data(batch, g)
    expected = fm_loss(flow, again.x0, y, sample_time(4, "uniform", generator=g))
    torch.testing.assert_close(value, expected)


def test_the_objectives_code_fingerprint_covers_its_source_and_the_prior_it_holds():
    """A checkpoint records the code behind its loss: for LeDiFlow that is the source's module and the classes of the
    networks the source holds (the prior), so that editing either retrains instead of resuming."""
    from ledi_kedro.core.code_version import loss_dependencies
    from ledi_kedro.core.objectives import fm_objective

    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=6, base_channels=8)).eval()
    latent = LatentFlow(LatentFlowConfig(z_dim=6, hidden=16, depth=1)).eval()
    source = LearnedPriorSource(prior, latent, noise_scale=1.0, prior_channels=False, sample_solver="euler",
                                sample_steps=1, shape=SHAPE, device=CPU)
    modules, _ = loss_dependencies(fm_objective(source, "uniform"))
    assert {"ledi_kedro.core.generation", "ledi_kedro.core.models.prior"} <= modules
    modules, _ = loss_dependencies(fm_objective(GaussianSource(SHAPE, CPU), "uniform"))
    assert "ledi_kedro.core.generation" in modules and "ledi_kedro.core.models.prior" not in modules


def _artifact(learned_prior: bool, warmth: dict | None = None):
    from ledi_kedro.core.artifacts import FlowRecord, GeneratorArtifact, LatentSamplerRecord, TrainedModel

    torch.manual_seed(0)
    cfg = DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T", warmth_input=bool(warmth))
    flow = randomised(DiT(cfg))
    record = FlowRecord("learned" if learned_prior else "gaussian", "fm_x", "uniform", 1.0, False, warmth or {},
                        "pixel")
    fm = TrainedModel("dit", cfg, flow, flow, dataclasses.asdict(record))
    pc, lc = PriorConfig(in_channels=1, resolution=8, z_dim=6, base_channels=8), LatentFlowConfig(z_dim=6, hidden=16,
                                                                                                  depth=1)
    prior = TrainedModel("prior", pc, None, PriorModel(pc).eval(), {})
    latent = TrainedModel("latent_flow", lc, None, randomised(LatentFlow(lc), 1),
                          dataclasses.asdict(LatentSamplerRecord("uniform", "midpoint", 2)))
    return GeneratorArtifact.of(fm, prior, latent, TrainedModel("identity", {}, None, None, {"space": "pixel"}))


@pytest.mark.parametrize("learned_prior", [True, False])
def test_a_generator_is_one_artifact_that_samples_the_same_after_a_round_trip(tmp_path, learned_prior):
    from ledi_kedro.core.artifacts import load_generator_artifact, save_generator

    warmth = {"euler": [[1, 1.0], [4, 0.0]]} if learned_prior else None
    artifact = _artifact(learned_prior, warmth)
    assert (artifact.prior is None) == (not learned_prior)  # the baseline keeps no prior
    save_generator(tmp_path / "gen", artifact)
    again = load_generator_artifact(tmp_path / "gen")
    a, b = artifact.build(), again.build()
    assert b.learned == learned_prior and b.warmth == a.warmth
    torch.testing.assert_close(b.sample(3, nfe=2, solver="euler", seed=1).images,
                               a.sample(3, nfe=2, solver="euler", seed=1).images, rtol=0, atol=0)
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_a_generator_folder_loads_through_the_api_and_bad_folders_are_named(tmp_path):
    import ledi_kedro
    from ledi_kedro.api import IncompatibleModelError
    from ledi_kedro.core.artifacts import save_generator
    from ledi_kedro.datasets import GeneratorDataset

    artifact = _artifact(True)
    save_generator(tmp_path / "generator_ledi", artifact)
    gen = ledi_kedro.load_generator(tmp_path / "generator_ledi")
    assert gen.learned and gen.sample(2, nfe=1, seed=0).images.shape == (2, *SHAPE)
    dataset = GeneratorDataset(str(tmp_path / "generator_ledi"))
    assert dataset.load().latent_flow is not None
    (tmp_path / "generator_ledi" / "latent_flow.safetensors").unlink()
    with pytest.raises(IncompatibleModelError, match=r"latent_flow.safetensors: missing"):
        ledi_kedro.load_generator(tmp_path / "generator_ledi")
    from kedro.io import DatasetError

    with pytest.raises(DatasetError, match="no generator here"):
        GeneratorDataset(str(tmp_path / "nowhere")).load()
    with pytest.raises(DatasetError, match="expected a GeneratorArtifact"):
        dataset.save(artifact.flow)
    with pytest.raises(ValueError, match="needs the prior model and the latent sampler"):
        type(artifact).of(artifact.flow, None, None, artifact.autoencoder)
