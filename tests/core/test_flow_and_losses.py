import math

import pytest
import torch

from ledi_kedro.core.flow import fm_loss, linear_path, sample_time
from ledi_kedro.core.objectives import fm_objective
from ledi_kedro.core.losses import (
    beta_nll, gaussian_nll, kl_standard_normal, prior_reconstruction_loss, variance_guided_loss,
)


def test_linear_path_end_points_and_velocity():
    x0, x1 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    xt, u = linear_path(x0, x1, torch.tensor([0.0, 1.0, 0.25]))
    torch.testing.assert_close(xt[0], x0[0])
    torch.testing.assert_close(xt[1], x1[1])
    torch.testing.assert_close(xt[2], 0.75 * x0[2] + 0.25 * x1[2])
    torch.testing.assert_close(u, x1 - x0)


def test_time_samplers():
    g = torch.Generator().manual_seed(0)
    u = sample_time(20000, "uniform", generator=g)
    ln = sample_time(20000, "logit_normal", generator=g)
    assert 0 < float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(ln.median()) - 0.5) < 0.01 and float(ln.std()) < float(u.std())
    with pytest.raises(ValueError, match="unknown time sampler 'beta'"):
        sample_time(2, "beta")


def test_fm_loss_is_zero_at_the_optimum_of_a_point_target():
    # All data at c: the optimal field is (c - x) / (1 - t) and it makes the FM loss exactly zero.
    c = torch.tensor([0.7, -1.2])
    x0 = torch.randn(512, 2, dtype=torch.float64)
    x1 = c.expand_as(x0).double()
    t = torch.rand(512, dtype=torch.float64) * 0.98
    optimal = lambda x, tt: (c - x) / (1 - tt[:, None])  # noqa: E731
    assert float(fm_loss(optimal, x0, x1, t)) < 1e-20
    assert float(fm_loss(lambda x, tt: optimal(x, tt) + 0.1, x0, x1, t)) == pytest.approx(0.01, rel=1e-6)


def test_fm_loss_minimiser_matches_the_gaussian_closed_form():
    # x0 ~ N(0,1), x1 ~ N(m, s^2): E[x1 - x0 | x_t = x] = m + k (x - t m),
    # k = (t s^2 - (1 - t)) / ((1 - t)^2 + t^2 s^2). Fit v(x) = a x + b with the FM loss.
    m, s, t_val = 1.5, 0.5, 0.3
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    x1 = m + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = torch.full((n,), t_val, dtype=torch.float64)
    ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([ab], lr=1, max_iter=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = fm_loss(lambda x, tt: ab[0] * x + ab[1], x0, x1, t)
        loss.backward()
        return loss

    opt.step(closure)
    k = (t_val * s**2 - (1 - t_val)) / ((1 - t_val) ** 2 + t_val**2 * s**2)
    assert float(ab[0].detach()) == pytest.approx(k, abs=0.01)
    assert float(ab[1].detach()) == pytest.approx(m - k * t_val * m, abs=0.01)


def test_kl_closed_form():
    mu, logvar = torch.tensor([0.5, -1.0]), torch.tensor([math.log(2.0), 0.0])
    expected = 0.5 * torch.tensor([0.25 + 2 - 1 - math.log(2.0), 1.0]).mean()
    torch.testing.assert_close(kl_standard_normal(mu, logvar), expected)
    assert float(kl_standard_normal(torch.zeros(5), torch.zeros(5))) == 0.0


def test_loss_values_and_gradients():
    y, mu = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0], requires_grad=True)
    lv = torch.tensor([0.0, math.log(4.0)], requires_grad=True)
    torch.testing.assert_close(gaussian_nll(y, mu, lv), torch.tensor((0 + 1 + math.log(4) + 1) / 2))
    vgl = variance_guided_loss(y, mu, lv)
    torch.testing.assert_close(vgl, torch.tensor((1 + 4) / 2 + (0 + 1 + math.log(4) + 1) / 2))
    vgl.backward()
    # The mean gets the plain MSE gradient, whatever the predicted variance.
    torch.testing.assert_close(mu.grad, torch.tensor([-1.0, -2.0]))
    w = torch.exp(0.5 * lv.detach())
    torch.testing.assert_close(beta_nll(y, mu, lv, beta=0.5), (w * (lv + (y - mu) ** 2 * torch.exp(-lv))).mean())
    with pytest.raises(ValueError, match="unknown prior loss 'mse'"):
        prior_reconstruction_loss("mse", y, mu, lv)


def _fit_pixels(kind: str, steps: int = 400):
    """Per-pixel mean and log-variance fitted by SGD to y = m + sigma * eps."""
    g = torch.Generator().manual_seed(0)
    m = torch.linspace(-1, 1, 16)
    sigma = torch.linspace(0.1, 1.0, 16)
    mean = torch.zeros(16, requires_grad=True)
    logvar = torch.full((16,), 2.0, requires_grad=True)  # starts with a large variance
    opt = torch.optim.SGD([mean, logvar], lr=0.5)
    for _ in range(steps):
        y = m + sigma * torch.randn(256, 16, generator=g)
        opt.zero_grad()
        prior_reconstruction_loss(kind, y, mean, logvar).backward()
        opt.step()
    return (mean.detach() - m).abs().max(), (torch.exp(logvar.detach()) / sigma**2).log().abs().max()


