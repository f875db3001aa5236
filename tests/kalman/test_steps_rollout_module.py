"""predict_step / update_step compose into the filter; rollout; the LGSSM module."""

import pytest
import torch
from kalman_oracle import random_problem

from worldmodels.kalman import LGSSM, PDMatrix, kalman_filter, kalman_smoother, predict_step, rollout, update_step


def test_steps_reproduce_filter_with_time_varying_matrices_and_mask():
    kw = random_problem(batch=3, steps=6, varying=True, mask=True, seed=9)
    ref = kalman_filter(**kw)
    mean, cov = kw["mu0"].expand(3, -1), kw["P0"]
    ll = torch.zeros(3, dtype=torch.float64)
    for t in range(6):
        if t > 0:
            mean, cov = predict_step(mean, cov, kw["A"][:, t], kw["Q"], kw["B"][:, t], kw["controls"][:, t])
            torch.testing.assert_close(mean, ref.pred_mean[:, t])
            torch.testing.assert_close(cov, ref.pred_cov[:, t])
        mean, cov, l = update_step(mean, cov, kw["obs"][:, t], kw["C"][:, t], kw["R"], mask=kw["mask"][:, t])
        assert torch.isfinite(l).all()
        ll = ll + l
        torch.testing.assert_close(mean, ref.filt_mean[:, t])
        torch.testing.assert_close(cov, ref.filt_cov[:, t])
    torch.testing.assert_close(ll, ref.log_likelihood)


def test_rollout_matches_explicit_recursion_and_broadcasts_candidates():
    g = torch.Generator().manual_seed(0)
    Bsz, N, H, n, p = 2, 5, 7, 3, 2
    A = 0.5 * torch.randn(n, n, generator=g, dtype=torch.float64)
    Bm = torch.randn(n, p, generator=g, dtype=torch.float64)
    u = torch.randn(Bsz, N, H, p, generator=g, dtype=torch.float64)
    z0 = torch.randn(Bsz, 1, n, generator=g, dtype=torch.float64)      # broadcasts over N
    P0 = torch.eye(n, dtype=torch.float64)
    Q = 0.1 * torch.eye(n, dtype=torch.float64)
    means, covs = rollout(z0, A, Bm, u, cov=P0, Q=Q)
    assert means.shape == (Bsz, N, H, n) and covs.shape == (H, n, n)
    z, P = z0.expand(Bsz, N, n), P0
    for h in range(H):
        z = z @ A.T + u[:, :, h] @ Bm.T
        P = A @ P @ A.T + Q
        torch.testing.assert_close(means[:, :, h], z)
        torch.testing.assert_close(covs[..., h, :, :], P.expand_as(covs[..., h, :, :]))
    # per-step, per-candidate A and B; no covariance
    Ah = 0.5 * torch.randn(Bsz, N, H, n, n, generator=g, dtype=torch.float64)
    Bh = torch.randn(Bsz, N, H, n, p, generator=g, dtype=torch.float64)
    out = rollout(z0.expand(Bsz, N, n), Ah, Bh, u)
    z = z0.expand(Bsz, N, n)
    for h in range(H):
        z = (Ah[:, :, h] @ z.unsqueeze(-1)).squeeze(-1) + (Bh[:, :, h] @ u[:, :, h].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out[:, :, -1], z)


def test_rollout_equals_filter_prediction_when_everything_is_masked():
    kw = random_problem(batch=2, steps=5, seed=1)
    kw["mask"] = torch.zeros(2, 5)
    ref = kalman_filter(**kw)
    means, covs = rollout(kw["mu0"].expand(2, -1), kw["A"], kw["B"], kw["controls"][:, 1:], cov=kw["P0"], Q=kw["Q"])
    torch.testing.assert_close(means, ref.pred_mean[:, 1:])
    torch.testing.assert_close(covs.expand(2, 4, 3, 3), ref.pred_cov[:, 1:])


@pytest.mark.parametrize("kind", ["full", "diag", "iso"])
def test_pd_matrix_stays_pd_and_initialises(kind):
    torch.manual_seed(0)
    M = PDMatrix(3, 0.3, kind)
    torch.testing.assert_close(M(), 0.3 * torch.eye(3), atol=1e-5, rtol=1e-4)
    M = M.double()  # eigenvalues of an ill-conditioned 3x3 are at float32 rounding noise
    with torch.no_grad():
        M.raw.copy_(torch.randn_like(M.raw) * 3 - 5)
    assert (torch.linalg.eigvalsh(M()) > 0).all()
    with torch.no_grad():  # extreme raw values: the variance floor still holds on the diagonal
        M.raw.copy_(torch.randn_like(M.raw) * 10 - 20)
    assert (torch.diagonal(M()) >= M.min_var * (1 - 1e-9)).all()


def test_lgssm_module_learns_by_gradient_and_accepts_overrides():
    g = torch.Generator().manual_seed(0)
    model = LGSSM(2, 2, control_dim=1, noise="diag", generator=g)
    obs = torch.randn(4, 8, 2, generator=g)
    u = torch.randn(4, 8, 1, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(30):
        loss = -model.filter(obs, controls=u).log_likelihood.mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 1.0
    A_t = torch.eye(2).expand(4, 8, 2, 2)
    s = model.smooth(obs, controls=u, A=A_t, mask=torch.ones(4, 8), method="parallel")
    params = {k: v for k, v in model.parameters_dict(A=A_t, controls=u).items() if k != "controls"}
    ref = kalman_smoother(obs, controls=u, **params)
    torch.testing.assert_close(s.mean, ref.mean, atol=1e-4, rtol=1e-4)
    z = model.sample_posterior(obs, controls=u, num_samples=3, generator=torch.Generator().manual_seed(1))
    assert z.shape == (3, 4, 8, 2)
    with pytest.raises(ValueError, match="controls given"):
        LGSSM(2, 2).filter(obs, controls=u)


def test_lgssm_fixed_initial_state_and_iso_noise():
    model = LGSSM(3, 2, noise="iso", init_P0=20.0, learn_initial=False)
    names = {n for n, _ in model.named_parameters()}
    assert names == {"A", "C", "Q.raw", "R.raw"}
    torch.testing.assert_close(model.initial_cov(), 20.0 * torch.eye(3))
    obs = torch.randn(2, 5, 2)
    res = model.smooth(obs)
    assert res.mean.shape == (2, 5, 3) and torch.isfinite(res.log_likelihood).all()
    with pytest.raises(ValueError, match="noise must be one of"):
        LGSSM(3, 2, noise="banded")
