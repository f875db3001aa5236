"""Speed of the environments and of dataset generation.

Measures (median of ``--repeats`` runs, wall-clock):

* generating the bouncing-ball training set (5000 sequences x 20 frames, compressed shards)
  with ``--workers`` processes, and with one process as the baseline (target: <= 30 s on 2 cores);
* pendulum ``step`` + 16x16 render on one core, frames/s (target: >= 10,000), against
  Gymnasium's ``Pendulum-v1`` step *without* rendering as the baseline;
* raw step + render frames/s of the bouncing ball and image navigation.

Run: ``python -m experiments.bench_envs`` (``--quick`` for a smoke run). Writes
``experiments/results/bench_envs.json`` and ``bench_envs.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bench_generation(n_train: int, workers: int, repeats: int) -> dict:
    from worldmodels.envs.generate import PRESETS, generate_dataset

    spec = dataclasses.replace(PRESETS["bouncing_ball"], splits={"train": n_train})
    tmp = Path(tempfile.mkdtemp(prefix="bench_envs_", dir=Path("runs").resolve() if Path("runs").is_dir() else None))

    def once(w):
        out = tmp / f"w{w}"
        shutil.rmtree(out, ignore_errors=True)
        generate_dataset(spec, out, num_workers=w, resume=False, progress=False)

    try:
        med, times = _median_time(lambda: once(workers), repeats)
        base, base_times = _median_time(lambda: once(1), max(1, repeats // 2))
        size = sum(f.stat().st_size for f in (tmp / f"w{workers}").rglob("*.npz"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    frames = n_train * spec.seq_len
    return {"sequences": n_train, "seq_len": spec.seq_len, "workers": workers,
            "median_s": med, "times_s": times, "frames_per_s": frames / med,
            "baseline_1_worker_median_s": base, "baseline_times_s": base_times,
            "speedup_vs_1_worker": base / med, "dataset_mb": size / 2**20}


def _step_rate(env, action, steps: int, repeats: int) -> tuple[float, list[float]]:
    env.reset(seed=0)

    def run():
        for _ in range(steps):
            env.step(action)

    med, times = _median_time(run, repeats)
    return steps / med, [steps / t for t in times]


def bench_steps(steps: int, repeats: int) -> dict:
    import gymnasium as gym

    from worldmodels import envs

    out = {}
    pend = envs.PixelPendulumEnv()
    u = np.array([0.5], np.float32)
    out["pendulum_step_render_fps"], out["pendulum_runs_fps"] = _step_rate(pend, u, steps, repeats)
    wrapped = gym.make("worldmodels/Pendulum-v0", max_episode_steps=10**9)
    out["pendulum_gym_make_wrapped_fps"], _ = _step_rate(wrapped, u, steps, repeats)
    ref = gym.make("Pendulum-v1").unwrapped
    out["baseline_pendulum_v1_state_only_fps"], _ = _step_rate(ref, u, steps, repeats)
    out["ratio_vs_pendulum_v1_state_only"] = (out["pendulum_step_render_fps"]
                                              / out["baseline_pendulum_v1_state_only_fps"])
    for size in (32, 64):
        out[f"pendulum_{size}px_step_render_fps"], _ = _step_rate(envs.PixelPendulumEnv(size=size), u, steps // 2,
                                                                  repeats)
    ball = envs.BouncingBallEnv()
    out["bouncing_ball_step_render_fps"], _ = _step_rate(ball, np.zeros(2, np.float32), steps // 2, repeats)
    nav = envs.ImageNavigationEnv()
    out["image_navigation_step_fps"], _ = _step_rate(nav, 3, steps, repeats)
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = results["steps"]
    names = ["pendulum 16px\n(step+render)", "Pendulum-v1\n(no render)", "pendulum 64px", "bouncing ball",
             "image nav"]
    vals = [s["pendulum_step_render_fps"], s["baseline_pendulum_v1_state_only_fps"], s["pendulum_64px_step_render_fps"],
            s["bouncing_ball_step_render_fps"], s["image_navigation_step_fps"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    a.bar(names, vals, color=["C0", "C7", "C0", "C1", "C2"])
    a.axhline(10_000, ls="--", c="k", lw=1, label="target 10k frames/s")
    a.set_ylabel("frames / s (one core)")
    a.legend()
    a.tick_params(axis="x", labelsize=8)
    g = results["generation"]
    b.bar([f"{g['workers']} workers", "1 worker"], [g["median_s"], g["baseline_1_worker_median_s"]], color=["C0", "C7"])
    b.axhline(30, ls="--", c="k", lw=1, label="target 30 s")
    b.set_ylabel("seconds")
    b.set_title(f"bouncing ball {g['sequences']} x {g['seq_len']} generation")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--sequences", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quick:
        args.sequences, args.steps, args.repeats, args.workers = 40, 500, 1, 1
    steps = bench_steps(args.steps, max(args.repeats, 5) if not args.quick else 1)
    print(f"pendulum step+render: {steps['pendulum_step_render_fps']:.0f} frames/s (target >= 10000); "
          f"Pendulum-v1 state-only: {steps['baseline_pendulum_v1_state_only_fps']:.0f} steps/s "
          f"(ratio {steps['ratio_vs_pendulum_v1_state_only']:.2f})")
    print(f"bouncing ball step+render: {steps['bouncing_ball_step_render_fps']:.0f} frames/s; "
          f"image navigation: {steps['image_navigation_step_fps']:.0f} steps/s")
    gen = bench_generation(args.sequences, args.workers, args.repeats)
    print(f"bouncing ball {gen['sequences']}x{gen['seq_len']} with {gen['workers']} workers: "
          f"{gen['median_s']:.1f} s median (target <= 30 s), 1 worker: {gen['baseline_1_worker_median_s']:.1f} s, "
          f"speed-up {gen['speedup_vs_1_worker']:.2f}x")
    results = {"steps": steps, "generation": gen,
               "targets": {"generation_s_max": 30, "pendulum_fps_min": 10_000},
               "meets_targets": {"generation": gen["median_s"] <= 30,
                                 "pendulum": steps["pendulum_step_render_fps"] >= 10_000},
               "note": "shared 2-core machine; other processes were running, so timings are noisy"}
    from experiments._results import output_dir, save_results

    path = save_results("bench_envs", vars(args), results, module="bench_envs", args=argv,
                        out_dir=output_dir(args.out_dir, args.quick))
    plot(results, path.with_suffix(".png"))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
