"""Where the time of a CPU computation goes, by kind of operator: matrix products, elementwise
work and reductions, tensor views, and the rest (the Python interpreter and torch's dispatch).

Used next to a compute floor (``worldmodels.flops``): the floor is what the matmuls alone would
cost at the measured peak, and this breakdown shows how much of a measured time the matmuls
actually take and what the rest is spent on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

#: operators whose time counts as matrix products (the work a FLOP floor counts)
MATMUL_OPS = frozenset({
    "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::mv", "aten::addmv",
    "aten::dot", "aten::mkldnn_convolution", "aten::_convolution", "aten::convolution_overrideable",
    "aten::mkldnn_rnn", "aten::_mkldnn_linear", "aten::_addmm_activation",
})

#: operators that only make a new view of existing memory (their cost is dispatch)
VIEW_OPS = frozenset({
    "aten::view", "aten::slice", "aten::select", "aten::as_strided", "aten::unsqueeze", "aten::squeeze",
    "aten::expand", "aten::permute", "aten::transpose", "aten::t", "aten::reshape", "aten::_unsafe_view",
    "aten::alias", "aten::detach", "aten::narrow", "aten::unbind", "aten::split", "aten::chunk",
    "aten::resolve_conj", "aten::resolve_neg", "aten::flatten", "aten::numpy_T", "aten::movedim",
})


@dataclass(frozen=True)
class OpTimeBreakdown:
    """Seconds of one run of a computation under the profiler.

    ``matmul``, ``elementwise`` (every other operator that computes: activations, products and
    sums of elements, copies, sampling, reductions) and ``views`` are the operators' own (self)
    CPU times, summed; ``other = wall - (matmul + elementwise + views)`` is the time outside
    any operator (Python, dispatch). The profiler's own bookkeeping inflates ``wall`` and
    ``other``: compare fractions between rows, not with untimed runs.
    """

    wall: float
    matmul: float
    elementwise: float
    views: float
    other: float
    ops: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def op_time_breakdown(fn: Callable[[], object]) -> OpTimeBreakdown:
    """Run ``fn()`` once under ``torch.profiler`` (CPU activity) and split its time by kind of
    operator (``OpTimeBreakdown``). Self times exclude the operators an operator calls, so
    nested operators (``aten::linear`` calling ``aten::addmm``) are each counted once, under
    their own kind. CPU only: on a GPU the profiler's CPU times are launch times."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
    matmul = elementwise = views = 0.0
    ops = 0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        seconds = event.self_cpu_time_total / 1e6
        ops += event.count
        if event.key in MATMUL_OPS:
            matmul += seconds
        elif event.key in VIEW_OPS:
            views += seconds
        else:
            elementwise += seconds
    other = max(wall - matmul - elementwise - views, 0.0)
    return OpTimeBreakdown(wall=wall, matmul=matmul, elementwise=elementwise, views=views, other=other, ops=ops)
