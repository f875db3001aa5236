"""Benchmark: DND reads/s, forward and forward+backward, against one faiss flat index per memory.

Run: ``python -m experiments.bench_dnd [--repeats 7] [--threads 1]``. Writes
``experiments/results/bench_dnd.json`` and ``bench_dnd.png``.

Every method reads ``k`` neighbours of ``Q`` queries in each of ``B`` memories of ``N`` keys
(``D``-dim keys, 16-dim values) and returns the kernel-weighted mean value; methods differ only
in the neighbour selection (the differentiable recomputation is shared):

* ``torch``: the default backend (batched exact cdist + topk, no extra dependency);
* ``auto``: kd-tree for large CPU reads, torch otherwise (``dnd.auto_backend``);
* ``kdtree``: one scipy cKDTree per memory (optional backend);
* ``faiss``: one ``faiss.IndexFlatL2`` per memory (the usual nearest-neighbour baseline);
* ``faiss_search_only``: faiss index build + search alone, without the differentiable read.

Timings are medians over ``--repeats`` runs after one warm-up; ratios are against ``faiss``
measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from experiments._results import output_dir, save_results
from worldmodels.dnd import DNDMemory, dnd_empty, dnd_read, dnd_write

CONFIGS = [(16, 256, 32, 2, 5), (16, 256, 256, 2, 5), (64, 4096, 256, 2, 5)]
VALUE_DIM = 16


def _available(backend: str) -> bool:
    try:
        if backend == "faiss" or backend == "faiss_search_only":
            import faiss  # noqa: F401
        elif backend == "kdtree":
            import scipy.spatial  # noqa: F401
        return True
    except ImportError:
        return False


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_config(B: int, N: int, Q: int, D: int, k: int, repeats: int, device: str,
                 seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    keys = torch.rand(B, N, D, generator=g).mul(10).to(device).requires_grad_()
    values = torch.randn(B, N, VALUE_DIM, generator=g).to(device).requires_grad_()
    queries = torch.rand(B, Q, D, generator=g).mul(10).to(device).requires_grad_()
    filled = dnd_write(dnd_empty(B, N, D, VALUE_DIM, device=device), keys.detach(), values.detach())
    # leaves as the memory's tensors, so only the read is in the timed graph
    mem = DNDMemory(keys, values, filled.stamps, filled.count)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict = {}
    for backend in ("torch", "auto", "kdtree", "faiss", "faiss_search_only"):
        if not _available(backend) or (backend != "torch" and device != "cpu"):
            continue
        if backend == "faiss_search_only":
            from worldmodels.dnd_index import index_select

            def fwd():
                index_select(keys.detach(), mem.size, queries.detach(), k, "faiss")
            res = {"forward_s": _median_time(fwd, repeats)}
        else:
            def fwd(backend=backend):
                with torch.no_grad():
                    dnd_read(mem, queries, k, backend=backend).mean_value()
                sync()

            def fwd_bwd(backend=backend):
                r = dnd_read(mem, queries, k, backend=backend).mean_value()
                r.square().sum().backward()
                sync()
            res = {"forward_s": _median_time(fwd, repeats),
                   "forward_backward_s": _median_time(fwd_bwd, repeats)}
        for key in list(res):
            res[key.replace("_s", "_reads_per_s")] = B * Q / res[key]
        out[backend] = res
    if "faiss" in out:
        for res in out.values():
            res["speedup_vs_faiss_forward"] = out["faiss"]["forward_s"] / res["forward_s"]
            if "forward_backward_s" in res:
                res["speedup_vs_faiss_forward_backward"] = (
                    out["faiss"]["forward_backward_s"] / res["forward_backward_s"])
    return out


def plot(results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    labels = [r["label"] for r in results]
    backends = [b for b in ("torch", "auto", "kdtree", "faiss") if b in results[0]["methods"]]
    for ax, key, title in zip(axes, ("forward_reads_per_s", "forward_backward_reads_per_s"),
                              ("forward", "forward + backward")):
        width = 0.8 / len(backends)
        for i, b in enumerate(backends):
            ax.bar([j + i * width for j in range(len(labels))],
                   [r["methods"][b][key] for r in results], width, label=b)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("reads / s")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true", help="the smallest configuration, one repeat (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats = 1
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        print("faiss-cpu not installed (pip install faiss-cpu): faiss baseline skipped")
    results = []
    for (B, N, Q, D, k) in (CONFIGS[:1] if args.quick else CONFIGS):
        label = f"B={B},N={N},Q={Q},D={D},k={k}"
        methods = bench_config(B, N, Q, D, k, args.repeats, args.device)
        results.append({"label": label, "B": B, "N": N, "Q": Q, "D": D, "k": k,
                        "methods": methods})
        for name, r in methods.items():
            line = " ".join(f"{key}={val:.4g}" for key, val in r.items())
            print(f"{label:32s} {name:18s} {line}")
    out = save_results("bench_dnd", vars(args), {"configs": results, "value_dim": VALUE_DIM},
                       module="bench_dnd", args=argv,
                       out_dir=output_dir(args.out_dir, args.quick))
    plot(results, (out.parent / "bench_dnd.png"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
