"""The GPU path in one command: AMP training, evaluation, planning, DDP and the parallel Kalman smoother.

    python -m experiments.gpu_check                  # on a GPU machine: every stage, under 5 minutes
    python -m experiments.gpu_check --device cpu     # the CPU mode (what CI runs with --quick)

Each stage runs on the chosen device and records its time and its checks; a failing stage is
recorded with its error and the command exits 1 after the others have run.

* ``train_amp``: the pendulum KVAE trained with bf16 autocast (CUDA; on the CPU autocast is off),
  checking that the loss is finite and the parameters stay on the device.
* ``evaluate``: open-loop prediction on the test split (no video).
* ``plan``: decisions/s of the latent MPC agent at the PlaNet preset (H=12, J=1000, K=100, I=10)
  with 1 env and with 64 envs (CPU mode: 1 and 4 envs).
* ``ddp``: the same training under ``torchrun`` over all visible GPUs (NCCL), or 2 CPU processes
  (gloo) in CPU mode.
* ``kalman``: the parallel (associative-scan) smoother against the sequential one at T = 10,000
  (CPU mode: T = 1,000): agreement and times.

Writes ``gpu_check.json`` to ``--out-dir`` (default ``experiments/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from experiments._results import save_results

REPO = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _kvae(device: torch.device):
    from experiments.pendulum_swingup import kvae_config
    from worldmodels.kvae import KVAE

    torch.manual_seed(0)
    return KVAE(kvae_config()).to(device)


def _train_config(steps: int, device: torch.device, amp: bool):
    from worldmodels.training import TrainConfig

    return TrainConfig(steps=steps, batch_size=32, lr=3e-3, grad_clip=150.0, device=str(device), amp=amp,
                       amp_dtype="bfloat16", progress=False, tensorboard=False, checkpoint_every=None,
                       val_every=steps)


def stage_train_amp(device: torch.device, data: Path, out: Path, steps: int) -> dict[str, Any]:
    from worldmodels.data import SequenceDataset
    from worldmodels.training import Trainer

    model = _kvae(device)
    amp = device.type == "cuda"
    t0 = time.perf_counter()
    summary = Trainer(model, _train_config(steps, device, amp), out / "train_amp",
                      SequenceDataset(data, "train"), SequenceDataset(data, "valid"), overwrite=True).fit()
    _sync(device)
    seconds = time.perf_counter() - t0
    loss = summary["final_train"].get("loss", float("nan"))
    on_device = all(p.device.type == device.type for p in model.parameters())
    if not (torch.isfinite(torch.tensor(loss)) and on_device):
        raise RuntimeError(f"train_amp: loss {loss}, parameters on {device}: {on_device}")
    return {"amp": amp, "amp_dtype": "bfloat16" if amp else None, "steps": summary["steps"],
            "steps_per_s": summary["steps"] / seconds, "final_loss": loss, "val": summary["val"],
            "params_on_device": on_device, "checkpoint": str(out / "train_amp")}


def stage_evaluate(device: torch.device, data: Path, out: Path, checkpoint: str) -> dict[str, Any]:
    from worldmodels.evaluation import EvalConfig, evaluate
    from worldmodels.training import load

    model = load(checkpoint, device=device)
    cfg = EvalConfig(context=5, horizon=10, max_sequences=32, batch_size=32, imputation=None)
    result = evaluate(model, data, out / "eval", cfg, device=device, video=False)
    return {"overall": result["prediction"]["overall"], "n_sequences": result["prediction"]["n_sequences"]}


def stage_plan(device: torch.device, checkpoint: str, envs: list[int], repeats: int) -> dict[str, Any]:
    from experiments.bench_planning import time_agent
    from worldmodels.agents.reward import RewardHead, RewardHeadConfig
    from worldmodels.training import load

    model = load(checkpoint, device=device).eval()
    head = RewardHead(RewardHeadConfig(latent_dim=model.latent_dim, action_dim=model.action_dim)).to(device).eval()
    C, H, W = model.config.obs_shape
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    with torch.no_grad():
        for n in envs:
            r = time_agent(model, head, "planet", n, lambda k: torch.rand(k, C, H, W, generator=gen, device=device),
                           repeats, 8, device)
            rows.append({k: r[k] for k in ("num_envs", "horizon", "population", "iterations",
                                           "seconds_per_decision_median", "decisions_per_s", "latent_steps_per_s")})
    return {"preset": "planet", "rows": rows}


def stage_ddp(device: torch.device, data: Path, out: Path, steps: int) -> dict[str, Any]:
    nproc = torch.cuda.device_count() if device.type == "cuda" else 2
    run_dir = out / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "experiments.gpu_check", "--ddp-worker", str(run_dir), "--data", str(data),
           "--device", device.type, "--train-steps", str(steps)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"torchrun exited {r.returncode}: " + " | ".join(tail))
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary["world_size"] != nproc:
        raise RuntimeError(f"ddp: expected world_size {nproc}, got {summary['world_size']}")
    return {"backend": "nccl" if device.type == "cuda" else "gloo", "world_size": summary["world_size"],
            "steps": summary["steps"], "seconds": seconds, "final_loss": summary["final_train"].get("loss")}


def ddp_worker(run_dir: str, data: str, device: str, steps: int) -> None:
    """One rank of the ``ddp`` stage (started by torchrun; the trainer joins the process group)."""
    from worldmodels.data import SequenceDataset
    from worldmodels.training import Trainer

    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local}" if device == "cuda" else "cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    model = _kvae(dev)
    cfg = _train_config(steps, torch.device(device), amp=device == "cuda")
    Trainer(model, cfg, run_dir, SequenceDataset(data, "train"), overwrite=True).fit()


def stage_kalman(device: torch.device, T: int, batch: int = 8) -> dict[str, Any]:
    from worldmodels.kalman.api import kalman_smoother

    gen = torch.Generator(device="cpu").manual_seed(0)
    n, m = 4, 2
    A = (torch.eye(n) + 0.05 * torch.randn(n, n, generator=gen)) * 0.97
    C = torch.randn(m, n, generator=gen)
    obs = torch.randn(batch, T, m, generator=gen)
    args = dict(A=A, C=C, Q=0.1 * torch.eye(n), R=0.5 * torch.eye(m), mu0=torch.zeros(n), P0=torch.eye(n))
    obs = obs.to(device)
    args = {k: v.to(device) for k, v in args.items()}
    out, times = {}, {}
    for method in ("sequential", "parallel"):
        kalman_smoother(obs[:, :64], method=method, **args)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        out[method] = kalman_smoother(obs, method=method, **args)
        _sync(device)
        times[method] = time.perf_counter() - t0
    diff = (out["sequential"].mean - out["parallel"].mean).abs().max().item()
    scale = out["sequential"].mean.abs().max().item()
    if not diff <= 1e-3 * max(scale, 1.0):
        raise RuntimeError(f"kalman: parallel and sequential smoothers differ by {diff:.3g} (scale {scale:.3g})")
    return {"T": T, "batch": batch, "state_dim": n, "obs_dim": m, "sequential_s": times["sequential"],
            "parallel_s": times["parallel"], "speedup_parallel": times["sequential"] / times["parallel"],
            "max_abs_diff_means": diff}


def run_stage(name: str, fn: Callable[[], dict[str, Any]], results: dict[str, Any]) -> None:
    print(f"[gpu_check] {name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        rec = {"ok": True, **fn()}
    except Exception as e:  # recorded, so that the other stages still run and the JSON says what broke
        rec = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=5)}
    rec["seconds"] = time.perf_counter() - t0
    results[name] = rec
    print(f"[gpu_check] {name}: {'ok' if rec['ok'] else 'FAILED ' + rec['error']} ({rec['seconds']:.1f} s)",
          flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="smallest sizes (seconds; what CI runs)")
    p.add_argument("--out-dir", default=None, help="where gpu_check.json goes (default experiments/results)")
    p.add_argument("--work-dir", default="runs/gpu_check", help="dataset and run folders")
    p.add_argument("--train-steps", type=int, default=None)
    p.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.data, args.device, args.train_steps)
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: error: --device cuda: no CUDA device is visible to this torch build", file=sys.stderr)
        return 2
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    steps = args.train_steps or (20 if args.quick else 300 if gpu else 60)
    envs = [1, 64] if gpu else [1, 4]
    T = 10_000 if gpu else (1_000 if args.quick else 5_000)
    work = Path(args.work_dir)
    from worldmodels.envs.generate import generate_dataset

    data = work / "data"
    generate_dataset("pendulum_small", data, progress=False)
    results: dict[str, Any] = {"device": str(device), "mode": "gpu" if gpu else "cpu",
                               "gpu_name": torch.cuda.get_device_name(0) if gpu else None,
                               "gpu_count": torch.cuda.device_count() if gpu else 0}
    t0 = time.perf_counter()
    run_stage("train_amp", lambda: stage_train_amp(device, data, work, steps), results)
    ckpt = results["train_amp"].get("checkpoint")
    if ckpt:
        run_stage("evaluate", lambda: stage_evaluate(device, data, work, ckpt), results)
        run_stage("plan", lambda: stage_plan(device, ckpt, envs, 2 if args.quick else 5), results)
    run_stage("ddp", lambda: stage_ddp(device, data, work, max(steps // 2, 4)), results)
    run_stage("kalman", lambda: stage_kalman(device, T), results)
    results["total_s"] = time.perf_counter() - t0
    failed = [k for k, v in results.items() if isinstance(v, dict) and v.get("ok") is False]
    results["failed_stages"] = failed
    config = {"train_steps": steps, "plan_envs": envs, "kalman_T": T, "quick": args.quick}
    path = save_results("gpu_check", config, results, module="gpu_check",
                        args=sys.argv[1:] if argv is None else argv, out_dir=args.out_dir)
    print(f"[gpu_check] {len(failed)} failed stage(s) {failed}; {results['total_s']:.0f} s; wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
