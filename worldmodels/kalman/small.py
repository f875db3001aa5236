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


def cholesky(S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower Cholesky factor of ``S [m, m, *]`` and the pivots ``[m, *]`` (all > 0 iff S is PD).

    A non-PD matrix gives NaN entries; callers check the pivots (or finiteness) once at the end.
    """
    m = S.shape[0]
    cols: list[torch.Tensor] = []
    pivots = []
    rows = torch.arange(m, device=S.device).reshape(m, *([1] * (S.dim() - 2)))
    for j in range(m):
        col = S[:, j]
        for k in range(j):
            col = col - cols[k] * cols[k][j]
        piv = col[j]
        pivots.append(piv)
        d = piv.sqrt()
        col = torch.where(rows >= j, col / d, torch.zeros((), dtype=S.dtype, device=S.device))
        cols.append(col)
    return torch.stack(cols, 1), torch.stack(pivots, 0)


def forward_sub(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L X = Y`` for lower-triangular ``L [m, m, *]``, ``Y [m, c, *]`` -> ``X [m, c, *]``."""
    m = L.shape[0]
    xs: list[torch.Tensor] = []
    for i in range(m):
        r = Y[i]
        for k in range(i):
            r = r - L[i, k].unsqueeze(0) * xs[k]
        xs.append(r / L[i, i].unsqueeze(0))
    return torch.stack(xs, 0)


def backward_sub_t(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Solve ``L^T X = Y`` for lower-triangular ``L [m, m, *]``, ``Y [m, c, *]`` -> ``X [m, c, *]``."""
    m = L.shape[0]
    xs: list[torch.Tensor | None] = [None] * m
    for i in range(m - 1, -1, -1):
        r = Y[i]
        for k in range(i + 1, m):
            r = r - L[k, i].unsqueeze(0) * xs[k]
        xs[i] = r / L[i, i].unsqueeze(0)
    return torch.stack(xs, 0)


def chol_solve(L: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^-1 Y`` for ``L [m, m, *]``, ``Y [m, c, *]``."""
    return backward_sub_t(L, forward_sub(L, Y))
