"""Benchmark of the Kalman core: batched RTS smoother (filter + smoother) timings.

Problem: B = 256 sequences, T in {20, 100, 500, 1000}, state n = 4, observation m = 2, float32,
CPU.  Measured in the same run (anchors are optional and skipped when not installed):

* ``torch_shared``: ``kalman_smoother`` with shared A, C, P0 (the covariance recursion is
  computed once for the batch; the default code path for this problem).  Repeated calls with the
  same matrices reuse the covariances (``worldmodels.kalman.shared.COVARIANCE_CACHE``); the
  ``torch_shared_uncached`` figures recompute them on every call, as dynamax does.
* ``torch_per_sequence``: the same problem with a per-sequence P0 ``[B, n, n]``, which forces the
  per-sequence covariance path that time-varying ``A_t, C_t`` and masks (the KVAE) use.
* ``torch_parallel``: ``method="parallel"`` (associative scan; meant for GPUs).
* ``torch_train_step``: per-sequence path, forward + backward of ``log_likelihood + mean``.
* ``dynamax``: ``jax.jit(jax.vmap(lgssm_smoother))`` (compiled before timing).
* ``pykalman``: ``KalmanFilter.smooth`` looped over the sequences (T = 100 only; slow).

The per-sequence, parallel and training-step variants run only for T <= ``--slow-max-steps``.
Every figure is the median of ``--repeats`` runs after a warm-up (``min_*``: the minimum).
``paired_ratio_*`` compares torch and dynamax timed in alternating blocks (see
:func:`paired_ratio`), the robust comparison on a shared, loaded CPU; ``paired_cpu_ratio_*``
is the same with process CPU time (all threads of the process, so XLA's worker threads count)
instead of wall time, which preemption by other processes does not inflate.

Fairness: ``--threads N`` sets torch's intra-op threads and, unless ``XLA_FLAGS`` is already
set, XLA's (``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` for N = 1),
before jax is imported.  The JSON records both, the load average at the start and end, and the
other processes that used the CPU while it ran.  Run::

    python -m experiments.bench_kalman --threads 1   # writes experiments/results/bench_kalman.json + .png
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from experiments._results import output_dir, save_results
from worldmodels.kalman import kalman_smoother
from worldmodels.kalman.shared import covariance_cache_disabled


def make_problem(batch: int, steps: int, n: int, m: int, seed: int) -> dict[str, np.ndarray]:
    """A stable random LGSSM and observations simulated from it (float32 numpy arrays)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    A = 0.97 * M / np.linalg.norm(M, 2)
    C = rng.standard_normal((m, n))
    Q = 0.1 * np.eye(n)
    R = 0.2 * np.eye(m)
    z = rng.standard_normal((batch, n))
    obs = np.empty((batch, steps, m))
    for t in range(steps):
        if t > 0:
            z = z @ A.T + rng.multivariate_normal(np.zeros(n), Q, size=batch)
        obs[:, t] = z @ C.T + rng.multivariate_normal(np.zeros(m), R, size=batch)
    f32 = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    return dict(A=f32(A), C=f32(C), Q=f32(Q), R=f32(R), mu0=f32(np.zeros(n)), P0=f32(np.eye(n)),
                obs=f32(obs))


