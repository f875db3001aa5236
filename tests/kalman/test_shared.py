"""The shared-covariance smoother (worldmodels.kalman.shared): exact against the dense oracle and
the per-sequence implementation beyond its steady state, in float64 and float32; its affine
recursions and closed-form Stein sums equal plain step-by-step loops; gradients flow;
the public API takes it exactly when A, C, P0 are shared and nothing is masked."""

import numpy as np
import pytest
import torch
from kalman_oracle import oracle, random_problem

from worldmodels.kalman import kalman_filter, kalman_smoother, shared, shared_host
from worldmodels.kalman.inputs import prepare
from worldmodels.kalman.sequential import filter_sequential, smoother_sequential

FIELDS = ("mean", "cov", "cross_cov")


def _reference(kw):
    """Smoother by the per-sequence implementation (its own oracle tests cover it)."""
    pb = prepare(**kw)
    f = filter_sequential(pb, "batch_first")
    mean, cov, cross = smoother_sequential(pb, f, "batch_first")
    return dict(mean=mean, cov=cov, cross_cov=cross, ll=f.log_likelihood, filt_mean=f.filt_mean,
                pred_mean=f.pred_mean, filt_cov=f.filt_cov, pred_cov=f.pred_cov)


def _assert_close(res, ref, tol):
    f = res.filter
    got = dict(mean=res.mean, cov=res.cov, cross_cov=res.cross_cov, ll=f.log_likelihood,
               filt_mean=f.filt_mean, pred_mean=f.pred_mean, filt_cov=f.filt_cov, pred_cov=f.pred_cov)
    for name, want in ref.items():
        if name not in got:
            continue
        assert got[name].shape == want.shape, name
        if want.numel() == 0:
            continue
        scale = max(1.0, want.abs().max().item())
        err = (got[name].double() - want.double()).abs().max().item()
        assert err <= tol * scale, f"{name}: max abs error {err:.3g} (scale {scale:.3g})"


def _steady_index(kw) -> int:
    return shared.filter_covariances(prepare(**kw)).gain.shape[0]


@pytest.mark.parametrize("seed,steps", [(0, 40), (2, 40), (4, 7)])
@pytest.mark.parametrize("controls", [True, False])
def test_matches_dense_oracle_past_the_steady_state(seed, steps, controls):
    kw = random_problem(batch=3, steps=steps, n=3, m=2, controls=controls, seed=seed)
    if steps == 40:
        assert _steady_index(kw) < steps - 10                    # well past the steady state
    with torch.no_grad():
        _assert_close(kalman_smoother(**kw), oracle(kw), 1e-8)


