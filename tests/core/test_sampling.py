import pytest
import torch
from torch import nn

from ledi_kedro.core.models import DiT, DiTConfig, LatentFlow, LatentFlowConfig, PriorConfig, PriorModel
from ledi_kedro.core.metrics.model_quality import straightness
from ledi_kedro.core.sampling import GaussianSampler, LeDiFlowSampler, slerp

SHAPE = (1, 8, 8)


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
def samplers():
    torch.manual_seed(0)
    flow = randomised(DiT(DiTConfig(in_channels=1, resolution=8, patch_size=2, size="T")))
    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=6, base_channels=8)).eval()
    latent = randomised(LatentFlow(LatentFlowConfig(z_dim=6, hidden=16, depth=1)), seed=1)
    return GaussianSampler(flow, SHAPE), LeDiFlowSampler(flow, prior, latent, SHAPE, prior_noise_scale=1.0,
                                                               prior_channels=False, warmth_by_solver=None,
                                                               sample_steps=4,
                                                               sample_solver="midpoint")


@pytest.mark.parametrize("which", [0, 1])
def test_shapes_nfe_and_seeds(samplers, which):
    s = samplers[which]
    a = s.sample(3, nfe=4, solver="midpoint", seed=5)
    assert a.images.shape == (3, *SHAPE) and a.x0.shape == (3, *SHAPE)
    assert a.nfe == 4
    assert a.latent_nfe == (0 if which == 0 else 4 * 2)  # latent sampler: 4 midpoint steps
    torch.testing.assert_close(s.sample(3, nfe=4, solver="midpoint", seed=5).images, a.images, rtol=0, atol=0)
    assert not torch.equal(s.sample(3, nfe=4, solver="midpoint", seed=6).images, a.images)
    assert s.sample(2, solver="dopri5", seed=0).nfe > 0
    with pytest.raises(ValueError, match="n must be positive"):
        s.sample(0, steps=1)


def test_ledi_prior_is_the_decoder_distribution(samplers):
    _, ledi = samplers
    res = ledi.sample(4, steps=1, seed=3)
    with torch.no_grad():
        mean, logvar = ledi.prior_model.decode(res.z)
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


def test_with_prior_channels_the_flow_sees_the_priors_mean_and_log_variance_of_its_x0(samplers):
    _, plain = samplers
    spy = SpyFlow()
    ledi = LeDiFlowSampler(spy, plain.prior_model, plain.latent_flow, SHAPE, prior_noise_scale=1.0,
                           prior_channels=True, warmth_by_solver=None, sample_steps=4, sample_solver="midpoint")
    res = ledi.sample(3, steps=2, solver="euler", seed=4)
    assert res.images.shape == (3, *SHAPE) and len(spy.inputs) == 2
    with torch.no_grad():
        mean, logvar = ledi.prior_model.decode(res.z)
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


def test_a_warm_sampler_looks_its_warmth_up_by_the_calls_solver_and_nfe_and_blends_sigma_toward_one(samplers):
    _, plain = samplers
    spy = WarmthSpy()
    ledi = LeDiFlowSampler(spy, plain.prior_model, plain.latent_flow, SHAPE, prior_noise_scale=1.0,
                           prior_channels=False, warmth_by_solver={"euler": {4: 0.0, 1: 1.0}, "midpoint": {2: 0.5}},
                           sample_steps=4, sample_solver="midpoint")
    assert [ledi.warmth_for("euler", n) for n in (1, 2, 3, 4, 64, None)] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # midpoint's own table; a solver without one (rk4, adaptive dopri5) uses the last one listed, midpoint's
    assert [ledi.warmth_for(s, n) for s, n in (("midpoint", 4), ("rk4", 4), ("dopri5", None))] == [0.5] * 3
    hot = ledi.sample(3, nfe=2, solver="euler", seed=4)  # euler, NFE 2 -> the entry of NFE 1: w = 1
    assert spy.warmths == [1.0, 1.0]
    with torch.no_grad():
        mean, logvar = ledi.prior_model.decode(hot.z)
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
    for empty in ({}, {"euler": {}}):
        with pytest.raises(ValueError, match="at least one solver with at least one NFE"):
            LeDiFlowSampler(spy, plain.prior_model, plain.latent_flow, SHAPE, prior_noise_scale=1.0,
                            prior_channels=False, warmth_by_solver=empty, sample_steps=4, sample_solver="midpoint")


