"""Batched differentiable neural dictionary (DND): one key-value memory per sequence.

A memory holds ``keys [B, capacity, key_dim]`` and ``values [B, capacity, value_dim]`` with a
fill count per batch element. Writes are out-of-place tensor operations, so they live inside
the autograd graph (gradients flow back to whatever produced the written keys and values).
When a memory is full the oldest entry is overwritten (FIFO), or the least recently used one
(LRU: reads are recorded with :func:`dnd_touch`).

Reads return the ``k`` nearest keys of each query with the kernel weights
``w_j = (1 / (d_j^2 + delta)) / sum_i (1 / (d_i^2 + delta))`` (Pritzel et al., 2017;
thesis section 7.4.1). The neighbour *selection* runs without gradient (exact ``cdist`` +
``topk`` on centred coordinates, chunked over queries to bound memory, or an optional
index from :mod:`worldmodels.dnd_index`); the squared distances of the selected entries are then
recomputed exactly and differentiably as ``sum((q - k)^2)``, so gradients reach queries, keys and
values, with no square root (no NaN gradient at zero distance) and no matmul (no TF32 error).

Reads work in both directions: :meth:`DNDMemory.reversed` swaps keys and values (optionally
using only a slice of the values as keys), e.g. state -> frame encoding for the GTM-SM prior
and frame encoding -> state for landmark inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldmodels.checks import check_shape

__all__ = ["DNDMemory", "DNDRead", "dnd_empty", "dnd_write", "dnd_read", "dnd_touch", "knn_select", "smallest_k",
           "auto_backend"]

#: default cap on the number of elements of one ``[B, Qc, N]`` distance block (64 MiB in fp32).
DEFAULT_MAX_BLOCK = 1 << 24


@dataclass
class DNDMemory:
    """A batch of memories (one per sequence).

    Attributes:
        keys: ``[B, C, Dk]``.
        values: ``[B, C, Dv]``.
        stamps: ``[B, C]`` long, write index of the entry in each slot (0, 1, 2, ... in the
            order written to that memory), ``-1`` for an empty slot.
        count: ``[B]`` long, number of entries ever written to each memory.
        last_used: ``[B, C]`` long, time of the last write or read of each slot (only used by
            LRU eviction, see :func:`dnd_touch`); ``None`` means "same as ``stamps``".
    """

    keys: torch.Tensor
    values: torch.Tensor
    stamps: torch.Tensor
    count: torch.Tensor
    last_used: torch.Tensor | None = None

    def usage(self) -> torch.Tensor:
        """``[B, C]`` last-use times (write order when no read was recorded)."""
        return self.stamps if self.last_used is None else self.last_used

    @property
    def batch_size(self) -> int:
        return self.keys.shape[0]

    @property
    def capacity(self) -> int:
        return self.keys.shape[1]

    @property
    def size(self) -> torch.Tensor:
        """``[B]`` number of filled slots, ``min(count, capacity)``."""
        return self.count.clamp(max=self.capacity)

    def reversed(self, key_slice: slice | None = None,
                 value_slice: slice | None = None) -> DNDMemory:
        """The same entries read the other way round (no copy).

        The new keys are ``values[..., key_slice]`` (e.g. the means of stored Gaussian
        statistics; all values by default); the new values are the old keys, or
        ``values[..., value_slice]`` when given (e.g. state statistics stored next to the
        frame encoding).
        """
        new_keys = self.values if key_slice is None else self.values[..., key_slice]
        new_values = self.keys if value_slice is None else self.values[..., value_slice]
        return DNDMemory(new_keys, new_values, self.stamps, self.count, self.last_used)

    def detach(self) -> DNDMemory:
        return DNDMemory(self.keys.detach(), self.values.detach(), self.stamps, self.count,
                         self.last_used)

    def index_batch(self, index: torch.Tensor) -> DNDMemory:
        """Memories of the batch elements ``index`` (e.g. ``repeat_interleave`` for candidates)."""
        lu = None if self.last_used is None else self.last_used[index]
        return DNDMemory(self.keys[index], self.values[index], self.stamps[index],
                         self.count[index], lu)


@dataclass
class DNDRead:
    """Result of :func:`dnd_read` for queries ``[B, Q, Dk]`` and ``k`` neighbours.

    Attributes:
        index: ``[B, Q, k]`` slot indices of the neighbours (nearest first).
        sq_dist: ``[B, Q, k]`` differentiable squared Euclidean distances (``inf`` where invalid).
        weights: ``[B, Q, k]`` kernel weights, summing to 1 over valid neighbours (0 where invalid;
            all 0 if a query sees an empty memory).
        keys: ``[B, Q, k, Dk]`` keys of the neighbours.
        values: ``[B, Q, k, Dv]`` values of the neighbours.
        valid: ``[B, Q, k]`` bool, False where the memory held fewer than ``k`` visible entries.
    """

    index: torch.Tensor
    sq_dist: torch.Tensor
    weights: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor

    def mean_value(self) -> torch.Tensor:
        """Kernel-weighted mean of the neighbours' values, ``[B, Q, Dv]``."""
        return (self.weights.unsqueeze(-1) * self.values).sum(-2)


