"""ODE solvers for dx/dt = f(x, t) with one shared signature.

``integrate(f, x0, solver=..., steps=... | nfe=...)`` returns an :class:`ODESolution` with the end
state, the number of function evaluations (NFE) actually spent and, optionally, the trajectory.
Fixed-grid methods spend ``steps * stages`` evaluations; ``dopri5`` is adaptive and counts them.
``f`` receives ``t`` as a 0-d tensor on ``x``'s device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

VelocityField = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[torch.Tensor, float], torch.Tensor]

# Butcher tableaux (c, a, b) of the explicit fixed-grid methods.
_TABLEAUX: dict[str, tuple[list[float], list[list[float]], list[float]]] = {
    "euler": ([0.0], [[]], [1.0]),
    "midpoint": ([0.0, 0.5], [[], [0.5]], [0.0, 1.0]),
    "heun": ([0.0, 1.0], [[], [1.0]], [0.5, 0.5]),
    "rk4": ([0.0, 0.5, 0.5, 1.0], [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
}
FIXED_SOLVERS = tuple(_TABLEAUX)
ADAPTIVE_SOLVERS = ("dopri5",)
SOLVERS = FIXED_SOLVERS + ADAPTIVE_SOLVERS


def check_solver(name: str, adaptive: bool = True, what: str = "solver") -> str:
    """``name`` if it is a known solver (fixed-grid, or also adaptive when ``adaptive``); else a
    ValueError that names ``what`` and the choices."""
    choices = SOLVERS if adaptive else FIXED_SOLVERS
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r}; choose one of {', '.join(choices)}")
    return name


def stages(solver: str) -> int:
    """Function evaluations per step of a fixed-grid solver."""
    if solver not in _TABLEAUX:
        raise ValueError(f"unknown fixed-grid solver {solver!r}; choose one of {', '.join(FIXED_SOLVERS)}")
    return len(_TABLEAUX[solver][2])


def steps_for_nfe(solver: str, nfe: int) -> int:
    """Number of steps that spends exactly ``nfe`` evaluations; error when that is impossible."""
    k = stages(solver)
    if nfe < k or nfe % k:
        raise ValueError(f"nfe={nfe} is not a positive multiple of {solver}'s {k} evaluations per step")
    return nfe // k


@dataclass
class ODESolution:
    """End state ``x`` (shape of x0), evaluations spent, and the states at ``times`` if asked for."""

    x: torch.Tensor
    nfe: int
    times: list[float] | None = None
    trajectory: torch.Tensor | None = None  # (len(times), *x0.shape)


class _Counted:
    def __init__(self, f: VelocityField):
        self.f, self.nfe = f, 0

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        self.nfe += 1
        return self.f(x, torch.as_tensor(t, dtype=torch.float32, device=x.device))


def _fixed_grid(f: _Counted, x: torch.Tensor, solver: str, steps: int, t0: float, t1: float,
                keep: bool, callback: StepCallback | None) -> tuple[torch.Tensor, list[float], list[torch.Tensor]]:
    c, a, b = _TABLEAUX[solver]
    h = (t1 - t0) / steps
    times, states = [t0], [x] if keep else []
    for i in range(steps):
        t = t0 + i * h
        ks: list[torch.Tensor] = []
        for j in range(len(b)):
            xj = x
            for aj, kj in zip(a[j], ks):
                if aj:
                    xj = xj + (h * aj) * kj
            ks.append(f(xj, t + c[j] * h))
        x = x + sum((h * bj) * kj for bj, kj in zip(b, ks) if bj)
        t_next = t0 + (i + 1) * h
        if callback is not None:
            x = callback(x, t_next)
        times.append(t_next)
        if keep:
            states.append(x)
    return x, times, states


# Dormand-Prince 5(4) coefficients.
_DP_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_DP_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_DP_B5 = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_DP_B4 = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


def _dopri5(f: _Counted, x: torch.Tensor, t0: float, t1: float, rtol: float, atol: float,
            max_nfe: int, keep: bool) -> tuple[torch.Tensor, list[float], list[torch.Tensor]]:
    t, direction = t0, 1.0 if t1 >= t0 else -1.0
    k1 = f(x, t)
    # Initial step: Hairer, Norsett & Wanner, "Solving ODEs I", II.4.
    scale = atol + rtol * x.abs()
    d0, d1 = _rms(x / scale), _rms(k1 / scale)
    h = 0.01 * d0 / d1 if d0 > 1e-5 and d1 > 1e-5 else 1e-6
    h = min(h, abs(t1 - t0))
    times, states = [t0], [x] if keep else []
    while direction * (t1 - t) > 1e-12:
        if f.nfe >= max_nfe:
            raise RuntimeError(f"dopri5 used max_nfe={max_nfe} evaluations before reaching t={t1}; "
                               "loosen rtol/atol or raise max_nfe")
        h = min(h, abs(t1 - t))
        ks = [k1]
        for j in range(1, 7):
            xj = x + sum((direction * h * aj) * kj for aj, kj in zip(_DP_A[j], ks) if aj)
            ks.append(f(xj, t + direction * _DP_C[j] * h))
        x5 = x + sum((direction * h * bj) * kj for bj, kj in zip(_DP_B5, ks) if bj)
        err = sum((direction * h * (b5 - b4)) * kj for b5, b4, kj in zip(_DP_B5, _DP_B4, ks) if b5 != b4)
        tol = atol + rtol * torch.maximum(x.abs(), x5.abs())
        e = _rms(err / tol)
        if e <= 1.0:
            t, x, k1 = t + direction * h, x5, ks[6]  # FSAL: the last stage is f at the new point
            times.append(t)
            if keep:
                states.append(x)
        factor = 0.9 * (1.0 / max(e, 1e-10)) ** 0.2
        h *= min(10.0, max(0.2, factor))
    return x, times, states


def _rms(x: torch.Tensor) -> float:
    return float(x.float().pow(2).mean().sqrt())


@torch.no_grad()
def integrate(
    f: VelocityField,
    x0: torch.Tensor,
    *,
    solver: str = "euler",
    steps: int | None = None,
    nfe: int | None = None,
    t0: float = 0.0,
    t1: float = 1.0,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    max_nfe: int = 10_000,
    return_trajectory: bool = False,
    callback: StepCallback | None = None,
) -> ODESolution:
    """Integrate dx/dt = f(x, t) from ``t0`` to ``t1``.

    Fixed-grid solvers take ``steps`` or ``nfe`` (exactly one of them); ``dopri5`` takes neither
    and adapts its step to ``rtol``/``atol``. ``callback(x, t)`` runs after each fixed-grid step
    and may return a modified state (used by inpainting).
    """
    counted = _Counted(f)
    if solver in ADAPTIVE_SOLVERS:
        if steps is not None or nfe is not None:
            raise ValueError("dopri5 is adaptive: pass rtol/atol, not steps or nfe")
        if callback is not None:
            raise ValueError("step callbacks need a fixed-grid solver, not dopri5")
        x, times, states = _dopri5(counted, x0, t0, t1, rtol, atol, max_nfe, return_trajectory)
    else:
        if (steps is None) == (nfe is None):
            raise ValueError(f"{solver}: give exactly one of steps or nfe")
        n_steps = steps if steps is not None else steps_for_nfe(solver, nfe)  # type: ignore[arg-type]
        stages(solver)  # validates the name
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"steps must be a positive integer, got {n_steps!r}")
        x, times, states = _fixed_grid(counted, x0, solver, n_steps, t0, t1, return_trajectory, callback)
    traj = torch.stack(states) if return_trajectory else None
    return ODESolution(x=x, nfe=counted.nfe, times=times if return_trajectory else None, trajectory=traj)


def convergence_order(errors: list[float], steps: list[int]) -> float:
    """Least-squares slope of log(error) against log(1/steps): the empirical order of accuracy."""
    xs = [math.log(1.0 / s) for s in steps]
    ys = [math.log(e) for e in errors]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