MIN_TIMES: dict[str, float] = {}


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None,
              key: str | None = None) -> float:
    """Median wall time in ms over ``repeats`` calls after one warm-up call (the minimum is kept
    in ``MIN_TIMES[key]``: on a shared, loaded CPU it shows the undisturbed cost)."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    if key is not None:
        MIN_TIMES[key] = 1e3 * min(times)
    return 1e3 * statistics.median(times)


def uncached(obs: torch.Tensor, **kw: torch.Tensor) -> object:
    """``kalman_smoother`` recomputing the covariances (no reuse from earlier calls)."""
    with covariance_cache_disabled():
        return kalman_smoother(obs, **kw)


def torch_timings(p: dict[str, np.ndarray], repeats: int, device: str, slow: bool = True
                  ) -> tuple[dict, np.ndarray]:
    """Median ms of the torch variants (the per-sequence, parallel and training-step ones only if
    ``slow``) and the smoothed means of ``torch_shared``."""
    kw = {k: torch.from_numpy(v).to(device) for k, v in p.items()}
    obs = kw.pop("obs")
    batch, n = obs.shape[0], kw["A"].shape[0]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict[str, float | None] = {}
    kw_seq = dict(kw, P0=kw["P0"].expand(batch, n, n))
    with torch.inference_mode():
        out["torch_shared"] = median_ms(lambda: kalman_smoother(obs, **kw), repeats, sync, "torch_shared")
        out["torch_shared_uncached"] = median_ms(lambda: uncached(obs, **kw), repeats, sync,
                                                 "torch_shared_uncached")
        means = kalman_smoother(obs, **kw).mean.cpu().numpy()
        if slow:
            out["torch_per_sequence"] = median_ms(lambda: kalman_smoother(obs, **kw_seq), repeats, sync,
                                                  "torch_per_sequence")
            out["torch_parallel"] = median_ms(lambda: kalman_smoother(obs, **kw, method="parallel"),
                                              max(3, repeats // 3), sync)
    if not slow:
        out.update(torch_per_sequence=None, torch_parallel=None, torch_train_step=None)
        return out, means
    A = kw["A"].clone().requires_grad_(True)

    def train_step():
        r = kalman_smoother(obs, **dict(kw_seq, A=A))
        (r.log_likelihood.sum() + r.mean.sum()).backward()

    out["torch_train_step"] = median_ms(train_step, max(3, repeats // 3), sync)
    return out, means


def paired_ratio(fn_a: Callable[[], object], fn_b: Callable[[], object], rounds: int,
                 block: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over ``rounds`` of median-time(a) / median-time(b), each round timing a block of
    ``block`` calls of ``a`` then of ``b`` (after one discarded warm-up call each).

    On a shared CPU the load changes from second to second; comparing the two within a round
    makes their ratio much more stable than the ratio of two separately measured medians, and
    the warm-up call keeps one library's thread-pool wake-up or cache refill out of the other's
    timing.  ``clock``: wall time by default; ``time.process_time`` measures the CPU time of
    the whole process instead."""
    def block_time(fn):
        fn()
        times = []
        for _ in range(block):
            t0 = clock()
            fn()
            times.append(clock() - t0)
        return statistics.median(times)

    return statistics.median(block_time(fn_a) / block_time(fn_b) for _ in range(rounds))


def xla_thread_flags(threads: int) -> str | None:
    """Set ``XLA_FLAGS`` for ``threads`` = 1 (single-threaded XLA CPU) unless already set; must run
    before jax is imported.  Returns the flags in effect."""
    if threads == 1 and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    return os.environ.get("XLA_FLAGS")


def _cpu_ticks() -> dict[int, int]:
    ticks = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                ticks[int(d.name)] = int(fields[11]) + int(fields[12])      # utime + stime
            except (OSError, IndexError, ValueError):
                pass
    return ticks


def _process_name(pid: int) -> str:
    """``python -m <module>`` for Python modules, else the executable's name (never arguments)."""
    try:
        argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in argv if a]
    if not args:
        return "?"
    if "-m" in args[:-1]:
        return f"python -m {args[args.index('-m') + 1]}"
    return os.path.basename(args[0])


def busy_processes(interval: float = 1.0, min_share: float = 0.1) -> list[dict[str, object]]:
    """Other processes that used at least ``min_share`` of a core during ``interval`` seconds
    (Linux ``/proc``; empty elsewhere): name and share of a core."""
    if not Path("/proc/self/stat").exists():
        return []
    hz = os.sysconf("SC_CLK_TCK")
    before = _cpu_ticks()
    time.sleep(interval)
    after = _cpu_ticks()
    busy = []
    for pid, t in after.items():
        share = (t - before.get(pid, t)) / hz / interval
        if pid != os.getpid() and share >= min_share:
            busy.append({"process": _process_name(pid), "core_share": round(share, 2)})
    return sorted(busy, key=lambda b: -float(b["core_share"]))  # type: ignore[arg-type]


