"""Time split by kind of operator (``worldmodels.profiling``)."""

from __future__ import annotations

import pytest
import torch

from worldmodels.profiling import MATMUL_OPS, VIEW_OPS, op_time_breakdown


def test_matmul_heavy_and_elementwise_heavy_work_are_told_apart(one_thread):
    a = torch.randn(256, 256)
    x = torch.randn(400_000)

    def matmuls():
        for _ in range(20):
            torch.mm(a, a)

    def elementwise():
        for _ in range(20):
            torch.tanh(x).mul_(2.0)

    mm, ew = op_time_breakdown(matmuls), op_time_breakdown(elementwise)
    assert mm.matmul > 5 * mm.elementwise and mm.ops >= 20
    assert ew.elementwise > 0 and ew.matmul == 0.0 and ew.ops >= 40
    for b in (mm, ew):
        parts = b.matmul + b.elementwise + b.views + b.other
        assert parts == pytest.approx(b.wall, rel=1e-9) or b.other == 0.0
        assert set(b.to_dict()) == {"wall", "matmul", "elementwise", "views", "other", "ops"}


def test_views_are_counted_apart_from_computation(one_thread):
    x = torch.randn(64, 64)

    def views():
        for _ in range(500):
            x[1:, :3].t().unsqueeze(0)

    b = op_time_breakdown(views)
    assert b.views > 0 and b.matmul == 0.0 and b.ops >= 1500
    assert MATMUL_OPS.isdisjoint(VIEW_OPS)
