"""torch.autograd.gradcheck (float64) through filter, smoother and sampler w.r.t. every input."""

import pytest
import torch
from kalman_oracle import random_problem

from worldmodels.kalman import kalman_filter, kalman_smoother, predict_step, sample_posterior, update_step

NAMES = ("obs", "A", "C", "Q", "R", "mu0", "P0", "B", "controls")


def _inputs(varying, mask):
    kw = random_problem(batch=2, steps=3, n=2, m=2, p=1, varying=varying, mask=mask, seed=4)
    mk = kw.pop("mask", None)
    if mk is not None:
        kw["obs"] = torch.nan_to_num(kw["obs"], nan=0.0)
    # covariances enter through unconstrained square roots so perturbations keep them SPD
    for k in ("Q", "R", "P0"):
        kw[k] = torch.linalg.cholesky(kw[k])
    return [kw[k].clone().requires_grad_(True) for k in NAMES], mk


def _call(fn, args, mask, **extra):
    kw = dict(zip(NAMES, args))
    for k in ("Q", "R", "P0"):
        L = torch.tril(kw[k])
        kw[k] = L @ L.mT
    return fn(kw.pop("obs"), mask=mask, **kw, **extra)


@pytest.mark.parametrize("method", ["sequential", "parallel"])
@pytest.mark.parametrize("varying,mask", [(False, False), (True, True)])
def test_gradcheck_filter_smoother_sampler(varying, mask, method):
    args, mk = _inputs(varying, mask)

    def smoother(*a):
        r = _call(kalman_smoother, a, mk, method=method)
        return r.log_likelihood, r.mean, r.cov, r.cross_cov, r.filter.filt_cov

    def sampler(*a):
        return _call(sample_posterior, a, mk, method=method, num_samples=2,
                     generator=torch.Generator().manual_seed(0))

    assert torch.autograd.gradcheck(smoother, args, fast_mode=True)
    assert torch.autograd.gradcheck(sampler, args, fast_mode=True)


def test_gradcheck_filter_only_and_steps():
    args, mk = _inputs(True, True)
    assert torch.autograd.gradcheck(
        lambda *a: _call(kalman_filter, a, mk).log_likelihood, args, fast_mode=True)
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    Lp = torch.eye(2, dtype=torch.float64) + 0.1 * torch.randn(3, 2, 2, dtype=torch.float64, generator=g)
    Lp.requires_grad_(True)
    y = torch.randn(3, 2, dtype=torch.float64, generator=g, requires_grad=True)
    Cm = torch.randn(3, 2, 2, dtype=torch.float64, generator=g, requires_grad=True)
    R = torch.eye(2, dtype=torch.float64)
    A = torch.randn(2, 2, dtype=torch.float64, generator=g, requires_grad=True)

    def steps(m, Lp, y, Cm, A):
        mp, Pp = predict_step(m, Lp @ Lp.mT, A, R)
        return update_step(mp, Pp, y, Cm, R, mask=torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))

    assert torch.autograd.gradcheck(steps, (m, Lp, y, Cm, A))


@pytest.mark.parametrize("impl", ["batch_first", "batch_last"])
def test_gradcheck_each_internal_implementation(impl):
    """The GPU path (batch_first) and the CPU path (batch_last) are both differentiable."""
    from worldmodels.kalman.inputs import prepare
    from worldmodels.kalman.sequential import filter_sequential, sample_sequential, smoother_sequential

    args, mk = _inputs(True, True)
    eps = torch.randn(2, 2, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def run(*a):
        kw = dict(zip(NAMES, a))
        for k in ("Q", "R", "P0"):
            L = torch.tril(kw[k])
            kw[k] = L @ L.mT
        pb = prepare(kw.pop("obs"), mask=mk, **kw)
        f = filter_sequential(pb, impl)
        mean, cov, cross = smoother_sequential(pb, f, impl)
        return f.log_likelihood, mean, cov, cross, sample_sequential(pb, f, eps, impl)

    assert torch.autograd.gradcheck(run, args, fast_mode=True)