def dynamax_function(p: dict[str, np.ndarray]) -> Callable[[], np.ndarray] | None:
    """``jit(vmap(lgssm_smoother))`` on the problem, returning smoothed means; None if not installed."""
    try:
        import jax
        import jax.numpy as jnp
        from dynamax.linear_gaussian_ssm.inference import (
            ParamsLGSSM,
            ParamsLGSSMDynamics,
            ParamsLGSSMEmissions,
            ParamsLGSSMInitial,
            lgssm_smoother,
        )
    except ImportError:
        return None
    n, m = p["A"].shape[0], p["C"].shape[0]
    params = ParamsLGSSM(
        initial=ParamsLGSSMInitial(mean=jnp.asarray(p["mu0"]), cov=jnp.asarray(p["P0"])),
        dynamics=ParamsLGSSMDynamics(weights=jnp.asarray(p["A"]), bias=jnp.zeros(n),
                                     input_weights=jnp.zeros((n, 0)), cov=jnp.asarray(p["Q"])),
        emissions=ParamsLGSSMEmissions(weights=jnp.asarray(p["C"]), bias=jnp.zeros(m),
                                       input_weights=jnp.zeros((m, 0)), cov=jnp.asarray(p["R"])))
    obs = jnp.asarray(p["obs"])
    fn = jax.jit(jax.vmap(lambda y: lgssm_smoother(params, y).smoothed_means))
    return lambda: np.asarray(jax.block_until_ready(fn(obs)))


def dynamax_timing(p: dict[str, np.ndarray], repeats: int) -> tuple[float, np.ndarray] | None:
    """Median ms of the jitted, vmapped dynamax smoother and its smoothed means; None if not installed."""
    fn = dynamax_function(p)
    if fn is None:
        return None
    means = fn()  # compiles
    return median_ms(fn, repeats, key="dynamax"), means


def pykalman_timing(p: dict[str, np.ndarray], num_seqs: int) -> tuple[float, np.ndarray] | None:
    try:
        from pykalman import KalmanFilter
    except ImportError:
        return None
    kf = KalmanFilter(transition_matrices=p["A"], observation_matrices=p["C"],
                      transition_covariance=p["Q"], observation_covariance=p["R"],
                      initial_state_mean=p["mu0"], initial_state_covariance=p["P0"])
    t0 = time.perf_counter()
    means = [kf.smooth(p["obs"][b])[0] for b in range(num_seqs)]
    ms = 1e3 * (time.perf_counter() - t0)
    batch = p["obs"].shape[0]
    return ms * batch / num_seqs, np.stack(means)


