"""Tiny-matrix linear algebra in "batch-last" layout, built from elementwise ops.

On CPU, ``bmm`` / LAPACK on a batch of 256 4x4 matrices pays a per-matrix call overhead
(~50 us for a bmm, ~150 us for a ``cholesky_solve``), while an elementwise op on the same data
laid out as ``[rows, cols, *batch]`` (batch innermost, contiguous) costs 1-10 us.  The Kalman
recursions on CPU therefore use these helpers.  Every function is differentiable.

Layout: a matrix stack is ``[r, c, *batch]``, a vector stack ``[r, *batch]``; batch shapes
broadcast.
"""

from __future__ import annotations

import torch


def mm(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``X [i, k, *] @ Y [k, j, *] -> [i, j, *]``."""
    return (X.unsqueeze(2) * Y.unsqueeze(0)).sum(1)


def mv(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``X [i, k, *] @ y [k, *] -> [i, *]``."""
    return (X * y.unsqueeze(0)).sum(1)


def vm(y: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``y^T X``: ``y [k, *]``, ``X [k, j, *] -> [j, *]``."""
    return (X * y.unsqueeze(1)).sum(0)


def tr(X: torch.Tensor) -> torch.Tensor:
    """Transpose of each matrix: ``[r, c, *] -> [c, r, *]``."""
    return X.transpose(0, 1)


def sym(X: torch.Tensor) -> torch.Tensor:
    return (X + X.transpose(0, 1)) * 0.5


def eye_like(k: int, X: torch.Tensor, batch_rank: int) -> torch.Tensor:
    """``[k, k, 1, ..., 1]`` identity with ``batch_rank`` trailing singleton dims."""
    return torch.eye(k, dtype=X.dtype, device=X.device).reshape(k, k, *([1] * batch_rank))


Entries = list[list[torch.Tensor]]


def cholesky_entries(S: torch.Tensor) -> Entries:
    """Lower Cholesky factor of ``S [m, m, *]`` as nested lists ``L[i][j]`` (``[*]`` each, j <= i).

    Keeping the entries unstacked saves kernels in the per-step recursions.  A non-PD matrix
    gives NaN entries; callers check finiteness once at the end.
    """
    m = S.shape[0]
    L: Entries = [[] for _ in range(m)]
    for j in range(m):
        d = S[j, j]
        for k in range(j):
            d = d - L[j][k] * L[j][k]
        d = d.sqrt()
        L[j].append(d)
        for i in range(j + 1, m):
            r = S[i, j]
            for k in range(j):
                r = r - L[i][k] * L[j][k]
            L[i].append(r / d)
    return L


def forward_sub_entries(L: Entries, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L X = Y`` for ``L`` from :func:`cholesky_entries`, ``Y [m, c, *]`` -> ``[m, c, *]``."""
    m = len(L)
    xs: list[torch.Tensor] = []
    for i in range(m):
        r = Y[i]
        for k in range(i):
            r = r - L[i][k].unsqueeze(0) * xs[k]
        xs.append(r / L[i][i].unsqueeze(0))
    return torch.stack(xs, 0)


def backward_sub_t_entries(L: Entries, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L^T X = Y`` for ``L`` from :func:`cholesky_entries`, ``Y [m, c, *]`` -> ``[m, c, *]``."""
    m = len(L)
    rev: list[torch.Tensor] = []  # x_{m-1}, x_{m-2}, ..., x_{i+1}
    for i in range(m - 1, -1, -1):
        r = Y[i]
        for k in range(i + 1, m):
            r = r - L[k][i].unsqueeze(0) * rev[m - 1 - k]
        rev.append(r / L[i][i].unsqueeze(0))
    return torch.stack(rev[::-1], 0)


def log_diag_sum(L: Entries) -> torch.Tensor:
    """``sum_i log L_ii`` (half the log-determinant of ``L L^T``): ``[*]``."""
    out = L[0][0].log()
    for i in range(1, len(L)):
        out = out + L[i][i].log()
    return out


def _stack_entries(L: Entries, like: torch.Tensor) -> torch.Tensor:
    m = len(L)
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    rows = [torch.stack([L[i][j] if j <= i else zero.expand_as(L[i][0]) for j in range(m)], 0)
            for i in range(m)]
    return torch.stack(rows, 0)


def cholesky(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower Cholesky factor ``[m, m, *]`` of ``S [m, m, *]`` and its diagonal ``[m, *]``."""
    L = cholesky_entries(S)
    return _stack_entries(L, S), torch.stack([L[i][i] for i in range(len(L))], 0)


def forward_sub(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L X = Y`` for lower-triangular ``L [m, m, *]``, ``Y [m, c, *]`` -> ``X [m, c, *]``."""
    m = L.shape[0]
    return forward_sub_entries([[L[i, j] for j in range(i + 1)] for i in range(m)], Y)


def backward_sub_t(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L^T X = Y`` for lower-triangular ``L [m, m, *]``, ``Y [m, c, *]`` -> ``X [m, c, *]``."""
    m = L.shape[0]
    return backward_sub_t_entries([[L[i, j] for j in range(i + 1)] for i in range(m)], Y)


def chol_solve(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^-1 Y`` for ``L [m, m, *]``, ``Y [m, c, *]``."""
    return backward_sub_t(L, forward_sub(L, Y))
