"""float32 over T = 1000 stays symmetric PD, finite and within 1e-3 of float64; sequential ==
parallel on longer sequences."""

import math

import pytest
import torch

from worldmodels.kalman import kalman_smoother


def _long_problem(T, varying, batch=3, n=4, m=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    th = 0.1
    rot = torch.tensor([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    A = torch.block_diag(0.999 * rot, torch.tensor([[1.0, 0.1], [0.0, 1.0]]))  # one unstable-ish block
    C = torch.randn(m, n, generator=g)
    kw = dict(Q=0.01 * torch.eye(n) + 0.001, R=0.05 * torch.eye(m), mu0=torch.zeros(n),
              P0=10.0 * torch.eye(n), B=torch.randn(n, 1, generator=g),
              controls=0.1 * torch.randn(batch, T, 1, generator=g))
    if varying:
        kw["A"] = A + 0.01 * torch.randn(batch, T, n, n, generator=g)
        kw["C"] = C + 0.1 * torch.randn(batch, T, m, n, generator=g)
        mask = (torch.rand(batch, T, generator=g) > 0.3).float()
        kw["mask"] = mask
    else:
        kw["A"], kw["C"] = A, C
    # simulate observations in float64
    z = torch.zeros(batch, n, dtype=torch.float64)
    obs = []
    for t in range(T):
        At = kw["A"] if kw["A"].dim() == 2 else kw["A"][:, t]
        Ct = kw["C"] if kw["C"].dim() == 2 else kw["C"][:, t]
        if t > 0:
            noise = torch.randn(batch, n, generator=g, dtype=torch.float64)
            z = (At.double() @ z.unsqueeze(-1)).squeeze(-1) + 0.1 * noise
        noise = torch.randn(batch, m, generator=g, dtype=torch.float64)
        obs.append((Ct.double() @ z.unsqueeze(-1)).squeeze(-1) + 0.2 * noise)
    kw["obs"] = torch.stack(obs, 1).float()
    return kw


@pytest.mark.parametrize("varying", [False, True])
def test_float32_long_sequence_matches_float64(varying):
    kw = _long_problem(1000, varying)
    r32 = kalman_smoother(**kw)
    r64 = kalman_smoother(**{k: v.double() for k, v in kw.items()})
    for name in ("mean", "cov", "cross_cov"):
        a, b = getattr(r32, name), getattr(r64, name)
        assert torch.isfinite(a).all(), name
        err = (a.double() - b).abs().max().item()
        assert err < 1e-3, f"{name}: float32 vs float64 max abs error {err:.3g}"
    for a, b in ((r32.filter.filt_mean, r64.filter.filt_mean), (r32.filter.filt_cov, r64.filter.filt_cov)):
        assert (a.double() - b).abs().max().item() < 1e-3
    rel = ((r32.log_likelihood.double() - r64.log_likelihood).abs() / r64.log_likelihood.abs()).max()
    assert rel < 1e-3
    for cov in (r32.cov, r32.filter.filt_cov, r32.filter.pred_cov):
        assert torch.equal(cov, cov.mT) or (cov - cov.mT).abs().max() < 1e-6
        assert (torch.linalg.eigvalsh(cov) > 0).all()


@pytest.mark.parametrize("varying", [False, True])
def test_sequential_equals_parallel_long(varying):
    kw = {k: v.double() for k, v in _long_problem(77, varying, seed=1).items()}
    a = kalman_smoother(**kw)
    b = kalman_smoother(**kw, method="parallel")
    for name in ("mean", "cov", "cross_cov"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=1e-10, atol=1e-8)
    kw32 = {k: v.float() for k, v in kw.items()}
    a = kalman_smoother(**kw32)
    b = kalman_smoother(**kw32, method="parallel")
    torch.testing.assert_close(a.mean, b.mean, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(a.cov, b.cov, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("host", [True, False])
def test_steady_state_shortcut_matches_full_recursion(monkeypatch, host):
    """Without gradients the shared-covariance filter stops the Riccati recursion at its fixed
    point (in float64 NumPy on the CPU, or in PyTorch as on other devices); with gradients it
    runs every step.  Both must agree to rounding."""
    from kalman_oracle import random_problem

    from worldmodels.kalman import shared

    if not host:
        monkeypatch.setattr(shared, "HOST_DEVICES", ())
    kw = random_problem(batch=3, steps=200, n=3, m=2, seed=2)
    steps = []
    real = shared.compute_covariances

    def spy(pb, smoother):
        value = real(pb, smoother)
        steps.append((shared.on_host(pb), value.gains.gain.shape[0]))
        return value

    monkeypatch.setattr(shared, "compute_covariances", spy)
    fast = kalman_smoother(**kw)
    assert steps[0][0] == host and steps[0][1] < 100            # stopped early
    A = kw["A"].clone().requires_grad_(True)
    full = kalman_smoother(**dict(kw, A=A))
    assert steps[1] == (False, 200)                              # never with gradients
    for name in ("mean", "cov", "cross_cov"):
        torch.testing.assert_close(getattr(fast, name), getattr(full, name).detach(), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fast.log_likelihood, full.log_likelihood.detach(), rtol=1e-12, atol=1e-9)


def test_parallel_float32_long_sequence_matches_float64():
    """The scan composes long products, so in float32 its mean error grows with the mean's
    magnitude (here up to ~300 on the near-unit-root block): compare relative to that scale."""
    kw = _long_problem(1000, varying=False)
    r32 = kalman_smoother(**kw, method="parallel")
    r64 = kalman_smoother(**{k: v.double() for k, v in kw.items()})
    scale = max(1.0, r64.mean.abs().max().item())
    assert (r32.mean.double() - r64.mean).abs().max().item() < 1e-3 * scale
    assert (r32.cov.double() - r64.cov).abs().max().item() < 1e-3
    assert (torch.linalg.eigvalsh(r32.cov) > 0).all() and torch.isfinite(r32.cross_cov).all()