def dnd_empty(batch_size: int, capacity: int, key_dim: int, value_dim: int, *,
              device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> DNDMemory:
    """``batch_size`` empty memories of ``capacity`` slots each."""
    if capacity < 1:
        raise ValueError(f"capacity: expected >= 1, got {capacity}")
    dtype = dtype or torch.get_default_dtype()
    return DNDMemory(
        keys=torch.zeros(batch_size, capacity, key_dim, device=device, dtype=dtype),
        values=torch.zeros(batch_size, capacity, value_dim, device=device, dtype=dtype),
        stamps=torch.full((batch_size, capacity), -1, device=device, dtype=torch.long),
        count=torch.zeros(batch_size, device=device, dtype=torch.long),
    )


def dnd_write(memory: DNDMemory, keys: torch.Tensor, values: torch.Tensor,
              mask: torch.Tensor | None = None, eviction: str = "fifo") -> DNDMemory:
    """Append entries to every memory, evicting old ones when full.

    Args:
        memory: the memories, ``B`` of them.
        keys: ``[B, W, Dk]`` (or ``[B, Dk]`` for one entry each), written in order ``0..W-1``.
        values: ``[B, W, Dv]`` (or ``[B, Dv]``).
        mask: optional ``[B, W]`` (or ``[B]``) bool/0-1; entries with 0 are not written.
        eviction: ``"fifo"`` overwrites the oldest write; ``"lru"`` the least recently used
            slot (writes and reads recorded with :func:`dnd_touch` count as uses). Empty slots
            are always filled first.

    Returns:
        New memories (out-of-place, differentiable w.r.t. ``keys`` and ``values``). If more than
        ``capacity`` entries are written at once, only the last ``capacity`` ones are kept.
    """
    if eviction not in ("fifo", "lru"):
        raise ValueError(f"eviction: expected 'fifo' or 'lru', got {eviction!r}")
    B, C, Dk = memory.keys.shape
    Dv = memory.values.shape[-1]
    if keys.dim() == 2:
        keys = keys.unsqueeze(1)
        values = values.unsqueeze(1) if values.dim() == 2 else values
        mask = mask.unsqueeze(1) if mask is not None and mask.dim() == 1 else mask
    check_shape("keys", keys, (B, "W", Dk))
    W = keys.shape[1]
    check_shape("values", values, (B, W, Dv))
    if mask is None:
        mask = torch.ones(B, W, dtype=torch.bool, device=keys.device)
    check_shape("mask", mask, (B, W))
    mask = mask.bool()

    m = mask.long()
    rank = torch.cumsum(m, dim=1) - m  # [B, W] index among this call's written entries
    n_new = m.sum(1, keepdim=True)  # [B, 1]
    keep = mask & (rank >= n_new - C)  # only the last C written entries survive
    stamp = memory.count.unsqueeze(1) + rank  # [B, W] global write index
    usage = memory.usage()
    if eviction == "fifo" and memory.last_used is None:
        target = stamp % C
    else:
        # slot order: empty slots first (in slot order), then by last use (oldest first)
        slot_ids = torch.arange(C, device=usage.device).expand(B, C)
        prio = torch.where(memory.stamps < 0, slot_ids - C - (1 << 40), usage if eviction == "lru"
                           else memory.stamps)
        order = torch.argsort(prio, dim=1)  # [B, C]
        r = (rank - (n_new - torch.minimum(n_new, torch.full_like(n_new, C)))).clamp(0, C - 1)
        target = order.gather(1, r)
    slot = torch.where(keep, target, torch.full_like(stamp, C))  # C = dummy slot
    # scatter into [B, C + 1, D] (the extra slot absorbs skipped entries), then drop it
    pad_k = torch.cat([memory.keys, memory.keys.new_zeros(B, 1, Dk)], 1)
    pad_v = torch.cat([memory.values, memory.values.new_zeros(B, 1, Dv)], 1)
    pad_s = torch.cat([memory.stamps, memory.stamps.new_full((B, 1), -1)], 1)
    new_k = pad_k.scatter(1, slot.unsqueeze(-1).expand(B, W, Dk), keys.to(pad_k.dtype))
    new_v = pad_v.scatter(1, slot.unsqueeze(-1).expand(B, W, Dv), values.to(pad_v.dtype))
    new_s = pad_s.scatter(1, slot, stamp)
    last_used = None
    if memory.last_used is not None or eviction == "lru":
        tick = usage.amax(1, keepdim=True).clamp(min=-1) + 1 + rank  # newer than any use
        pad_u = torch.cat([usage, usage.new_full((B, 1), -1)], 1)
        last_used = pad_u.scatter(1, slot, tick)[:, :C]
    return DNDMemory(new_k[:, :C], new_v[:, :C], new_s[:, :C], memory.count + n_new.squeeze(1),
                     last_used)


def dnd_touch(memory: DNDMemory, read: DNDRead) -> DNDMemory:
    """Record the valid neighbours of ``read`` as used now (for ``eviction="lru"``).

    Reads of a batch of queries count as one time step. Returns a new memory (no copy of keys
    or values).
    """
    usage = memory.usage()
    B, C = usage.shape
    tick = usage.amax(1, keepdim=True) + 1  # [B, 1]
    idx = read.index.reshape(B, -1)
    ok = read.valid.reshape(B, -1)
    idx = torch.where(ok, idx, torch.full_like(idx, C))
    pad_u = torch.cat([usage, usage.new_full((B, 1), -1)], 1)
    new_u = pad_u.scatter(1, idx, tick.expand_as(idx))[:, :C]
    return DNDMemory(memory.keys, memory.values, memory.stamps, memory.count, new_u)


@torch.no_grad()
def knn_select(keys: torch.Tensor, valid: torch.Tensor, queries: torch.Tensor, k: int,
               visible_before: torch.Tensor | None = None,
               max_block: int = DEFAULT_MAX_BLOCK, stamps: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Exact k-nearest-neighbour slot indices, batched over memories; no gradient.

    Args:
        keys: ``[B, N, D]``; valid: ``[B, N]`` bool (empty slots are never selected).
        queries: ``[B, Q, D]``; k: neighbours per query (``k <= N``).
        visible_before: optional ``[B, Q]`` long; query ``q`` sees only entries whose
            ``stamps`` are ``< visible_before[:, q]`` (causal reads). Needs ``stamps [B, N]``.
        max_block: cap on ``Qc * B * N`` per distance block (queries are chunked to fit).

    Returns:
        ``[B, Q, k]`` long slot indices, nearest first; slots that are invalid for a query only
        appear after all valid ones (callers mark them via the distances they recompute).

    Coordinates are centred on the mean valid key of each memory before ``cdist`` so huge
    coordinates do not lose precision; TF32 is irrelevant here because the selected distances
    are recomputed exactly afterwards (selection itself is done in float32 or wider).
    """
    B, N, D = keys.shape
    Q = queries.shape[1]
    if visible_before is not None and stamps is None:
        raise ValueError("stamps: required with visible_before (causal reads)")
    work = torch.float64 if keys.dtype == torch.float64 else torch.float32
    kf, qf = keys.to(work), queries.to(work)
    vf = valid.to(work).unsqueeze(-1)
    centre = (kf * vf).sum(1, keepdim=True) / vf.sum(1, keepdim=True).clamp(min=1.0)
    kf, qf = kf - centre, qf - centre
    if visible_before is None and not bool(valid.all()):
        # park empty slots far away instead of masking every [B, Q, N] distance block
        far = (kf.abs().amax() + qf.abs().amax()) * 1e3 + 1e3
        kf = torch.where(valid.unsqueeze(-1), kf, far)
    inf = torch.tensor(float("inf"), dtype=work, device=keys.device)
    chunk = max(1, min(Q, max_block // max(1, B * N)))
    out = []
    for q0 in range(0, Q, chunk):
        qc = qf[:, q0:q0 + chunk]
        d = torch.cdist(qc, kf)  # [B, Qc, N]
        if visible_before is not None and stamps is not None:  # together (checked above)
            vis = stamps.unsqueeze(1) < visible_before[:, q0:q0 + chunk].unsqueeze(-1)
            d = torch.where(valid.unsqueeze(1) & vis, d, inf)
        out.append(smallest_k(d, k))
    return torch.cat(out, 1)


def smallest_k(d: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[..., k]`` of the ``k`` smallest entries of ``d [..., N]``, smallest first.

    Exact two-stage selection (faster than one ``topk`` over long rows on CPU): the ``k``
    smallest entries lie in the ``k`` blocks of ``bs`` consecutive entries with the smallest
    block minima (any other block has ``k`` blocks below its minimum), so ``topk`` runs over the
    block minima and then over ``k * bs`` candidates. Ties may resolve differently from ``topk``.
    """
    N = d.shape[-1]
    bs = 8 if N <= 1024 else 32
    if d.device.type != "cpu" or N % bs or N // bs < 2 * k:
        return torch.topk(d, k, dim=-1, largest=False, sorted=True).indices
    mins = d.unflatten(-1, (N // bs, bs)).amin(-1)
    blocks = torch.topk(mins, k, dim=-1, largest=False, sorted=False).indices  # [..., k]
    cand = (blocks.unsqueeze(-1) * bs + torch.arange(bs, device=d.device)).flatten(-2)
    j = torch.topk(d.gather(-1, cand), k, dim=-1, largest=False, sorted=True).indices
    return cand.gather(-1, j)


def _gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x [B, N, D]``, ``index [B, Q, k]`` -> ``[B, Q, k, D]`` (differentiable)."""
    B, Q, k = index.shape
    flat = x.gather(1, index.reshape(B, Q * k, 1).expand(B, Q * k, x.shape[-1]))
    return flat.reshape(B, Q, k, x.shape[-1])


def auto_backend(keys: torch.Tensor, num_queries: int, causal: bool = False) -> str:
    """``"kdtree"`` for large CPU reads when scipy is available, else ``"torch"``.

    On CPU a per-memory kd-tree beats batched brute force once ``Q * N`` per memory is large
    (see ``experiments/bench_dnd.py``); on GPU the batched torch selection is always used.
    """
    if causal or keys.device.type != "cpu" or num_queries * keys.shape[1] < (1 << 15):
        return "torch"
    try:
        import scipy.spatial  # noqa: F401
    except ImportError:
        return "torch"
    return "kdtree"


def dnd_read(memory: DNDMemory, queries: torch.Tensor, k: int, *, delta: float = 1e-4,
             visible_before: torch.Tensor | None = None, backend: str = "torch",
             max_block: int = DEFAULT_MAX_BLOCK) -> DNDRead:
    """Read the ``k`` nearest entries of each query from its own memory.

    Args:
        memory: ``B`` memories with keys ``[B, C, Dk]``.
        queries: ``[B, Q, Dk]`` (or ``[B, Dk]``, read as ``Q = 1`` and squeezed back).
        k: number of neighbours (if a memory holds fewer visible entries, the rest are invalid).
        delta: kernel constant in ``1 / (d^2 + delta)``.
        visible_before: optional ``[B, Q]`` long, causal reads: query ``q`` only sees entries
            written before write index ``visible_before[:, q]`` (torch backend only).
        backend: ``"torch"`` (exact, batched, no extra dependency), ``"auto"`` (see
            :func:`auto_backend`) or an index from
            :mod:`worldmodels.dnd_index` (``"kdtree"`` needs scipy, ``"faiss"`` needs faiss-cpu).
        max_block: bounds the ``[B, Qc, N]`` distance block of the torch backend.

    Returns:
        :class:`DNDRead`; its ``weights``, ``sq_dist``, ``keys`` and ``values`` are differentiable
        with respect to ``queries`` and the memory's keys and values.
    """
    B, C, Dk = memory.keys.shape
    squeeze = queries.dim() == 2
    if squeeze:
        queries = queries.unsqueeze(1)
    check_shape("queries", queries, (B, "Q", Dk))
    Q = queries.shape[1]
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    if visible_before is not None:
        check_shape("visible_before", visible_before, (B, Q))
    kk = min(k, C)
    valid_slot = memory.stamps >= 0  # [B, C]
    if backend == "auto":
        backend = auto_backend(memory.keys, Q, visible_before is not None)
    if backend == "torch":
        index = knn_select(memory.keys.detach(), valid_slot, queries.detach(), kk,
                           visible_before=visible_before, max_block=max_block,
                           stamps=memory.stamps)
    else:
        if visible_before is not None:
            raise ValueError(f"visible_before is only supported by backend='torch', got {backend!r}")
        from worldmodels.dnd_index import index_select

        index = index_select(memory.keys.detach(), memory.size, queries.detach(), kk, backend)
    sel_keys = _gather(memory.keys, index)  # [B, Q, kk, Dk]
    sel_vals = _gather(memory.values, index)
    # validity of each selected slot (filled and visible)
    ok = valid_slot.gather(1, index.reshape(B, -1)).reshape(B, Q, kk)
    if visible_before is not None:
        st = memory.stamps.gather(1, index.reshape(B, -1)).reshape(B, Q, kk)
        ok = ok & (st < visible_before.unsqueeze(-1))
    sq = ((queries.unsqueeze(2) - sel_keys) ** 2).sum(-1)  # exact, differentiable, no sqrt
    inv = torch.where(ok, 1.0 / (sq + delta), torch.zeros_like(sq))
    weights = inv / inv.sum(-1, keepdim=True).clamp(min=torch.finfo(inv.dtype).tiny)
    sq = torch.where(ok, sq, torch.full_like(sq, float("inf")))
    if kk < k:  # pad to k with invalid neighbours
        pad = k - kk
        index = torch.cat([index, index[..., :1].expand(B, Q, pad)], -1)
        sq = torch.cat([sq, sq.new_full((B, Q, pad), float("inf"))], -1)
        weights = torch.cat([weights, weights.new_zeros(B, Q, pad)], -1)
        sel_keys = torch.cat([sel_keys, sel_keys[..., :1, :].expand(B, Q, pad, Dk) * 0], -2)
        sel_vals = torch.cat([sel_vals, sel_vals[..., :1, :].expand(B, Q, pad, -1) * 0], -2)
        ok = torch.cat([ok, ok.new_zeros(B, Q, pad)], -1)
    out = DNDRead(index, sq, weights, sel_keys, sel_vals, ok)
    if squeeze:
        out = DNDRead(*(t.squeeze(1) for t in (index, sq, weights, sel_keys, sel_vals, ok)))
    return out
