"""Posterior samples have the smoothed marginals and lag-one cross-covariances as moments.

Statistical tolerance: with S samples, every sample-moment error is compared with 5 standard
errors (sd of a sample mean: sqrt(var / S); of a sample covariance entry:
sqrt((s_ii s_jj + s_ij^2) / S)), which a correct sampler fails with probability < 1e-5 per entry.
The seed is fixed, so the test is deterministic.
"""

import pytest
import torch
from kalman_oracle import random_problem

from worldmodels.kalman import kalman_smoother, sample_posterior

S = 40000


def _check_moments(z, res):
    S_ = z.shape[0]
    mean, cov, cross = res.mean, res.cov, res.cross_cov
    var = torch.diagonal(cov, dim1=-2, dim2=-1)
    se_mean = (var / S_).sqrt()
    assert ((z.mean(0) - mean).abs() <= 5 * se_mean).all()
    d = z - mean
    emp = torch.einsum("sbti,sbtj->btij", d, d) / S_
    se = ((var.unsqueeze(-1) * var.unsqueeze(-2) + cov ** 2) / S_).sqrt()
    assert ((emp - cov).abs() <= 5 * se).all(), (emp - cov).abs().max()
    emp_x = torch.einsum("sbti,sbtj->btij", d[:, :, 1:], d[:, :, :-1]) / S_
    se_x = ((var[:, 1:].unsqueeze(-1) * var[:, :-1].unsqueeze(-2) + cross ** 2) / S_).sqrt()
    assert ((emp_x - cross).abs() <= 5 * se_x).all(), (emp_x - cross).abs().max()


@pytest.mark.parametrize("method", ["sequential", "parallel"])
@pytest.mark.parametrize("opts", [dict(), dict(varying=True, mask=True)])
def test_sample_moments_match_smoother(opts, method):
    kw = random_problem(batch=2, steps=5, n=3, m=2, seed=11, **opts)
    res = kalman_smoother(**kw)
    z = sample_posterior(**kw, num_samples=S, generator=torch.Generator().manual_seed(0),
                         method=method)
    assert z.shape == (S, 2, 5, 3)
    _check_moments(z, res)


def test_sampler_catches_wrong_moments():
    """Guard that the moment check has power: samples from the marginals only (no temporal
    correlation) must fail the cross-covariance check."""
    kw = random_problem(batch=2, steps=5, n=3, m=2, seed=11)
    res = kalman_smoother(**kw)
    g = torch.Generator().manual_seed(1)
    eps = torch.randn(S, 2, 5, 3, generator=g, dtype=torch.float64)
    z = res.mean + (torch.linalg.cholesky(res.cov) @ eps.unsqueeze(-1)).squeeze(-1)
    with pytest.raises(AssertionError):
        _check_moments(z, res)


def test_generator_makes_samples_reproducible_and_sequential_equals_parallel():
    kw = random_problem(batch=2, steps=6, mask=True, seed=2)
    a = sample_posterior(**kw, num_samples=3, generator=torch.Generator().manual_seed(5))
    b = sample_posterior(**kw, num_samples=3, generator=torch.Generator().manual_seed(5))
    c = sample_posterior(**kw, num_samples=3, generator=torch.Generator().manual_seed(5),
                         method="parallel")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=1e-9, atol=1e-9)
