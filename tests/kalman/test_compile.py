"""Opt-in torch.compile of the batch-last steps gives the eager results and gradients."""

import pytest
import torch
from kalman_oracle import random_problem

from worldmodels.kalman import kalman_filter, set_compile


@pytest.mark.slow
def test_compiled_steps_match_eager():
    kw = random_problem(batch=3, steps=6, n=3, m=2, varying=True, mask=True, seed=3)
    kw = {k: v.float() for k, v in kw.items()}
    kw["obs"] = torch.nan_to_num(kw["obs"])

    def run():
        A = kw["A"].clone().requires_grad_(True)
        f = kalman_filter(**dict(kw, A=A))
        f.log_likelihood.sum().backward()
        return f.filt_mean.detach(), f.filt_cov.detach(), f.log_likelihood.detach(), A.grad

    eager = run()
    set_compile(True)
    try:
        compiled = run()
    finally:
        set_compile(False)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
