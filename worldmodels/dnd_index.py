"""Optional neighbour-selection backends for :func:`worldmodels.dnd.dnd_read`.

Each backend only *selects* slot indices (no gradient); ``dnd_read`` recomputes the distances
of the selected entries differentiably, exactly as for the default torch backend.

* ``"kdtree"``: one exact ``scipy.spatial.KDTree`` per memory (scipy, in the ``test`` extra).
  Faster than brute force on CPU for large memories and many queries in low dimension.
* ``"faiss"``: one exact ``faiss.IndexFlatL2`` per memory (``faiss-cpu``, in the ``bench`` extra).

Both loop over the ``B`` memories in Python (trees cannot be batched) and run on CPU numpy
copies, so they suit CPU runs with large memories, not GPU training.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["index_select", "BACKENDS"]

BACKENDS = ("kdtree", "faiss")


def _kdtree(keys: np.ndarray, size: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from scipy.spatial import KDTree  # cKDTree with a Python face: the same queries

    B, Q = queries.shape[:2]
    out = np.zeros((B, Q, k), dtype=np.int64)
    for b in range(B):
        n = int(size[b])
        if n == 0:
            continue
        kb = min(k, n)
        _, idx = KDTree(keys[b, :n]).query(queries[b], k=kb)
        idx = idx.reshape(Q, kb)
        out[b, :, :kb] = idx
        if kb < k:  # pad with an empty slot index (marked invalid by dnd_read)
            out[b, :, kb:] = n if n < keys.shape[1] else idx[:, :1]
    return out


def _faiss(keys: np.ndarray, size: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    import faiss

    B, Q, D = queries.shape
    out = np.zeros((B, Q, k), dtype=np.int64)
    keys = np.ascontiguousarray(keys, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    for b in range(B):
        n = int(size[b])
        if n == 0:
            continue
        index = faiss.IndexFlatL2(D)
        index.add(keys[b, :n])
        _, idx = index.search(queries[b], k)
        idx[idx < 0] = n if n < keys.shape[1] else 0
        out[b] = idx
    return out


@torch.no_grad()
def index_select(keys: torch.Tensor, size: torch.Tensor, queries: torch.Tensor, k: int,
                 backend: str) -> torch.Tensor:
    """Slot indices ``[B, Q, k]`` of the ``k`` nearest keys among the first ``size[b]`` slots.

    Args:
        keys: ``[B, C, D]`` (FIFO memories fill slots ``0..size-1`` first).
        size: ``[B]`` number of filled slots.
        queries: ``[B, Q, D]``.
        k: neighbours per query.
        backend: one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'torch' or one of {BACKENDS}, got {backend!r}")
    fn = _kdtree if backend == "kdtree" else _faiss
    idx = fn(keys.detach().cpu().numpy(), size.cpu().numpy(), queries.detach().cpu().numpy(), k)
    return torch.from_numpy(idx).to(keys.device)
