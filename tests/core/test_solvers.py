import math

import pytest
import torch

from ledi_kedro.core.solvers import FIXED_SOLVERS, convergence_order, integrate, stages, steps_for_nfe

LAMBDA = -1.3


def linear_field(x, t):
    return LAMBDA * x


def time_dependent_field(x, t):  # dx/dt = -2 t x  ->  x(t) = x0 exp(-t^2)
    return -2.0 * t * x


@pytest.mark.parametrize("solver, order", [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)])
def test_convergence_order(solver, order):
    x0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    steps = [4, 8, 16, 32]
    errors = []
    for field, exact in ((linear_field, x0 * math.exp(LAMBDA)), (time_dependent_field, x0 * math.exp(-1.0))):
        errs = [float((integrate(field, x0, solver=solver, steps=s).x - exact).abs().max()) for s in steps]
        errors.append(errs)
        assert convergence_order(errs, steps) == pytest.approx(order, abs=0.25)


@pytest.mark.parametrize("solver", FIXED_SOLVERS)
def test_nfe_is_steps_times_stages(solver):
    sol = integrate(linear_field, torch.ones(3), solver=solver, steps=5)
    assert sol.nfe == 5 * stages(solver)
    assert integrate(linear_field, torch.ones(3), solver=solver, nfe=4 * stages(solver)).nfe == 4 * stages(solver)


def test_nfe_must_fit_the_solver():
    assert steps_for_nfe("midpoint", 8) == 4
    with pytest.raises(ValueError, match="nfe=3.*midpoint"):
        integrate(linear_field, torch.ones(1), solver="midpoint", nfe=3)
    with pytest.raises(ValueError, match="exactly one of steps or nfe"):
        integrate(linear_field, torch.ones(1), solver="euler")
    with pytest.raises(ValueError, match="unknown fixed-grid solver 'rk45'"):
        integrate(linear_field, torch.ones(1), solver="rk45", steps=2)
    with pytest.raises(ValueError, match="positive"):
        integrate(linear_field, torch.ones(1), solver="euler", steps=0)


def test_straight_field_is_exact_in_one_step():
    x0, x1 = torch.randn(4, 3), torch.randn(4, 3)
    sol = integrate(lambda x, t: x1 - x0, x0, solver="euler", steps=1)
    torch.testing.assert_close(sol.x, x1)


def test_dopri5_accuracy_and_counted_nfe():
    calls = []

    def field(x, t):
        calls.append(1)
        return time_dependent_field(x, t)

    x0 = torch.tensor([2.0, 1.0], dtype=torch.float64)
    loose = integrate(field, x0, solver="dopri5", rtol=1e-3, atol=1e-3)
    n_loose = len(calls)
    tight = integrate(field, x0, solver="dopri5", rtol=1e-8, atol=1e-8)
    exact = x0 * math.exp(-1.0)
    assert loose.nfe == n_loose and tight.nfe == len(calls) - n_loose
    assert float((tight.x - exact).abs().max()) < 1e-6
    assert float((loose.x - exact).abs().max()) < 1e-2
    assert tight.nfe > loose.nfe
    with pytest.raises(ValueError, match="adaptive"):
        integrate(field, x0, solver="dopri5", steps=4)


def test_dopri5_gives_up_with_a_clear_error():
    with pytest.raises(RuntimeError, match="max_nfe=20"):
        integrate(lambda x, t: 50 * torch.cos(50 * t) * torch.ones_like(x), torch.zeros(1, dtype=torch.float64),
                  solver="dopri5", rtol=1e-10, atol=1e-10, max_nfe=20)


@pytest.mark.parametrize("solver", ["euler", "rk4", "dopri5"])
def test_trajectory(solver):
    kwargs = {} if solver == "dopri5" else {"steps": 4}
    sol = integrate(linear_field, torch.ones(2, 3), solver=solver, return_trajectory=True, **kwargs)
    assert sol.trajectory.shape == (len(sol.times), 2, 3)
    assert sol.times[0] == 0.0 and sol.times[-1] == pytest.approx(1.0)
    torch.testing.assert_close(sol.trajectory[-1], sol.x)
    assert integrate(linear_field, torch.ones(1), solver="euler", steps=2).trajectory is None


def test_callback_runs_after_each_step():
    seen = []

    def cb(x, t):
        seen.append(round(t, 6))
        return torch.zeros_like(x)

    sol = integrate(lambda x, t: torch.ones_like(x), torch.zeros(1), solver="heun", steps=4, callback=cb)
    assert seen == [0.25, 0.5, 0.75, 1.0] and float(sol.x) == 0.0
