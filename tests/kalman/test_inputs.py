"""Bad input raises a clear ValueError naming the argument."""

import pytest
import torch
from kalman_oracle import random_problem

from worldmodels.kalman import kalman_filter, kalman_smoother, predict_step, rollout, sample_posterior, update_step


def _kw(**opts):
    return random_problem(batch=2, steps=4, n=3, m=2, p=1, **opts)


@pytest.mark.parametrize("name,value,match", [
    ("obs", torch.zeros(2, 4), "obs: expected shape"),
    ("A", torch.eye(2, dtype=torch.float64), r"A: expected shape \[3, 3\]"),
    ("A", torch.zeros(2, 5, 3, 3, dtype=torch.float64), r"A: expected shape \[2, 4, 3, 3\]"),
    ("A", torch.zeros(3, 3, 3, dtype=torch.float64), "A: expected shape"),
    ("C", torch.zeros(3, 3, dtype=torch.float64), r"C: expected shape \[2, 3\]"),
    ("R", torch.eye(3, dtype=torch.float64), r"R: expected shape \[2, 2\]"),
    ("mu0", torch.zeros(3, 3, dtype=torch.float64), r"mu0: expected shape \[2, 3\]"),
    ("P0", torch.eye(2, dtype=torch.float64), r"P0: expected shape \[3, 3\]"),
    ("controls", torch.zeros(2, 4, 1, 1, dtype=torch.float64), "controls: expected shape"),
    ("B", torch.zeros(3, 2, dtype=torch.float64), r"B: expected shape \[3, 1\]"),
    ("mask", torch.ones(2, 5), r"mask: expected shape \[2, 4\]"),
    ("Q", -torch.eye(3, dtype=torch.float64), "Q must be positive definite"),
    ("R", torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64), "R must be symmetric"),
    ("P0", torch.full((3, 3), float("nan"), dtype=torch.float64), "P0 contains NaN"),
    ("A", torch.full((3, 3), float("inf"), dtype=torch.float64), "A contains NaN"),
    ("Q", torch.eye(3, dtype=torch.float32), "Q has dtype torch.float32"),
])
def test_bad_argument_names_itself(name, value, match):
    kw = _kw()
    kw[name] = value
    with pytest.raises(ValueError, match=match):
        kalman_smoother(**kw)


def test_controls_without_B():
    kw = _kw()
    del kw["B"]
    with pytest.raises(ValueError, match="B and controls"):
        kalman_filter(**kw)


def test_nan_observation_under_observed_mask():
    kw = _kw(mask=True)
    obs = kw["obs"].clone()
    obs[1, 2] = float("nan")
    kw["obs"] = obs
    kw["mask"][1, 2] = 1.0
    with pytest.raises(ValueError, match=r"obs contains NaN or inf at an observed step \(batch 1, step 2\)"):
        kalman_filter(**kw)
    del kw["mask"]
    with pytest.raises(ValueError, match="obs contains NaN"):
        kalman_filter(**kw)


def test_nan_under_missing_mask_is_ignored_with_finite_gradients():
    kw = _kw(mask=True)
    assert torch.isnan(kw["obs"]).any()
    obs = kw["obs"].clone().requires_grad_(True)
    A = kw["A"].clone().requires_grad_(True)
    kw.update(obs=obs, A=A)
    res = kalman_smoother(**kw)
    for x in (res.mean, res.cov, res.log_likelihood):
        assert torch.isfinite(x).all()
    (res.mean.sum() + res.log_likelihood.sum()).backward()
    assert torch.isfinite(A.grad).all()
    assert torch.isfinite(obs.grad).all()
    missing = kw["mask"] == 0
    assert (obs.grad[missing] == 0).all()


def test_bad_method_and_num_samples():
    kw = _kw()
    with pytest.raises(ValueError, match="method must be one of"):
        kalman_filter(**kw, method="fast")
    with pytest.raises(ValueError, match="num_samples"):
        sample_posterior(**kw, num_samples=0)


def test_step_and_rollout_shape_errors():
    m, P = torch.zeros(5, 3), torch.eye(3).expand(5, 3, 3)
    with pytest.raises(ValueError, match="A: expected shape"):
        predict_step(m, P, torch.eye(2), torch.eye(3))
    with pytest.raises(ValueError, match="cov: expected shape"):
        predict_step(m, torch.eye(2), torch.eye(3), torch.eye(3))
    with pytest.raises(ValueError, match="C: expected shape"):
        update_step(m, P, torch.zeros(5, 2), torch.zeros(2, 4), torch.eye(2))
    with pytest.raises(ValueError, match="mask: expected shape"):
        update_step(m, P, torch.zeros(5, 2), torch.zeros(2, 3), torch.eye(2), mask=torch.ones(4))
    with pytest.raises(ValueError, match="B: expected shape"):
        rollout(m, torch.eye(3), torch.zeros(2, 1), torch.zeros(5, 7, 1))
    with pytest.raises(ValueError, match="Q .* is required"):
        rollout(m, torch.eye(3), torch.zeros(3, 1), torch.zeros(5, 7, 1), cov=P)