def test_interpolation_end_points(samplers):
    gauss, ledi = samplers
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
def test_inpainting_keeps_known_pixels(samplers, which):
    s = samplers[which]
    known = torch.rand(2, *SHAPE) * 2 - 1
    mask = torch.zeros(1, *SHAPE)
    mask[..., :4] = 1  # left half known
    out = s.inpaint(known, mask, steps=4, solver="heun", seed=0)
    torch.testing.assert_close(out.images[..., :4], known[..., :4], rtol=0, atol=0)
    assert not torch.allclose(out.images[..., 4:], known[..., 4:])


def test_straightness_is_zero_for_a_straight_flow():
    assert straightness(GaussianSampler(Constant(0.3), SHAPE), n=4, steps=8) == pytest.approx(0.0, abs=1e-12)


def test_sampling_from_codes_is_ledi_with_the_latent_sampler_replaced(samplers):
    """Point-mass codes (logvar -> -inf): z is mu_z itself, and x0 is the prior's draw at mu_z with the same eps."""
    _, ledi = samplers
    mu = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))
    out = ledi.sample_from_codes(mu, torch.full_like(mu, -60.0), nfe=2, solver="midpoint", seed=4)
    torch.testing.assert_close(out.z, mu)
    g = torch.Generator().manual_seed(4)
    torch.randn(mu.shape, generator=g)  # the draw for z
    eps = torch.randn((3, *SHAPE), generator=g)
    torch.testing.assert_close(out.x0, ledi.prior_model.sample_x0(mu, ledi.prior_noise_scale, eps=eps))
    torch.testing.assert_close(out.images, ledi.flow_from(out.x0, nfe=2, solver="midpoint").x)
    assert out.nfe == 2 and out.latent_nfe == 0


def test_latent_quality_monitor_sees_a_shifted_sampler():
    """Codes q(z|y) = N(0, I), judged through identity 'images': the identity latent flow (zero velocity, z = w)
    scores about the sampling noise; a constant velocity 3 shifts every code by 3 (FD ~ 9 per dimension)."""
    from ledi_kedro.core.evaluation import latent_quality_monitor

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
    from ledi_kedro.core.evaluation import flow_quality_monitor

    shape = (1, 2, 2)
    still, shifted = GaussianSampler(Constant(0.0), shape), GaussianSampler(Constant(0.5), shape)
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
    from ledi_kedro.core.evaluation import choose_warmth

    shape = (1, 2, 2)
    reference = (0.5 * torch.randn(4000, *shape, generator=torch.Generator().manual_seed(7))).clamp(-1, 1)
    choice = choose_warmth(lambda w: GaussianSampler(Decay(0.5 + 0.5 * w), shape), lambda x: x.flatten(1),
                           reference, grid=[0.0, 1.0], nfes=[1, 2], n_samples=2000, solvers=["euler", "midpoint"],
                           batch_size=1000)
    assert choice.by_solver == {"euler": {1: 0.0, 2: 0.0}, "midpoint": {2: 1.0}}
    assert set(choice.fd["midpoint"][2]) == {0.0, 1.0} and choice.fd["midpoint"][2][1.0] < 0.05
    with pytest.raises(ValueError, match="rk4"):  # rk4 spends 4 per step: neither NFE 1 nor 2
        choose_warmth(lambda w: GaussianSampler(Decay(0.5), shape), lambda x: x.flatten(1), reference, [0.0],
                      [1, 2], 10, ["euler", "rk4"])
