"""Benchmark: one KVAE training epoch on the 5000 x 20 bouncing-ball set vs the VAE alone.

Paper architecture (conv encoder + sub-pixel decoder, a=2, z=4, K=3, LSTM alpha network),
batch 32, Adam. Times a training update (forward, backward, optimiser step) of the KVAE and of
the same VAE with a fixed N(0, I) prior, interleaved in the same run, takes medians over
``--repeats`` and reports the epoch time (median update x 5000/32 updates, or a measured full
epoch with ``--full-epoch``), frames/s, the measured FLOPs per frame and the fraction of the
matmul peak measured in the same run (``worldmodels.flops.matmul_peak_gflops``, a 1024^3 product).
One command:

    python -m experiments.bench_kvae_epoch --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from experiments._results import output_dir, save_results
from experiments.kvae_common import SequenceTensors, ensure_dataset
from worldmodels.flops import matmul_peak_gflops
from worldmodels.kvae import KVAE, KVAEConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="bouncing_ball")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--full-epoch", action="store_true", help="also time a real epoch of each model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--kalman-method", default="sequential")
    p.add_argument("--out-name", default="bench_kvae_epoch")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    p.add_argument("--quick", action="store_true", help="small dataset, batch 8, 1 repeat (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.dataset, args.batch_size, args.repeats, args.warmup = "bouncing_ball_small", 8, 1, 0
        args.full_epoch = False
    return args


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_update(model, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        model.loss(batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(fc.get_total_flops())


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # denormals made trained-model updates ~3x slower on CPU
    dev = args.device
    root = ensure_dataset(args.dataset)
    data = SequenceTensors(root, "train", binarize=True)
    n_seq = len(data)
    B = args.batch_size
    steps_per_epoch = n_seq / B
    torch.manual_seed(0)
    models = {
        "kvae": KVAE(KVAEConfig(obs_shape=data.obs_shape, action_dim=data.action_dim,
                                use_controls=False, kalman_method=args.kalman_method)).to(dev),
        "vae": KVAE(KVAEConfig(obs_shape=data.obs_shape, action_dim=data.action_dim,
                               use_controls=False, prior="gaussian")).to(dev),
    }
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-4) for k, m in models.items()}
    g = torch.Generator().manual_seed(0)
    batches = [data.batch(torch.randint(0, n_seq, (B,), generator=g)).to(dev)
               for _ in range(args.repeats + args.warmup)]
    T = batches[0].obs.shape[1]

    def update(name, batch):
        m, opt = models[name], opts[name]
        _sync(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        m.loss(batch).loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 150.0)
        opt.step()
        _sync(dev)
        return time.perf_counter() - t0

    times = {k: [] for k in models}
    for i, batch in enumerate(batches):
        for name in models:  # interleaved: both see the same machine load
            t = update(name, batch)
            if i >= args.warmup:
                times[name].append(t)
        print(i, {k: round(v[-1], 3) for k, v in times.items() if v}, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = {k: flops_per_update(m, batches[0]) for k, m in models.items()}
    peak = matmul_peak_gflops(1024, 1024, 1024, device=dev)
    frames = B * T
    res = {
        "update_time_s": {k: {"median": med[k], "all": times[k]} for k in models},
        "epoch_time_s_from_median": {k: med[k] * steps_per_epoch for k in models},
        "frames_per_s": {k: frames / med[k] for k in models},
        "kvae_over_vae": med["kvae"] / med["vae"] - 1.0,
        "flops_per_update": flops,
        "mflop_per_frame": {k: flops[k] / frames / 1e6 for k in models},
        "achieved_gflops": {k: flops[k] / med[k] / 1e9 for k in models},
        "measured_matmul_peak_gflops": peak,
        "fraction_of_measured_peak": {k: flops[k] / med[k] / 1e9 / peak for k in models},
        "issue_floor_epoch_s": 125.0, "issue_target_epoch_s": 190.0, "paper_titan_x_epoch_s": 55.0,
        "steps_per_epoch": steps_per_epoch, "batch_size": B, "seq_len": T, "device": dev,
    }
    if args.full_epoch:
        full = {}
        perm = torch.randperm(n_seq, generator=g)
        for name in models:
            t0 = time.perf_counter()
            for s in range(int(steps_per_epoch)):
                update(name, data.batch(perm[s * B:(s + 1) * B]).to(dev))
            full[name] = time.perf_counter() - t0
        res["full_epoch_s"] = full
    print({k: res[k] for k in ("epoch_time_s_from_median", "kvae_over_vae", "mflop_per_frame",
                               "achieved_gflops", "measured_matmul_peak_gflops")}, flush=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = ["vae", "kvae"]
    ax.bar(names, [res["epoch_time_s_from_median"][k] for k in names], color=["tab:gray", "tab:blue"])
    floor_s = res["mflop_per_frame"]["kvae"] * 1e6 * 5000 * 20 / (res["measured_matmul_peak_gflops"] * 1e9)
    ax.axhline(floor_s, color="k", ls="--", lw=1,
               label=f"compute floor {floor_s:.0f} s ({res['measured_matmul_peak_gflops']:.0f} GFLOP/s, this run)")
    ax.axhline(55, color="g", ls="-.", lw=1, label="paper, Titan X: 55 s")
    ax.set_ylabel("epoch time (s), 5000 x 20 frames")
    ax.set_title(f"KVAE vs VAE alone on {dev}: +{100 * res['kvae_over_vae']:.0f}%")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir = output_dir(args.out_dir, args.quick)
    png = out_dir / f"{args.out_name}.png"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    res["artifacts"] = {"plot": png.name}
    save_results(args.out_name, vars(args), res, module="bench_kvae_epoch", args=argv, out_dir=out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