def plot(results: dict, path) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = sorted(int(t) for t in results)
    keys = ["torch_shared", "torch_shared_uncached", "torch_per_sequence", "torch_parallel",
            "torch_train_step", "dynamax", "pykalman"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        xs = [t for t in steps if results[str(t)].get(k) is not None]
        if xs:
            ax.plot(xs, [results[str(t)][k] for t in xs], marker="o", label=k)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(t) for t in steps])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("median time per call (ms), B = 256")
    ax.set_title("Batched RTS smoother, n = 4, m = 2, float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 100, 500, 1000])
    ap.add_argument("--slow-max-steps", type=int, default=500,
                    help="largest T for the per-sequence, parallel and training-step variants")
    ap.add_argument("--state-dim", type=int, default=4)
    ap.add_argument("--obs-dim", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--paired-rounds", type=int, default=15,
                    help="rounds of the paired torch/dynamax comparison (blocks of 5 calls each)")
    ap.add_argument("--threads", type=int, default=1, help="torch (and, for 1, XLA) intra-op threads")
    ap.add_argument("--pykalman-steps", type=int, nargs="*", default=[100],
                    help="T values for which the (slow) pykalman loop is timed")
    ap.add_argument("--pykalman-seqs", type=int, default=256,
                    help="sequences pykalman smooths (time is scaled to --batch)")
    ap.add_argument("--no-anchors", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--notes", default="", help="a note on the machine's state, stored in the JSON")
    ap.add_argument("--name", default="bench_kalman")
    ap.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    ap.add_argument("--quick", action="store_true", help="T = 20, 2 repeats, no anchors (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.repeats, args.paired_rounds, args.no_anchors = 32, [20], 2, 3, True
    torch.set_num_threads(args.threads)
    xla_flags = xla_thread_flags(args.threads)
    environment = {"load_average_1_5_15min": {"start": list(os.getloadavg())},
                   "busy_processes": {"start": busy_processes()},
                   "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "xla_flags": xla_flags}

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results: dict[str, dict] = {}
    for T in tqdm(args.steps, desc="bench_kalman"):
        p = make_problem(args.batch, T, args.state_dim, args.obs_dim, args.seed)
        slow = T <= args.slow_max_steps
        row, means = torch_timings(p, args.repeats, "cpu", slow)
        if "cuda" in devices:
            gpu, _ = torch_timings(p, args.repeats, "cuda", slow)
            row.update({f"gpu_{k}": v for k, v in gpu.items()})
        row["dynamax"] = row["pykalman"] = None
        if not args.no_anchors:
            dyn = dynamax_timing(p, args.repeats)
            dyn_fn = dynamax_function(p)
            if dyn_fn is not None:
                kw = {k: torch.from_numpy(v) for k, v in p.items()}
                obs = kw.pop("obs")
                kw_seq = dict(kw, P0=kw["P0"].expand(args.batch, *kw["P0"].shape))
                with torch.inference_mode():
                    shared = lambda obs=obs, kw=kw: kalman_smoother(obs, **kw)  # noqa: E731
                    row["paired_ratio_torch_shared_to_dynamax"] = paired_ratio(
                        shared, dyn_fn, args.paired_rounds)
                    row["paired_cpu_ratio_torch_shared_to_dynamax"] = paired_ratio(
                        shared, dyn_fn, args.paired_rounds, clock=time.process_time)
                    recompute = lambda obs=obs, kw=kw: uncached(obs, **kw)  # noqa: E731
                    row["paired_ratio_torch_shared_uncached_to_dynamax"] = paired_ratio(
                        recompute, dyn_fn, args.paired_rounds)
                    row["paired_cpu_ratio_torch_shared_uncached_to_dynamax"] = paired_ratio(
                        recompute, dyn_fn, args.paired_rounds, clock=time.process_time)
                    if slow:
                        row["paired_ratio_torch_per_sequence_to_dynamax"] = paired_ratio(
                            lambda obs=obs, kw=kw_seq: kalman_smoother(obs, **kw), dyn_fn, 3, block=3)
            if dyn is not None:
                row["dynamax"] = dyn[0]
                row["dynamax_max_abs_diff_means"] = float(np.abs(dyn[1] - means).max())
                row["ratio_torch_shared_to_dynamax"] = row["torch_shared"] / dyn[0]
                if row["torch_per_sequence"] is not None:
                    row["ratio_torch_per_sequence_to_dynamax"] = row["torch_per_sequence"] / dyn[0]
            if T in args.pykalman_steps:
                pk = pykalman_timing(p, min(args.pykalman_seqs, args.batch))
                if pk is not None:
                    row["pykalman"] = pk[0]
                    k = pk[1].shape[0]
                    row["pykalman_max_abs_diff_means"] = float(np.abs(pk[1] - means[:k]).max())
                    row["speedup_torch_shared_vs_pykalman"] = pk[0] / row["torch_shared"]
        row.update({f"min_{k}": v for k, v in MIN_TIMES.items()})
        MIN_TIMES.clear()
        results[str(T)] = row
        tqdm.write(f"T={T}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items() if v is not None))
    environment["load_average_1_5_15min"]["end"] = list(os.getloadavg())
    environment["busy_processes"]["end"] = busy_processes()
    results["environment"] = environment
    results["notes"] = args.notes
    config = dict(vars(args), dtype="float32", devices=devices)
    path = save_results(args.name, config, results, module="bench_kalman", args=argv,
                        seed=args.seed, out_dir=output_dir(args.out_dir, args.quick))
    plot({k: v for k, v in results.items() if k.isdigit()}, path.with_suffix(".png"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
