"""Exact Gaussian conditioning on the dense joint of all states and observations (test oracle).

Loops over the batch on purpose: it is an independent, obviously-correct reference, not fast code.
"""

from __future__ import annotations

import math

import torch


def random_problem(batch=3, steps=5, n=3, m=2, p=2, *, varying=False, controls=True,
                   mask=False, batched_prior=False, dtype=torch.float64, seed=0):
    """A random well-conditioned LGSSM problem as a dict of keyword arguments for the API."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def spd(k, *lead):
        X = rn(*lead, k, k)
        return X @ X.mT / k + 0.5 * torch.eye(k, dtype=dtype)

    def stable(*lead):
        M = rn(*lead, n, n)
        return 0.9 * M / torch.linalg.matrix_norm(M, ord=2).unsqueeze(-1).unsqueeze(-1)

    kw = dict(obs=rn(batch, steps, m), Q=spd(n), R=spd(m))
    kw["A"] = stable(batch, steps) if varying else stable()
    kw["C"] = rn(batch, steps, m, n) if varying else rn(m, n)
    kw["mu0"] = rn(batch, n) if batched_prior else rn(n)
    kw["P0"] = spd(n, batch) if batched_prior else spd(n)
    if controls:
        kw["B"] = rn(batch, steps, n, p) if varying else rn(n, p)
        kw["controls"] = rn(batch, steps, p)
    if mask:
        mk = (torch.rand(batch, steps, generator=g) > 0.4).to(dtype)
        mk[0, :] = 0.0          # a fully unobserved sequence
        mk[-1, 0] = 0.0         # first step missing
        kw["mask"] = mk
        kw["obs"] = torch.where(mk.bool().unsqueeze(-1), kw["obs"], torch.nan)
    return kw


def _per_step(x, b, t, shared_dims):
    return x if x.dim() == shared_dims else x[b, t]


def joint(kw, b):
    """Mean and covariance of (z_{0:T-1}, a_{0:T-1}) for batch element ``b`` (stacked by time)."""
    obs, A, C, Q, R = kw["obs"], kw["A"], kw["C"], kw["Q"], kw["R"]
    T = obs.shape[1]
    n = Q.shape[0]
    mu0 = kw["mu0"] if kw["mu0"].dim() == 1 else kw["mu0"][b]
    P0 = kw["P0"] if kw["P0"].dim() == 2 else kw["P0"][b]
    dt = obs.dtype
    # z = mean_z + G xi with xi ~ N(0, blockdiag(P0, Q, ..., Q))
    mean_z = torch.zeros(T, n, dtype=dt)
    G = torch.zeros(T * n, T * n, dtype=dt)
    mean_z[0] = mu0
    G[:n, :n] = torch.eye(n, dtype=dt)
    for t in range(1, T):
        At = _per_step(A, b, t, 2)
        mean_z[t] = At @ mean_z[t - 1]
        if "B" in kw:
            mean_z[t] = mean_z[t] + _per_step(kw["B"], b, t, 2) @ kw["controls"][b, t]
        G[t * n:(t + 1) * n, :] = At @ G[(t - 1) * n:t * n, :]
        G[t * n:(t + 1) * n, t * n:(t + 1) * n] = torch.eye(n, dtype=dt)
    D = torch.block_diag(P0, *[Q] * (T - 1))
    Sz = G @ D @ G.T
    Cb = torch.block_diag(*[_per_step(C, b, t, 2) for t in range(T)])
    mean_a = Cb @ mean_z.reshape(-1)
    Sa = Cb @ Sz @ Cb.T + torch.block_diag(*[R] * T)
    Sza = Sz @ Cb.T
    return mean_z.reshape(-1), Sz, mean_a, Sa, Sza


def condition(kw, b, upto):
    """Posterior of all z given observed a_s for s < ``upto``: (mean [T, n], cov [T*n, T*n], ll)."""
    obs = kw["obs"]
    T, m = obs.shape[1], obs.shape[2]
    n = kw["Q"].shape[0]
    mz, Sz, ma, Sa, Sza = joint(kw, b)
    observed = torch.ones(T, dtype=torch.bool)
    if "mask" in kw:
        observed = kw["mask"][b] != 0
    idx = [t * m + i for t in range(min(upto, T)) if observed[t] for i in range(m)]
    if not idx:
        return mz.reshape(T, n), Sz, torch.zeros((), dtype=obs.dtype)
    idx = torch.tensor(idx)
    a = obs[b].reshape(-1)[idx]
    Saa = Sa[idx][:, idx]
    K = torch.linalg.solve(Saa, Sza[:, idx].T).T
    mean = mz + K @ (a - ma[idx])
    cov = Sz - K @ Sza[:, idx].T
    r = a - ma[idx]
    ll = -0.5 * (r @ torch.linalg.solve(Saa, r) + torch.logdet(Saa) + len(idx) * math.log(2 * math.pi))
    return mean.reshape(T, n), cov, ll


def block(cov, n, t, s):
    return cov[t * n:(t + 1) * n, s * n:(s + 1) * n]


def oracle(kw):
    """Dense reference: dict of pred/filt/smoothed means & covs, cross covs and log-likelihoods."""
    obs = kw["obs"]
    batch, T = obs.shape[:2]
    n = kw["Q"].shape[0]
    out = {k: [] for k in ("pred_mean", "pred_cov", "filt_mean", "filt_cov", "mean", "cov",
                           "cross_cov", "ll")}
    for b in range(batch):
        pm, pc, fm, fc = [], [], [], []
        for t in range(T):
            mean, cov, _ = condition(kw, b, t)
            pm.append(mean[t])
            pc.append(block(cov, n, t, t))
            mean, cov, _ = condition(kw, b, t + 1)
            fm.append(mean[t])
            fc.append(block(cov, n, t, t))
        mean, cov, ll = condition(kw, b, T)
        out["pred_mean"].append(torch.stack(pm))
        out["pred_cov"].append(torch.stack(pc))
        out["filt_mean"].append(torch.stack(fm))
        out["filt_cov"].append(torch.stack(fc))
        out["mean"].append(mean)
        out["cov"].append(torch.stack([block(cov, n, t, t) for t in range(T)]))
        out["cross_cov"].append(torch.stack([block(cov, n, t + 1, t) for t in range(T - 1)])
                                if T > 1 else torch.zeros(0, n, n, dtype=obs.dtype))
        out["ll"].append(ll)
    return {k: torch.stack(v) for k, v in out.items()}