def test_vgl_fixed_point_and_nll_is_slower():
    vgl_mean_err, vgl_var_err = _fit_pixels("vgl", steps=400)
    assert vgl_mean_err < 0.05  # mean -> m
    assert vgl_var_err < 0.25  # exp(lv) -> sigma^2 within ~25 %
    # Early on, the plain NLL scales the mean's gradient by exp(-lv) and lags behind.
    early_vgl, _ = _fit_pixels("vgl", steps=100)
    early_nll, _ = _fit_pixels("nll", steps=100)
    assert early_nll > 2 * early_vgl


def _source(prior, noise_scale: float, prior_channels: bool):
    """LeDiFlow's source for training: the prior's draws for a batch's codes (its latent sampler is not used)."""
    from ledi_kedro.core.generation import LearnedPriorSource
    from ledi_kedro.core.models import LatentFlow, LatentFlowConfig

    return LearnedPriorSource(prior, LatentFlow(LatentFlowConfig(z_dim=prior.config.z_dim, hidden=8, depth=1)),
                              noise_scale=noise_scale, prior_channels=prior_channels, sample_solver="euler",
                              sample_steps=1, shape=(prior.config.in_channels, prior.config.resolution,
                                                     prior.config.resolution), device=torch.device("cpu"))


def test_ledi_loss_draws_x0_from_the_prior_and_can_show_the_model_its_mean_and_log_variance():
    from ledi_kedro.core.models import PriorConfig, PriorModel, reparameterize

    torch.manual_seed(0)
    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=3, base_channels=4)).eval()
    batch = {"images": torch.rand(4, 1, 8, 8) * 2 - 1, "mu_z": torch.randn(4, 3), "logvar_z": torch.zeros(4, 3)}
    seen = []

    def model(x, t):
        seen.append(x)
        return x[:, :1] * 0

    # Without channels: the loss of the path from x0 = prior.sample_x0(z) (the same draws, in the same order).
    g = torch.Generator().manual_seed(7)
    z = reparameterize(batch["mu_z"], batch["logvar_z"], torch.randn(4, 3, generator=g))
    with torch.no_grad():
        x0 = prior.sample_x0(z, 1.5, generator=g)
    t = sample_time(4, "uniform", generator=g)
    expected = fm_loss(model, x0, batch["images"], t)
    got = fm_objective(_source(prior, 1.5, False), "uniform")(model, batch, torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, expected)
    assert seen[-1].shape == (4, 1, 8, 8)
    # With channels: the model sees [x_t, mu(z), lv(z)]; the target and x_t are the same.
    with_channels = fm_objective(_source(prior, 1.5, True), "uniform")(model, batch, torch.Generator().manual_seed(7))
    torch.testing.assert_close(with_channels, expected)
    with torch.no_grad():
        mean, logvar = prior.decode(z)
    assert seen[-1].shape == (4, 3, 8, 8)
    torch.testing.assert_close(seen[-1][:, :1], seen[-2])
    torch.testing.assert_close(seen[-1][:, 1:], torch.cat([mean, logvar], 1))


def test_warm_ledi_loss_blends_sigma_toward_one_and_tells_the_model_w():
    from ledi_kedro.core.models import PriorConfig, PriorModel, reparameterize

    torch.manual_seed(0)
    prior = PriorModel(PriorConfig(in_channels=1, resolution=8, z_dim=3, base_channels=4)).eval()
    batch = {"images": torch.rand(4, 1, 8, 8) * 2 - 1, "mu_z": torch.randn(4, 3), "logvar_z": torch.zeros(4, 3)}
    seen = {}

    def model(x, t, warmth):
        seen["x"], seen["warmth"] = x, warmth
        return x * 0

    got = fm_objective(_source(prior, 1.5, False), "uniform", warmth=True)(model, batch, torch.Generator().manual_seed(7))
    # the same draws in the same order: w ~ U(0, 1) per image, z ~ q(z | y), eps, t
    g = torch.Generator().manual_seed(7)
    w = torch.rand(4, generator=g)
    z = reparameterize(batch["mu_z"], batch["logvar_z"], torch.randn(4, 3, generator=g))
    with torch.no_grad():
        mean, logvar = prior.decode(z)
    eps = torch.randn(mean.shape, generator=g)
    sigma = (1 - w)[:, None, None, None] * torch.exp(0.5 * logvar) + w[:, None, None, None]
    x0 = mean + 1.5 * sigma * eps
    t = sample_time(4, "uniform", generator=g)
    torch.testing.assert_close(seen["warmth"], w)
    torch.testing.assert_close(got, (batch["images"] - x0).pow(2).mean())  # v = 0: the loss is |x1 - x0|^2
    xt = (1 - t)[:, None, None, None] * x0 + t[:, None, None, None] * batch["images"]
    torch.testing.assert_close(seen["x"], xt)
