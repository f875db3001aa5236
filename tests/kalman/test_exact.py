"""Filter / smoother / log-likelihood equal exact dense Gaussian conditioning (float64, 1e-8)."""

import pytest
import torch
from kalman_oracle import oracle, random_problem

from worldmodels.kalman import kalman_filter, kalman_smoother

CASES = {
    "shared": dict(),
    "shared_no_controls": dict(controls=False),
    "mask": dict(mask=True),
    "varying": dict(varying=True),
    "varying_mask_batched_prior": dict(varying=True, mask=True, batched_prior=True),
    "single_step": dict(steps=1, mask=False),
    "n1_m3": dict(n=1, m=3, varying=True),
}
METHODS = ["sequential", "parallel"]


def _compare(res, ref, tol=1e-8):
    f = res.filter
    pairs = {"pred_mean": f.pred_mean, "pred_cov": f.pred_cov, "filt_mean": f.filt_mean,
             "filt_cov": f.filt_cov, "ll": f.log_likelihood, "mean": res.mean, "cov": res.cov,
             "cross_cov": res.cross_cov}
    for name, got in pairs.items():
        want = ref[name]
        assert got.shape == want.shape, (name, got.shape, want.shape)
        err = (got - want).abs().max().item() if want.numel() else 0.0
        assert err < tol, f"{name}: max abs error {err:.3g}"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", list(CASES))
def test_smoother_matches_dense_conditioning(case, method):
    kw = random_problem(seed=hash(case) % 1000, **CASES[case])
    ref = oracle(kw)
    res = kalman_smoother(**kw, method=method)
    _compare(res, ref)
    assert res.log_likelihood is res.filter.log_likelihood


def test_filter_equals_smoother_forward_pass():
    kw = random_problem(mask=True, varying=True, seed=3)
    f = kalman_filter(**kw)
    s = kalman_smoother(**kw)
    torch.testing.assert_close(f.filt_mean, s.filter.filt_mean)
    # the last smoothed marginal is the last filtered one
    torch.testing.assert_close(s.mean[:, -1], f.filt_mean[:, -1])
    torch.testing.assert_close(s.cov[:, -1], f.filt_cov[:, -1])


def test_fully_masked_sequence_is_the_prior():
    kw = random_problem(mask=True, controls=False, seed=5)
    res = kalman_smoother(**kw)
    # sequence 0 is fully unobserved: smoothed = predicted = prior propagation, ll = 0
    assert res.log_likelihood[0].item() == 0.0
    torch.testing.assert_close(res.mean[0], res.filter.pred_mean[0])
    torch.testing.assert_close(res.cov[0], res.filter.pred_cov[0])


def test_mask_float_and_bool_agree():
    kw = random_problem(mask=True, seed=7)
    a = kalman_smoother(**kw)
    kw["mask"] = kw["mask"].bool()
    b = kalman_smoother(**kw)
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood)


@pytest.mark.parametrize("impl", ["batch_first", "batch_last", "shared"])
@pytest.mark.parametrize("case", ["shared", "mask", "varying_mask_batched_prior", "single_step"])
def test_each_sequential_implementation_matches_dense_conditioning(impl, case):
    """Every internal implementation (auto-selection picks one per device/problem) is exact."""
    from worldmodels.kalman.inputs import prepare
    from worldmodels.kalman.results import SmootherResult
    from worldmodels.kalman.sequential import filter_sequential, sample_sequential, smoother_sequential

    kw = random_problem(seed=hash(case) % 1000, **CASES[case])
    pb = prepare(**kw)
    if impl == "shared" and not pb.shared:
        with pytest.raises(ValueError, match="impl='shared'"):
            filter_sequential(pb, impl)
        return
    filt = filter_sequential(pb, impl)
    mean, cov, cross = smoother_sequential(pb, filt, impl)
    _compare(SmootherResult(mean, cov, cross, filt), oracle(kw))
    eps = torch.randn(3, pb.batch, pb.steps, pb.n, dtype=torch.float64,
                      generator=torch.Generator().manual_seed(0))
    ref = sample_sequential(pb, filter_sequential(pb, "batch_first"), eps, "batch_first")
    torch.testing.assert_close(sample_sequential(pb, filt, eps, impl), ref, rtol=1e-9, atol=1e-9)