@pytest.mark.parametrize("n,m,steps", [(1, 3, 9), (3, 4, 30), (2, 2, 2)])
def test_other_shapes_and_a_per_sequence_mean_prior(monkeypatch, n, m, steps):
    """m > n, n = 1, T = 2, and mu0 [B, n] with a shared P0 (still the shared path)."""
    calls = []
    real = shared.smoother_shared
    monkeypatch.setattr(shared, "smoother_shared", lambda pb: calls.append(1) or real(pb))
    kw = random_problem(batch=2, steps=steps, n=n, m=m, seed=n + m)
    kw["mu0"] = torch.randn(2, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _assert_close(kalman_smoother(**kw), oracle(kw), 1e-8)
    assert calls


@pytest.mark.parametrize("steps", [1, 2, 17, 250])
def test_matches_per_sequence_implementation_float64(steps):
    kw = random_problem(batch=4, steps=steps, n=4, m=2, seed=steps)
    with torch.no_grad():
        _assert_close(kalman_smoother(**kw), _reference(kw), 1e-9)


@pytest.mark.parametrize("steps", [100, 1000])
def test_float32_matches_float64(steps):
    """float32 results stay within float32 rounding of the float64 ones over long sequences."""
    kw = random_problem(batch=8, steps=steps, n=4, m=2, seed=7)
    with torch.no_grad():
        r32 = kalman_smoother(**{k: v.float() for k, v in kw.items()})
        ref = _reference(kw)
    _assert_close(r32, ref, 2e-5)
    assert (torch.linalg.eigvalsh(r32.cov[0].double()) > 0).all()


def test_filter_api_equals_smoother_forward_pass():
    kw = random_problem(batch=3, steps=60, n=3, m=2, seed=1)
    with torch.no_grad():
        f = kalman_filter(**kw)
        s = kalman_smoother(**kw)
    for name in ("pred_mean", "filt_mean", "pred_cov", "filt_cov", "log_likelihood"):
        torch.testing.assert_close(getattr(f, name), getattr(s.filter, name), rtol=0, atol=0)


def test_steady_state_only_without_gradients_into_covariances():
    """Stops early without gradients; runs every step when A needs one; obs needing a gradient
    keeps the shortcut (the covariances do not depend on obs) and still differentiates."""
    kw = random_problem(batch=3, steps=80, n=3, m=2, seed=0)
    assert _steady_index(kw) < 40
    A = kw["A"].clone().requires_grad_(True)
    assert _steady_index(dict(kw, A=A)) == 80
    obs = kw["obs"].clone().requires_grad_(True)
    assert _steady_index(dict(kw, obs=obs)) < 40
    res = kalman_smoother(**dict(kw, obs=obs))
    res.mean.sum().backward()
    assert obs.grad is not None and torch.isfinite(obs.grad).all() and obs.grad.abs().sum() > 0


def test_gradcheck_through_observations_past_the_steady_state():
    kw = random_problem(batch=2, steps=30, n=2, m=2, p=1, seed=3)
    args = [kw[k].clone().requires_grad_(True) for k in ("obs", "mu0", "controls")]

    def run(obs, mu0, controls):
        r = kalman_smoother(**dict(kw, obs=obs, mu0=mu0, controls=controls))
        return r.log_likelihood, r.mean, r.filter.pred_mean

    assert _steady_index(kw) < 20
    assert torch.autograd.gradcheck(run, args, fast_mode=True)


@pytest.mark.parametrize("case,fast", [
    (dict(), True),
    (dict(controls=False), True),
    (dict(varying=True), False),
    (dict(mask=True), False),
    (dict(batched_prior=True), False),
])
def test_api_takes_the_shared_path_exactly_when_it_applies(monkeypatch, case, fast):
    calls = []
    real = shared.smoother_shared

    def spy(pb):
        calls.append(pb)
        return real(pb)

    monkeypatch.setattr(shared, "smoother_shared", spy)
    kw = random_problem(batch=2, steps=6, n=3, m=2, seed=5, **case)
    with torch.no_grad():
        res = kalman_smoother(**kw)
    assert bool(calls) == fast
    _assert_close(res, oracle(kw), 1e-8)


def _loop(x0, c, F, reverse):
    h, S = F.shape[0], c.shape[1]
    xs, x = [x0], x0
    for t in (range(S - 1, -1, -1) if reverse else range(S)):
        x = F[min(t, h - 1)] @ x + c[:, t]
        xs.append(x)
    if reverse:
        xs.reverse()
    return torch.stack(xs, 1)


@pytest.mark.parametrize("steps", [1, 5, 12, 17, 101])
@pytest.mark.parametrize("head", [1, 3, 40])
@pytest.mark.parametrize("reverse", [False, True])
def test_affine_recursion_equals_step_by_step_loop(steps, head, reverse):
    g = torch.Generator().manual_seed(steps + head)
    n, B = 3, 5
    c = torch.randn(n, steps, B, generator=g, dtype=torch.float64)
    x0 = torch.randn(n, B, generator=g, dtype=torch.float64)
    F = 0.4 * torch.randn(head, n, n, generator=g, dtype=torch.float64)
    want = _loop(x0, c, F, reverse)
    got = shared.affine_recursion(x0, c, F, reverse)                # in place, no autograd
    assert got.shape == (n, steps + 1, B)
    torch.testing.assert_close(got, want, rtol=1e-11, atol=1e-11)
    x0.requires_grad_(True)
    got = shared.affine_recursion(x0, c, F, reverse)               # differentiable path
    torch.testing.assert_close(got.detach(), want, rtol=1e-11, atol=1e-11)
    assert got.requires_grad


@pytest.mark.parametrize("count", [1, 2, 5, 16, 33])
def test_stein_steps_equal_the_recursion(count):
    g = torch.Generator().manual_seed(count)
    J = 0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    X = torch.randn(3, 3, generator=g, dtype=torch.float64)
    Lc, P = X @ X.T, torch.eye(3, dtype=torch.float64)
    want = []
    for _ in range(count):
        P = Lc + J @ P @ J.T
        want.append(P)
    torch.testing.assert_close(shared.stein_steps(torch.eye(3, dtype=torch.float64), J, Lc, count),
                               torch.stack(want), rtol=1e-12, atol=1e-12)


def test_first_converged_finds_the_first_repeat():
    eps = torch.finfo(torch.float32).eps
    X = torch.ones(6, 2, 2)
    X[0] *= 2.0
    X[1] *= 1.5
    X[2] *= 1.0 + 2 * eps
    assert shared.first_converged(X) == 3                    # X[3] within 4 ulps of X[2]
    X[2] = 1.0 + 20 * eps
    assert shared.first_converged(X) == 4                    # 20 ulps apart: not yet
    assert shared.first_converged(X[:4]) is None
    assert shared.first_converged(X[:1]) is None


def _spy_riccati(monkeypatch):
    calls = []
    real = shared.compute_covariances

    def spy(pb, smoother):
        calls.append(pb.steps)
        return real(pb, smoother)

    monkeypatch.setattr(shared, "compute_covariances", spy)
    return calls


def test_covariance_cache_reuses_equal_matrices_only(monkeypatch):
    calls = _spy_riccati(monkeypatch)
    kw = random_problem(batch=3, steps=30, n=3, m=2, seed=8)
    with torch.no_grad():
        first = kalman_smoother(**kw)
        again = kalman_smoother(**{k: v.clone() for k, v in kw.items()})   # equal values, new tensors
        assert len(calls) == 1
        for name in ("mean", "cov", "cross_cov", "log_likelihood"):
            assert torch.equal(getattr(first, name), getattr(again, name)), name
        kalman_smoother(**dict(kw, obs=kw["obs"] + 1.0))                   # other data: still cached
        assert len(calls) == 1
        kalman_smoother(**{**kw, "obs": kw["obs"][:, :20], "controls": kw["controls"][:, :20]})
        assert len(calls) == 2                                              # other T: recomputed
        for name in ("A", "C", "Q", "R", "P0"):
            changed = kw[name].clone()
            changed[0, 0] += 1e-3
            res = kalman_smoother(**dict(kw, **{name: changed}))
            with shared.covariance_cache_disabled():
                ref = kalman_smoother(**dict(kw, **{name: changed}))
            torch.testing.assert_close(res.cov, ref.cov, rtol=0, atol=0)
            torch.testing.assert_close(res.mean, ref.mean, rtol=0, atol=0)
        assert len(calls) == 2 + 2 * 5                                      # every change missed


def test_covariance_cache_cannot_be_written_through_results():
    kw = random_problem(batch=2, steps=12, n=3, m=2, seed=9)
    with torch.no_grad():
        ref = kalman_smoother(**kw)
        cov0, filt0 = ref.cov[0].clone(), ref.filter.filt_cov[0].clone()
        ref.cov[0].mul_(2.0)                                   # views of this call's copies
        ref.filter.filt_cov[0].mul_(2.0)
        again = kalman_smoother(**kw)
    assert torch.equal(again.cov[0], cov0) and torch.equal(again.filter.filt_cov[0], filt0)


def test_cache_not_used_with_gradients_and_usable_after_inference_mode(monkeypatch):
    calls = _spy_riccati(monkeypatch)
    kw = random_problem(batch=2, steps=15, n=3, m=2, seed=10)
    with torch.inference_mode():
        kalman_smoother(**kw)                                  # filled with inference tensors' copies
    A = kw["A"].clone().requires_grad_(True)
    kalman_smoother(**dict(kw, A=A)).log_likelihood.sum().backward()
    assert len(calls) == 2 and A.grad is not None             # gradient into A: recomputed
    obs = kw["obs"].clone().requires_grad_(True)
    kalman_smoother(**dict(kw, obs=obs)).mean.sum().backward()
    assert len(calls) == 2 and obs.grad is not None           # only obs needs one: cached


def _expanded_covariances(covs, steps):
    """Every covariance output of ``compute_covariances`` at full length (compact stacks
    repeated), so results with different stopping points compare step by step."""
    g = covs.gains
    out = {f: shared.repeat_last(getattr(g, f), steps) for f in
           ("pred_cov", "filt_cov", "pred_prec", "gain", "update", "chol_inv")}
    out["transition"] = shared.repeat_last(g.transition, max(steps, 2))
    out["half_logdet"] = g.half_logdet
    if covs.smoother is not None:
        J, cov, cross = covs.smoother
        out.update(J=shared.repeat_last(J, steps - 1), cov=cov, cross=cross)
    return out


def _both_ways(monkeypatch, pb, smoother):
    """(host, torch) results of ``compute_covariances`` for one problem, without gradients."""
    with torch.no_grad():
        assert shared.on_host(pb)
        host = shared.compute_covariances(pb, smoother)
        monkeypatch.setattr(shared, "HOST_DEVICES", ())
        assert not shared.on_host(pb)
        ref = shared.compute_covariances(pb, smoother)
        monkeypatch.undo()
    return host, ref


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("n,m,steps,seed", [(4, 2, 250, 0), (3, 4, 40, 1), (1, 3, 9, 2),
                                            (2, 2, 2, 3), (3, 2, 1, 4), (5, 1, 100, 5)])
def test_host_covariances_equal_the_torch_recursion(monkeypatch, dtype, tol, n, m, steps, seed):
    """The float64 NumPy covariances (CPU, no gradients) equal the PyTorch ones at every step,
    past both steady states, with the problem's dtype and device."""
    kw = random_problem(batch=2, steps=steps, n=n, m=m, seed=seed, dtype=dtype)
    pb = prepare(**kw)
    host, ref = _both_ways(monkeypatch, pb, smoother=steps > 1)
    got, want = _expanded_covariances(host, steps), _expanded_covariances(ref, steps)
    assert got.keys() == want.keys()
    for name, x in got.items():
        assert x.dtype == dtype and x.device == pb.Q.device and x.shape == want[name].shape, name
        scale = max(1.0, want[name].abs().max().item())
        err = (x.double() - want[name].double()).abs().max().item()
        assert err <= tol * scale, f"{name}: max abs error {err:.3g} (scale {scale:.3g})"
    if steps >= 40:                                    # the shortcut was taken on both paths
        assert host.gains.gain.shape[0] < steps and ref.gains.gain.shape[0] < steps


def test_host_path_results_equal_the_gradient_path():
    """The smoother without gradients (covariances in NumPy) equals the one with gradients into
    every parameter (PyTorch, every step), and gradients reach every parameter."""
    kw = random_problem(batch=3, steps=60, n=3, m=2, seed=11)
    with torch.no_grad():
        assert shared.on_host(prepare(**kw))
        fast = kalman_smoother(**kw)
    params = {k: kw[k].clone().requires_grad_(True) for k in ("A", "C", "Q", "R", "P0")}
    assert not shared.on_host(prepare(**dict(kw, **params)))
    full = kalman_smoother(**dict(kw, **params))
    _assert_close(fast, {name: getattr(full, name).detach() for name in FIELDS}
                  | {"ll": full.log_likelihood.detach()}, 1e-10)
    (full.log_likelihood.sum() + full.mean.sum() + full.cov.sum()).backward()
    for name, p in params.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_host_path_only_without_gradients_into_covariances_on_the_cpu():
    kw = random_problem(batch=2, steps=5, n=2, m=2, seed=12)
    assert shared.on_host(prepare(**kw))
    assert shared.on_host(prepare(**dict(kw, obs=kw["obs"].clone().requires_grad_(True))))
    A = kw["A"].clone().requires_grad_(True)
    assert not shared.on_host(prepare(**dict(kw, A=A)))
    with torch.no_grad():
        assert shared.on_host(prepare(**dict(kw, A=A)))
    half = {k: v.to(torch.bfloat16) for k, v in kw.items()}
    assert not shared.on_host(prepare(**half, validate=False))


def test_host_path_reports_non_positive_definite_covariances():
    kw = random_problem(batch=2, steps=6, n=3, m=2, seed=13)
    bad = dict(kw, P0=-kw["P0"])
    with pytest.raises(ValueError, match="not positive definite"):
        kalman_smoother(**bad, validate=False)
    with pytest.raises(ValueError, match="P0 must be positive definite"):
        kalman_smoother(**bad)


@pytest.mark.parametrize("count", [0, 1, 5, 16, 300])
@pytest.mark.parametrize("tol", [1e-15, 1e-6])
def test_powers_are_the_repeated_products_until_negligible(count, tol):
    g = torch.Generator().manual_seed(count)
    J = (0.6 * torch.randn(3, 3, generator=g, dtype=torch.float64) / 3).numpy()
    pw = shared_host.powers(J, count, tol)
    c = pw.shape[0] - 1
    assert 0 <= c <= count
    want = np.eye(3)
    for s in range(c + 1):
        np.testing.assert_allclose(pw[s], want, rtol=1e-12, atol=1e-300)
        want = want @ J
    if c < count:                                      # stopped early: J^c is negligible
        assert (3 * np.abs(pw[-1]).max()) ** 2 <= tol


def test_input_checks_deferred_to_the_shared_path_still_name_the_culprit(monkeypatch):
    """``kalman_smoother`` leaves the SPD checks of Q, R, P0 to the shared path, which folds
    them into its factorisations: every way it can take (NumPy covariances, a cache hit, the
    PyTorch recursion with gradients) still raises the named error."""
    kw = random_problem(batch=2, steps=8, n=3, m=2, seed=14)
    asym_R = kw["R"] + torch.tensor([[0.0, 0.3], [0.0, 0.0]], dtype=kw["R"].dtype)
    assert bool(torch.linalg.cholesky_ex(asym_R).info == 0)   # PD as factorised, not symmetric
    bad = {"Q": (-kw["Q"], "Q must be positive definite"), "R": (asym_R, "R must be symmetric"),
           "P0": (torch.full_like(kw["P0"], float("nan")), "P0 contains NaN")}
    for name, (value, match) in bad.items():
        assert prepare(**dict(kw, **{name: value}), defer_spd=True).spd_pending
        with pytest.raises(ValueError, match=match):               # NumPy covariances
            kalman_smoother(**dict(kw, **{name: value}))
        A = kw["A"].clone().requires_grad_(True)
        with pytest.raises(ValueError, match=match):               # PyTorch, with gradients
            kalman_smoother(**dict(kw, A=A, **{name: value}))
        with pytest.raises(ValueError, match=match):
            kalman_filter(**dict(kw, **{name: value}))
    with torch.no_grad():
        kalman_smoother(**dict(kw, R=asym_R), validate=False)      # cached, unchecked
        with pytest.raises(ValueError, match="R must be symmetric"):   # a cache hit
            kalman_smoother(**dict(kw, R=asym_R))


def test_input_checks_deferred_only_for_shared_problems():
    for case, deferred in [(dict(), True), (dict(mask=True), False), (dict(varying=True), False),
                           (dict(batched_prior=True), False)]:
        kw = random_problem(batch=2, steps=5, n=3, m=2, seed=15, **case)
        assert prepare(**kw, defer_spd=True).spd_pending == deferred, case
        assert not prepare(**kw).spd_pending
        assert not prepare(**kw, defer_spd=True, validate=False).spd_pending


@pytest.mark.parametrize("batch,steps,m,controls", [(1, 1, 2, True), (1, 6, 1, False),
                                                    (4, 1, 1, True), (1, 6, 1, True)])
def test_inputs_are_left_unchanged(batch, steps, m, controls):
    """The in-place work of the shared path never writes into the caller's tensors, also for
    shapes whose feature-first ``obs`` would be a view of it (one sequence, one step or a
    scalar observation)."""
    kw = random_problem(batch=batch, steps=steps, n=3, m=m, controls=controls, seed=16)
    before = {k: v.clone() for k, v in kw.items()}
    with torch.no_grad():
        res = kalman_smoother(**kw)
        kalman_filter(**kw)
    for name, x in kw.items():
        assert torch.equal(x, before[name]), name
    _assert_close(res, _reference(before), 1e-10)


def test_results_without_gradients_are_ordinary_tensors():
    """The in-place work runs in inference mode, but the results are ordinary tensors: autograd
    can use them later and they can be written in place."""
    kw = random_problem(batch=2, steps=12, n=3, m=2, seed=17)
    res = kalman_smoother(**kw)
    outputs = [res.mean, res.cov, res.cross_cov, res.filter.pred_mean, res.filter.filt_mean,
               res.filter.pred_cov, res.filter.filt_cov, res.filter.log_likelihood]
    assert not any(x.is_inference() for x in outputs)
    w = torch.ones(3, dtype=kw["obs"].dtype, requires_grad=True)
    ((res.mean * w).sum() + (res.filter.log_likelihood.sum() * w).sum()).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    ref = res.mean.clone()
    res.mean.add_(1.0)
    torch.testing.assert_close(res.mean, ref + 1.0)


@pytest.mark.parametrize("n,m", [(3, 2), (2, 3), (2, 2)])
def test_noise_factorisation_names_the_matrix_that_is_not_positive_definite(n, m):
    """Without the input checks, one factorisation of R, P0, Q (padded to a common size) still
    names the one that fails; positive definite ones of any sizes pass."""
    kw = random_problem(batch=2, steps=5, n=n, m=m, seed=18)
    with torch.no_grad():
        kalman_smoother(**kw, validate=False)
        for name in ("R", "P0", "Q"):
            bad = kw[name].clone()
            bad[-1, -1] = -1.0
            with pytest.raises(ValueError, match=f"^{name} is not positive definite"):
                kalman_smoother(**dict(kw, **{name: bad}), validate=False)


@pytest.mark.parametrize("n,m", [(3, 2), (2, 3)])
def test_noise_stack_symmetry_is_per_matrix(n, m):
    """The padded stack tests each matrix's symmetry relative to its own largest entry: a small
    asymmetric R next to large P0 and Q fails, symmetric ones pass."""
    rng = np.random.default_rng(19)
    R, P0, Q = (x @ x.T + np.eye(k) for x, k in ((rng.standard_normal((m, m)), m),
                                                   (rng.standard_normal((n, n)), n),
                                                   (rng.standard_normal((n, n)), n)))
    X = shared_host.noise_stack(1e-3 * R, 1e3 * P0, Q)
    assert X.shape == (3, max(n, m), max(n, m)) and shared_host.symmetric([X])
    R_asym = 1e-3 * R
    R_asym[0, 1] += 1e-6
    assert not shared_host.symmetric([shared_host.noise_stack(R_asym, 1e3 * P0, Q)])
