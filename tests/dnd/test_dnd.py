"""DND: read equals a brute-force numpy reference, gradients, batch isolation, FIFO, guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodels.dnd import dnd_empty, dnd_read, dnd_write


def numpy_reference(keys, values, queries, k, delta=1e-4):
    """Brute force per memory and query: sorted distances, weights, weighted mean of values."""
    B, Q = queries.shape[:2]
    idx = np.zeros((B, Q, k), np.int64)
    w = np.zeros((B, Q, k))
    mean = np.zeros((B, Q, values.shape[-1]))
    for b in range(B):
        for q in range(Q):
            d2 = ((keys[b] - queries[b, q]) ** 2).sum(-1)
            order = np.argsort(d2)[:k]
            inv = 1.0 / (d2[order] + delta)
            idx[b, q] = order
            w[b, q] = inv / inv.sum()
            mean[b, q] = (w[b, q][:, None] * values[b, order]).sum(0)
    return idx, w, mean


def filled(B=3, N=40, Dk=2, Dv=5, seed=0, dtype=torch.float64, capacity=None):
    g = torch.Generator().manual_seed(seed)
    keys = torch.randn(B, N, Dk, generator=g, dtype=dtype)
    values = torch.randn(B, N, Dv, generator=g, dtype=dtype)
    mem = dnd_write(dnd_empty(B, capacity or N, Dk, Dv, dtype=dtype), keys, values)
    return mem, keys, values, g


@pytest.mark.parametrize("backend", ["torch", "kdtree", "faiss"])
def test_read_matches_numpy_reference(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    if backend == "kdtree":
        pytest.importorskip("scipy")
    mem, keys, values, g = filled(B=3, N=40, Dk=3, Dv=4)
    queries = torch.randn(3, 7, 3, generator=g, dtype=torch.float64)
    out = dnd_read(mem, queries, k=5, backend=backend)
    idx, w, mean = numpy_reference(keys.numpy(), values.numpy(), queries.numpy(), 5)
    assert np.array_equal(out.index.numpy(), idx)
    np.testing.assert_allclose(out.weights.numpy(), w, rtol=1e-10)
    np.testing.assert_allclose(out.mean_value().numpy(), mean, rtol=1e-10)
    assert out.valid.all()


def test_chunked_selection_matches_unchunked():
    mem, _, _, g = filled(B=2, N=50)
    queries = torch.randn(2, 33, 2, generator=g, dtype=torch.float64)
    a = dnd_read(mem, queries, k=4)
    b = dnd_read(mem, queries, k=4, max_block=1)  # one query per block
    assert torch.equal(a.index, b.index)
    assert torch.allclose(a.weights, b.weights)


def test_gradients_reach_keys_values_queries():
    B, N = 2, 20
    g = torch.Generator().manual_seed(1)
    keys = torch.randn(B, N, 2, generator=g, dtype=torch.float64, requires_grad=True)
    values = torch.randn(B, N, 3, generator=g, dtype=torch.float64, requires_grad=True)
    queries = torch.randn(B, 6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mem = dnd_write(dnd_empty(B, N, 2, 3, dtype=torch.float64), keys, values)
    out = dnd_read(mem, queries, k=5)
    loss = (out.mean_value() ** 2).sum()
    loss.backward()
    for name, t in [("keys", keys), ("values", values), ("queries", queries)]:
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name
    # only the selected keys/values receive gradient
    sel = torch.zeros(B, N, dtype=torch.bool)
    sel.scatter_(1, out.index.reshape(B, -1), True)
    assert (values.grad.abs().sum(-1) > 0).eq(sel).all()

    # gradcheck of the full read w.r.t. queries, keys and values (selection is locally constant)
    def f(q, k, v):
        m = dnd_write(dnd_empty(B, N, 2, 3, dtype=torch.float64), k, v)
        return dnd_read(m, q, k=5).mean_value()

    assert torch.autograd.gradcheck(f, (queries.detach().requires_grad_(),
                                        keys.detach().requires_grad_(),
                                        values.detach().requires_grad_()))


def test_batch_isolation():
    mem, keys, values, g = filled(B=4, N=30)
    queries = torch.randn(4, 5, 2, generator=g, dtype=torch.float64)
    base = dnd_read(mem, queries, k=3)
    # change memory 2 completely: the reads of the other memories must not change
    keys2, values2 = keys.clone(), values.clone()
    keys2[2] = torch.randn(30, 2, generator=g, dtype=torch.float64) * 0.01
    values2[2] += 100
    mem2 = dnd_write(dnd_empty(4, 30, 2, 5, dtype=torch.float64), keys2, values2)
    out = dnd_read(mem2, queries, k=3)
    others = [0, 1, 3]
    assert torch.equal(out.index[others], base.index[others])
    assert torch.equal(out.mean_value()[others], base.mean_value()[others])
    assert not torch.equal(out.mean_value()[2], base.mean_value()[2])
    # gradients of memory b's read only reach memory b
    k = keys.clone().requires_grad_()
    m = dnd_write(dnd_empty(4, 30, 2, 5, dtype=torch.float64), k, values)
    dnd_read(m, queries, k=3).mean_value()[1].sum().backward()
    assert k.grad[[0, 2, 3]].abs().sum() == 0 and k.grad[1].abs().sum() > 0


def test_fifo_eviction_and_partial_fill():
    B, C = 2, 4
    mem = dnd_empty(B, C, 1, 1, dtype=torch.float64)
    keys = torch.arange(6, dtype=torch.float64).reshape(1, 6, 1).repeat(B, 1, 1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 0]], dtype=torch.bool)
    mem = dnd_write(mem, keys, keys * 10, mask)
    assert mem.count.tolist() == [6, 2]
    assert sorted(mem.keys[0, :, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]  # oldest two evicted
    assert mem.keys[1, :2, 0].tolist() == [0.0, 2.0] and mem.stamps[1].tolist() == [0, 1, -1, -1]
    # one-at-a-time writes give the same memory as one block write
    mem1 = dnd_empty(B, C, 1, 1, dtype=torch.float64)
    for t in range(6):
        mem1 = dnd_write(mem1, keys[:, t], keys[:, t] * 10, mask[:, t])
    assert torch.equal(mem1.keys, mem.keys) and torch.equal(mem1.stamps, mem.stamps)
    # memory 1 holds 2 entries: k=3 gives one invalid neighbour with zero weight
    out = dnd_read(mem, torch.full((B, 1, 1), 2.1, dtype=torch.float64), k=3)
    assert out.valid[1, 0].tolist() == [True, True, False]
    assert out.weights[1, 0, 2] == 0 and torch.allclose(out.weights.sum(-1), torch.ones(B, 1, dtype=torch.float64))
    assert out.index[1, 0, :2].tolist() == [1, 0]


def test_empty_memory_gives_zero_weights():
    mem = dnd_empty(2, 8, 2, 3)
    out = dnd_read(mem, torch.zeros(2, 4, 2), k=5)
    assert not out.valid.any() and out.weights.abs().sum() == 0
    assert torch.isfinite(out.mean_value()).all()


def test_causal_visibility():
    mem, keys, values, g = filled(B=2, N=10, Dk=2)
    queries = keys.clone()  # query t equals key t: causal read must not see it
    vis = torch.arange(10).repeat(2, 1)  # query t sees entries 0..t-1
    out = dnd_read(mem, queries, k=3, visible_before=vis)
    assert not out.valid[:, 0].any()
    assert out.valid[:, 1].tolist() == [[True, False, False]] * 2
    ok = out.index.masked_fill(~out.valid, -1)
    assert (ok < vis.unsqueeze(-1)).all()
    # rows with >= 3 visible entries equal a read from the truncated memory
    t = 7
    sub = dnd_write(dnd_empty(2, 10, 2, 5, dtype=torch.float64), keys[:, :t], values[:, :t])
    ref = dnd_read(sub, queries[:, t], k=3)
    assert torch.equal(out.index[:, t], ref.index)
    assert torch.allclose(out.weights[:, t], ref.weights)


def test_duplicate_keys_and_huge_coordinates_are_safe():
    B, N = 2, 16
    base = torch.tensor([1e6, -1e6], dtype=torch.float32)
    offsets = torch.arange(N, dtype=torch.float32).reshape(1, N, 1) * torch.tensor([1.0, 0.5])
    keys = (base + offsets).repeat(B, 1, 1)
    keys[:, 3] = keys[:, 2]  # exact duplicate
    keys = keys.requires_grad_()
    values = torch.randn(B, N, 3)
    mem = dnd_write(dnd_empty(B, N, 2, 3), keys, values)
    q = keys.detach()[:, 2:3].clone().requires_grad_()  # query exactly on the duplicate pair
    out = dnd_read(mem, q, k=3)
    assert set(out.index[0, 0, :2].tolist()) == {2, 3}
    assert out.index[0, 0, 2].item() in (1, 4)
    assert torch.allclose(out.sq_dist[:, 0, :2], torch.zeros(B, 2))  # exactly zero, not ~1e5
    out.mean_value().sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(keys.grad).all()
    # duplicates share the weight; the kernel caps it at 1/delta
    assert torch.allclose(out.weights[:, 0, 0], out.weights[:, 0, 1])


def test_reversed_read_direction():
    B, N = 2, 12
    g = torch.Generator().manual_seed(3)
    states = torch.randn(B, N, 2, generator=g)
    codes = torch.randn(B, N, 4, generator=g)
    stats = torch.cat([codes, torch.zeros(B, N, 4)], -1)  # (mean, logvar) as value
    mem = dnd_write(dnd_empty(B, N, 2, 8), states, stats)
    rev = mem.reversed(slice(0, 4))
    out = dnd_read(rev, codes[:, 5:6] + 1e-4, k=1)
    assert out.index[:, 0, 0].tolist() == [5, 5]
    assert torch.allclose(out.values[:, 0, 0], states[:, 5])


def test_shape_errors_name_the_argument():
    mem = dnd_empty(2, 8, 2, 3)
    with pytest.raises(ValueError, match="queries"):
        dnd_read(mem, torch.zeros(3, 4, 2), k=2)
    with pytest.raises(ValueError, match="values"):
        dnd_write(mem, torch.zeros(2, 4, 2), torch.zeros(2, 4, 5))


@pytest.mark.parametrize("N", [256, 4096])
def test_two_stage_smallest_k_is_exact(N):
    from worldmodels.dnd import smallest_k

    g = torch.Generator().manual_seed(N)
    d = torch.rand(3, 17, N, generator=g, dtype=torch.float64)
    out = smallest_k(d, 5)
    ref = np.argsort(d.numpy(), axis=-1)[..., :5]
    assert np.array_equal(out.numpy(), ref)


def test_large_memory_read_all_backends_agree():
    B, N, Q = 2, 512, 70
    mem, keys, values, g = filled(B=B, N=N, Dk=2, Dv=3)
    queries = torch.randn(B, Q, 2, generator=g, dtype=torch.float64)
    ref_idx, ref_w, _ = numpy_reference(keys.numpy(), values.numpy(), queries.numpy(), 5)
    for backend in ["torch", "auto"]:
        out = dnd_read(mem, queries, k=5, backend=backend)
        assert np.array_equal(out.index.numpy(), ref_idx), backend
        np.testing.assert_allclose(out.weights.numpy(), ref_w, rtol=1e-10)


def test_lru_eviction_keeps_recently_read_entries():
    from worldmodels.dnd import dnd_touch

    B, C = 2, 4
    mem = dnd_empty(B, C, 1, 1, dtype=torch.float64)
    keys = torch.arange(4, dtype=torch.float64).reshape(1, 4, 1).repeat(B, 1, 1)
    mem = dnd_write(mem, keys, keys, eviction="lru")
    # read entry 0 in memory 0 only: it becomes the most recently used there
    q = torch.tensor([[[0.0]], [[3.0]]], dtype=torch.float64)
    mem = dnd_touch(mem, dnd_read(mem, q, k=1))
    new = torch.full((B, 2, 1), 10.0, dtype=torch.float64)
    mem = dnd_write(mem, new, new, eviction="lru")
    assert sorted(mem.keys[0, :, 0].tolist()) == [0.0, 3.0, 10.0, 10.0]  # evicted 1 and 2
    assert sorted(mem.keys[1, :, 0].tolist()) == [2.0, 3.0, 10.0, 10.0]  # evicted 0 and 1
    # FIFO on the same history evicts by write order regardless of reads
    fifo = dnd_write(dnd_touch(dnd_write(dnd_empty(B, C, 1, 1, dtype=torch.float64), keys, keys),
                               dnd_read(mem, q, k=1)), new, new)
    assert sorted(fifo.keys[0, :, 0].tolist()) == [2.0, 3.0, 10.0, 10.0]
    # gradients still flow through LRU writes
    k = keys.clone().requires_grad_()
    m2 = dnd_write(dnd_empty(B, C, 1, 1, dtype=torch.float64), k, keys, eviction="lru")
    dnd_read(m2, q, k=2).mean_value().sum().backward()
    assert torch.isfinite(k.grad).all()
