"""Long-horizon prediction in image navigation with the GTM-SM (thesis 7.4.1, 7.7.1).

One command: ``python -m experiments.gtmsm_navigation`` (the paper-size run: tau = 256
memorised steps, training predicts 32, testing predicts 256 (T = 512), batch 16, lr 1e-3
annealed linearly to 5e-5 over 50 000 updates). ``--reduced`` trains far fewer steps (what a
2-core CPU affords in minutes); every number in the JSON says which configuration made it.

It generates the ``image_navigation`` dataset into ``runs/data`` if missing, trains the GTM-SM
and a memoryless model (same SSM and VAE, standard-normal prior) with
``worldmodels.training.Trainer``, and reports on the held-out test worlds:

* per-step MSE over the 256 predicted frames (mean and 95 % interval of the mean over
  sequences) for GTM-SM, for the same VAE decoding its own reconstructions of the true frames
  (the floor), for the mean training frame (the best constant prediction: the no-memory
  reference) and for the memoryless model (it decodes the prior mean z = 0, a constant frame
  worse than the mean frame); plotted against the horizon. Trained baselines without memory
  plug in through ``evaluate(references=...)``;
* R^2 of the best affine map from the learned states to the true grid positions (memorised
  states, inferred from frames and actions, and predicted states, from actions only);
* the figure-7.2c style plot of inferred states, a strip of true vs predicted frames, and a
  video of true vs predicted frames over the 256 steps (``runs/gtmsm_navigation/``);
* the time of one training step at batch 16, T = 288 on this machine.

Training never sees the true positions (``states`` are used only for the R^2 and plots).
Writes ``experiments/results/gtmsm_navigation{,_reduced}.json`` and PNGs next to it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from experiments._results import output_dir, save_results
from experiments.protocol import Protocol, SeedSet, prepare_run_dir
from worldmodels.base import Batch
from worldmodels.evaluation import summarize
from worldmodels.gtmsm import GTMSM, GTMSMConfig

ROOT = Path(__file__).resolve().parents[1]

PAPER = dict(steps=50000, baseline_steps=5000, lr=1e-3, final_lr=5e-5, anneal_steps=50000,
             max_test=None)
REDUCED = dict(steps=1500, baseline_steps=300, lr=2e-3, final_lr=5e-5, anneal_steps=1500,
               max_test=64)
QUICK = dict(reduced=True, preset="image_navigation_small", tau=64, train_predict=16, test_predict=32, steps=3,
             baseline_steps=2, max_test=6, batch_size=4, no_video=True, timing_repeats=1)


class ShardSequences(Dataset):
    """A dataset split (contract 1) held in memory as uint8; items as in ``SequenceDataset``."""

    def __init__(self, root: str | Path, split: str) -> None:
        root = Path(root)
        manifest = json.loads((root / "manifest.json").read_text())
        shards = manifest["splits"][split]["shards"]
        arrays = [np.load(root / s["file"]) for s in shards]
        self.obs = np.concatenate([a["obs"] for a in arrays])  # [N, T, H, W, C] uint8
        self.actions = np.concatenate([a["actions"] for a in arrays]).astype(np.float32)
        self.states = np.concatenate([a["states"] for a in arrays]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        obs = torch.from_numpy(self.obs[i]).permute(0, 3, 1, 2).float() / 255.0
        return {"obs": obs, "actions": torch.from_numpy(self.actions[i]),
                "mask": torch.ones(obs.shape[0]), "states": torch.from_numpy(self.states[i])}

    def batch(self, idx) -> Batch:
        items = [self[i] for i in idx]
        return Batch(obs=torch.stack([x["obs"] for x in items]),
                     actions=torch.stack([x["actions"] for x in items]),
                     mask=torch.stack([x["mask"] for x in items]),
                     states=torch.stack([x["states"] for x in items]))


def dataset_spec(preset: str, obstacles: bool):
    """The preset's spec, or its obstacle variant (thesis 7.10.1) under ``<preset>_obstacles``."""
    import dataclasses

    from worldmodels.envs.generate import get_spec

    spec = get_spec(preset)
    if obstacles:
        spec = dataclasses.replace(spec, name=f"{spec.name}_obstacles",
                                   env_kwargs={**spec.env_kwargs, "obstacles": True},
                                   description=f"{spec.description} (with obstacles)")
    return spec


def ensure_dataset(spec, data_dir: Path) -> Path:
    if not (data_dir / "manifest.json").exists():
        from worldmodels.envs.generate import generate_dataset

        print(f"generating {spec.name} into {data_dir}")
        generate_dataset(spec, data_dir)
    return data_dir


def train(model: GTMSM, steps: int, args, run_dir: Path, train_set: Dataset) -> dict:
    from worldmodels.training import TrainConfig, Trainer

    anneal = min(args.anneal_steps, steps) if args.anneal_steps else steps
    tc = TrainConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, schedule="linear",
                     final_lr=args.final_lr, anneal_steps=max(1, anneal), grad_clip=args.grad_clip,
                     seed=args.seed, device=args.device, log_every=25,
                     checkpoint_every=min(500, max(100, steps // 5)), tensorboard=False)
    prepare_run_dir(run_dir, {"model": vars(model.config), "steps": steps, "batch_size": args.batch_size,
                              "lr": args.lr, "final_lr": args.final_lr, "anneal_steps": anneal,
                              "grad_clip": args.grad_clip, "seed": args.seed, "preset": args.preset,
                              "obstacles": args.obstacles, "init_from": args.init_from},
                    retrain=args.retrain)
    t0 = time.time()
    summary = Trainer(model, tc, run_dir, train_set, resume="auto").fit()
    # training time summed over resumed sessions (a finished run re-evaluates in seconds)
    log = Path(run_dir) / "train_wall_s.json"
    total = json.loads(log.read_text())["wall_s"] if log.exists() else 0.0
    total += time.time() - t0
    log.write_text(json.dumps({"wall_s": total}))
    return {"steps": steps, "wall_s": total, "wall_s_this_session": time.time() - t0,
            "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}


def warm_start(model: GTMSM, source: str | Path, run_dir: Path) -> dict:
    """Copy the parameters and buffers of a checkpoint (or run folder) whose names and shapes
    match ``model`` (e.g. VAE and ``M`` of a run without obstacles into a landmark model without
    gate); the rest keeps its initialisation. Skipped when ``run_dir`` already holds a
    checkpoint (the run resumes instead). Returns what was copied and skipped."""
    from worldmodels.training import read_checkpoint

    ckpt = read_checkpoint(source)
    info = {"path": str(source), "steps": int(ckpt["step"])}
    if (run_dir / "checkpoints" / "last.pt").exists():
        return {**info, "resumed_instead": True}
    own = model.state_dict()
    keep = {k: v for k, v in ckpt["model"].items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    return {**info, "copied": sorted(keep), "not_in_checkpoint": sorted(set(own) - set(keep)),
            "not_used": sorted(set(ckpt["model"]) - set(keep))}


def _ci(values: np.ndarray) -> list[float]:
    s = summarize(values)
    return [s["ci_low"][0], s["ci_high"][0]]


def affine_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares affine map ``x [N, S] -> y [N, 2]``: ``(R^2 pooled over both outputs,
    per-row Euclidean error [N] in the units of y)``."""
    X = np.concatenate([x, np.ones((len(x), 1))], 1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    res = X @ coef - y
    return float(1.0 - (res ** 2).sum() / ((y - y.mean(0)) ** 2).sum()), np.sqrt((res ** 2).sum(-1))


def r2_affine(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares affine map ``x [N, S] -> y [N, 2]``, pooled over both outputs."""
    return affine_fit(x, y)[0]


def ratio_ci(num: np.ndarray, den: np.ndarray, n_boot: int = 2000, seed: int = 0) -> list[float]:
    """95 % paired-bootstrap interval (over sequences) of ``mean(num) / mean(den)``; ``[N]`` each."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(num), (n_boot, len(num)))
    r = num[idx].mean(1) / den[idx].mean(1)
    return [float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))]


def blocked_steps(actions: np.ndarray, states: np.ndarray) -> np.ndarray:
    """``[N, T]`` bool: step t was reached by a move that did not change the position (a
    wall or an obstacle); ``actions [N, T, A]`` one-hot (last index "stay"), ``states [N, T, 2]``."""
    a = actions.argmax(-1)[:, :-1]
    same = (states[:, 1:] == states[:, :-1]).all(-1)
    out = np.zeros(states.shape[:2], dtype=bool)
    out[:, 1:] = same & (a != actions.shape[-1] - 1)
    return out


#: A reference predictor: ``(obs [B, T, C, H, W], actions [B, T, A], tau) -> frames [B, T - tau, C, H, W]``
#: predicted for the steps after the ``tau`` memorised ones. Trained baselines without a memory (the
#: VAE-RNN, a state-space model with a learned prior) plug in here through ``evaluate(references=...)``.
Predictor = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def evaluate(gtmsm: GTMSM, baseline: GTMSM, test: ShardSequences, tau: int, horizon: int,
             max_test: int | None, batch_size: int, device: str,
             mean_frame: torch.Tensor | None = None, references: Mapping[str, Predictor] | None = None) -> dict:
    """Per-step MSE of GTM-SM, the floor, the memoryless model (``baseline``: the same SSM and VAE
    with a standard-normal prior; its predictions decode the prior mean, a constant frame), the
    mean training frame ``[C, H, W]`` if given (the best constant prediction: the reference a model
    without memory must beat) and each predictor of ``references``; R^2 and position errors of the
    inferred states (with and without landmark inference)."""
    n = len(test) if max_test is None else min(len(test), max_test)
    references = dict(references or {})
    mse = {"gtmsm": [], "floor": [], "baseline": [], **{k: [] for k in references}}
    if mean_frame is not None:
        mse["mean_frame"] = []
    mem_states, mem_free, mem_true, mem_blocked, pred_states, pred_true = [], [], [], [], [], []
    examples = None
    lm = gtmsm.landmark is not None
    for i0 in range(0, n, batch_size):
        b = test.batch(range(i0, min(n, i0 + batch_size))).to(device)
        obs, actions = b.obs[:, :tau + horizon], b.actions[:, :tau + horizon]
        truth = obs[:, tau:]
        belief = gtmsm.observe(obs[:, :tau], actions[:, :tau])
        lat = gtmsm.imagine(belief, actions[:, tau - 1:tau + horizon - 1].unsqueeze(1))[:, 0]
        pred = gtmsm.decode(lat)
        floor = gtmsm.reconstruct(truth)
        base = baseline.predict(obs, actions, tau)
        preds = {"gtmsm": pred, "floor": floor, "baseline": base}
        if mean_frame is not None:
            preds["mean_frame"] = mean_frame.to(truth).expand_as(truth)
        for name, predict in references.items():
            preds[name] = predict(obs, actions, tau)
        for name, p in preds.items():
            mse[name].append(((p - truth) ** 2).mean((-3, -2, -1)).cpu().numpy())
        moved, known = gtmsm.frame_moved(obs[:, :tau])
        codes = gtmsm.encode(obs[:, :tau])[0] if lm else None
        path = gtmsm.infer_states(actions[:, :tau], moved, known, codes=codes, num_memorised=tau,
                                  sample=False)
        mem_states.append(path.mean.cpu().numpy())
        if lm:
            mem_free.append(gtmsm.infer_states(actions[:, :tau], moved, known,
                                               sample=False).mean.cpu().numpy())
        mem_true.append(b.states[:, :tau].cpu().numpy())
        mem_blocked.append(blocked_steps(actions[:, :tau].cpu().numpy(), mem_true[-1]))
        pred_states.append(lat[..., :gtmsm.config.state_dim].cpu().numpy())
        pred_true.append(b.states[:, tau:tau + horizon].cpu().numpy())
        if examples is None:
            examples = {"truth": truth.cpu().numpy(), "gtmsm": pred.cpu().numpy(),
                        "baseline": base.cpu().numpy(), "floor": floor.cpu().numpy(),
                        "mem_states": path.mean.cpu().numpy(), "pred_states": pred_states[-1],
                        "mem_true": mem_true[-1], "pred_true": pred_true[-1]}
    per = {k: np.concatenate(v) for k, v in mse.items()}  # [N, horizon]
    S = gtmsm.config.state_dim
    true_m = np.concatenate(mem_true).reshape(-1, 2)
    blocked = np.concatenate(mem_blocked).reshape(-1)
    r2_mem, err_mem = affine_fit(np.concatenate(mem_states).reshape(-1, S), true_m)
    out = {"n_sequences": n,
           "per_step": {k: summarize(v) for k, v in per.items()},
           "mean_mse": {k: float(v.mean()) for k, v in per.items()},
           "mean_mse_ci95": {k: _ci(v.mean(1, keepdims=True)) for k, v in per.items()},
           "r2_memorised_states": r2_mem,
           "r2_predicted_states": r2_affine(np.concatenate(pred_states).reshape(-1, S),
                                            np.concatenate(pred_true).reshape(-1, 2)),
           "memorised_position_error_cells": {
               "all_steps": float(err_mem.mean()),
               "after_blocked_moves": float(err_mem[blocked].mean()) if blocked.any() else None,
               "fraction_blocked_steps": float(blocked.mean())}}
    if lm:
        r2_free, err_free = affine_fit(np.concatenate(mem_free).reshape(-1, S), true_m)
        out["without_landmark"] = {
            "r2_memorised_states": r2_free,
            "memorised_position_error_cells": {
                "all_steps": float(err_free.mean()),
                "after_blocked_moves": float(err_free[blocked].mean()) if blocked.any() else None}}
    m = out["mean_mse"]
    seq = {k: v.mean(1) for k, v in per.items()}  # per-sequence mean over the horizon
    out["ratio_gtmsm_to_floor"] = m["gtmsm"] / m["floor"]
    out["ratio_gtmsm_to_floor_ci95"] = ratio_ci(seq["gtmsm"], seq["floor"])
    out["ratio_baseline_to_gtmsm"] = m["baseline"] / m["gtmsm"]
    out["ratio_baseline_to_gtmsm_ci95"] = ratio_ci(seq["baseline"], seq["gtmsm"])
    if mean_frame is not None:
        out["ratio_mean_frame_to_gtmsm"] = m["mean_frame"] / m["gtmsm"]
        out["ratio_mean_frame_to_gtmsm_ci95"] = ratio_ci(seq["mean_frame"], seq["gtmsm"])
    out["target_gtmsm_le_1.5x_floor"] = bool(out["ratio_gtmsm_to_floor"] <= 1.5)
    if mean_frame is not None:  # the no-memory reference is the mean frame, not the constant z = 0 decode
        out["target_mean_frame_ge_3x_gtmsm"] = bool(out["ratio_mean_frame_to_gtmsm"] >= 3.0)
    out["target_baseline_ge_3x_gtmsm"] = bool(out["ratio_baseline_to_gtmsm"] >= 3.0)
    return out, examples


def step_time(config: GTMSMConfig, device: str, batch: Batch, repeats: int = 5) -> float:
    """Median seconds of one optimiser step (forward, backward, Adam) at the batch's size."""
    torch.manual_seed(0)
    m = GTMSM(config).to(device)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = m.loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        sync()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def plots(result: dict, examples: dict, tau: int, stem: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    labels = {"gtmsm": "GTM-SM", "floor": "VAE reconstruction (floor)",
              "baseline": "memoryless model (decodes z = 0)", "mean_frame": "mean training frame"}
    for k, lab in labels.items():
        if k not in result["per_step"]:
            continue
        s = result["per_step"][k]
        h = np.arange(1, len(s["mean"]) + 1)
        ax.plot(h, s["mean"], label=lab)
        ax.fill_between(h, s["ci_low"], s["ci_high"], alpha=0.25)
    ax.set_xlabel("prediction step after the memorisation phase")
    ax.set_ylabel("per-frame MSE")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"image navigation: {result['n_sequences']} test worlds, tau = {tau}")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
    files.append(str(stem.with_suffix(".png")))

    # figure 7.2c: inferred states of one test sequence, coloured by the true position
    ms, mt = examples["mem_states"][0], examples["mem_true"][0]
    ps, pt = examples["pred_states"][0], examples["pred_true"][0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    axes[0].scatter(mt[:, 1], -mt[:, 0], c=np.arange(len(mt)), cmap="viridis", s=12)
    axes[0].set_title("true positions (memorisation)")
    code = mt[:, 0] * 9 + mt[:, 1]
    axes[1].scatter(ms[:, 0], ms[:, 1], c=code, cmap="tab20", s=14)
    axes[1].set_title("inferred states s_t (colour = true cell)")
    axes[2].scatter(ms[:, 0], ms[:, 1], c="lightgrey", s=10, label="memorised")
    axes[2].scatter(ps[:, 0], ps[:, 1], c=pt[:, 0] * 9 + pt[:, 1], cmap="tab20", s=14, marker="x",
                    label="predicted")
    axes[2].set_title("predicted states (from actions only)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    path = stem.parent / f"{stem.name}_states.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(str(path))

    # figure 7.2d: true vs predicted frames at the start and the end of the prediction phase
    H = examples["truth"].shape[1]
    cols = list(range(0, 8)) + list(range(max(8, H - 48), max(8, H - 48) + 8))
    cols = [c for c in cols if c < H]
    rows = [("true", examples["truth"][0]), ("GTM-SM", examples["gtmsm"][0]),
            ("floor", examples["floor"][0]), ("no memory", examples["baseline"][0])]
    h, w = examples["truth"].shape[-2:]
    pad = 1
    mosaic = np.ones((len(rows) * (h + pad) + pad, len(cols) * (w + pad) + pad, 3))
    for r, (_, clip) in enumerate(rows):
        for c, t in enumerate(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            mosaic[y:y + h, x:x + w] = np.clip(clip[t].transpose(1, 2, 0), 0, 1)
    fig, ax = plt.subplots(figsize=(len(cols) * 0.6 + 1.0, len(rows) * 0.6 + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))], [n for n, _ in rows],
                  fontsize=7)
    ax.set_xticks([pad + c * (w + pad) + w / 2 for c in range(len(cols))],
                  [str(tau + t + 1) for t in cols], fontsize=6)
    ax.set_xlabel("time step t (prediction phase)", fontsize=7)
    fig.tight_layout()
    path = stem.parent / f"{stem.name}_frames.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(str(path))
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reduced", action="store_true", help="short training (see REDUCED)")
    p.add_argument("--preset", default="image_navigation")
    p.add_argument("--data-dir", default=None, help="default runs/data/<preset>")
    p.add_argument("--run-dir", default=None, help="default runs/gtmsm_navigation[_reduced]")
    p.add_argument("--tau", type=int, default=256)
    p.add_argument("--train-predict", type=int, default=32)
    p.add_argument("--test-predict", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--baseline-steps", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--final-lr", type=float, default=None)
    p.add_argument("--anneal-steps", type=int, default=None)
    p.add_argument("--grad-clip", type=float, default=10.0)
    p.add_argument("--encoder", default="mlp", choices=["mlp", "conv"])
    p.add_argument("--obs-std", type=float, default=0.1,
                   help="std of the Gaussian frame likelihood (lower: sharper VAE, larger KL)")
    p.add_argument("--obstacles", action="store_true", help="obstacle variant of the env (7.10.1)")
    p.add_argument("--landmark", action="store_true", help="landmark inference network (7.10)")
    p.add_argument("--transition-std", type=float, default=None,
                   help="r (default 1e-3; with --landmark 0.05, so corrections are affordable)")
    p.add_argument("--state-inference", choices=("prior", "frames_posterior"), default="prior",
                   help="prior: the thesis model (states from the actions, the wall gate learned through the "
                        "ELBO); frames_posterior: an approximate posterior over states that also sees the frames, "
                        "with its KL term (a variant, reported beside the thesis model)")
    p.add_argument("--no-blocked-from-frames", action="store_true",
                   help="accepted for older commands: the same as --state-inference prior")
    p.add_argument("--no-gate", action="store_true",
                   help="no wall gate: the prior always moves by M a (7.10.1 with displacements)")
    p.add_argument("--init-from", default=None,
                   help="start GTM-SM from the weights of this checkpoint or run folder (a "
                        "finished shorter run: warm start; its updates add to --steps)")
    p.add_argument("--max-test", type=int, default=-1, help="-1: preset default, 0: all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--name", default=None, help="results name (default by configuration)")
    p.add_argument("--results-dir", "--out-dir", dest="results_dir", default=None,
                   help="default experiments/results")
    p.add_argument("--quick", action="store_true",
                   help="the small navigation set, a few updates, 6 test worlds (a smoke run)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--timing-repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.no_blocked_from_frames and args.state_inference != "prior":
        p.error("--no-blocked-from-frames means --state-inference prior")
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    base = REDUCED if args.reduced else PAPER
    for k, v in base.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    if args.max_test == -1:
        args.max_test = base["max_test"]
    elif args.max_test == 0:
        args.max_test = None
    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.name or ("gtmsm_navigation_quick" if args.quick else
                         "gtmsm_navigation_reduced" if args.reduced else "gtmsm_navigation")
    run_dir = Path(args.run_dir or ROOT / "runs" / name)
    spec = dataset_spec(args.preset, args.obstacles)
    data_dir = ensure_dataset(spec, Path(args.data_dir or ROOT / "runs" / "data" / spec.name))
    train_set = ShardSequences(data_dir, "train")
    test_set = ShardSequences(data_dir, "test")
    T_data = train_set.obs.shape[1]
    if T_data < args.tau + args.test_predict:
        raise ValueError(f"--test-predict: sequences of {T_data} steps are shorter than tau + "
                         f"test_predict = {args.tau + args.test_predict}")

    r = args.transition_std if args.transition_std is not None else (0.05 if args.landmark else 1e-3)
    cfg = GTMSMConfig(tau=args.tau, predict_steps=args.train_predict, encoder=args.encoder,
                      landmark=args.landmark, transition_std=r, obs_std=args.obs_std,
                      state_inference=args.state_inference, gate=not args.no_gate,
                      obs_shape=tuple(int(s) for s in train_set[0]["obs"].shape[1:]),
                      action_dim=train_set.actions.shape[-1])
    torch.manual_seed(args.seed)
    gtmsm = GTMSM(cfg)
    baseline = GTMSM(GTMSMConfig(**{**vars(cfg), "memory": False, "landmark": False}))
    init_info = warm_start(gtmsm, args.init_from, run_dir / "gtmsm") if args.init_from else None
    training = {"gtmsm": train(gtmsm, args.steps, args, run_dir / "gtmsm", train_set),
                "baseline": train(baseline, args.baseline_steps, args, run_dir / "baseline", train_set)}
    if init_info is not None:
        training["gtmsm"]["init_from"] = init_info
    gtmsm.eval().to(args.device)
    baseline.eval().to(args.device)
    # mean training frame: the best constant prediction (what no memory can beat on average)
    frames = train_set.obs[:500].reshape(-1, *train_set.obs.shape[2:])  # [N, H, W, C] uint8
    mean_frame = torch.from_numpy(frames.mean(0, dtype=np.float64)).float().permute(2, 0, 1) / 255.0
    result, examples = evaluate(gtmsm, baseline, test_set, args.tau, args.test_predict,
                                args.max_test, 32, args.device, mean_frame=mean_frame)
    result["training"] = training
    result["M"] = gtmsm.transition.M.weight.detach().cpu().tolist()
    timing_batch = train_set.batch(range(args.batch_size)).to(args.device)
    timing_batch = Batch(timing_batch.obs[:, :args.tau + args.train_predict],
                         timing_batch.actions[:, :args.tau + args.train_predict],
                         timing_batch.mask[:, :args.tau + args.train_predict])
    result["train_step_s"] = {"batch": args.batch_size, "T": args.tau + args.train_predict,
                              "device": args.device, "threads": torch.get_num_threads(),
                              "median_s": step_time(cfg, args.device, timing_batch,
                                                    args.timing_repeats)}

    protocol = Protocol((args.seed,), SeedSet.span(f"{spec.name}/test sequence", 0, result["n_sequences"]),
                        SeedSet.span(f"{spec.name}/valid sequence", 0, spec.splits.get("valid", 0)),
                        notes="one training seed; no setting is selected on the test worlds")
    out = save_results(name, {**vars(args), "model": vars(cfg)}, result,
                       module="gtmsm_navigation", args=argv, seed=args.seed, protocol=protocol,
                       out_dir=output_dir(args.results_dir, args.quick))
    result_files = plots(result, examples, args.tau, out.with_suffix(""))
    try:
        if args.no_video:
            raise RuntimeError("--no-video")
        from worldmodels.video import tile_clips, write_video

        rows = [[examples["truth"][i], examples["gtmsm"][i], examples["baseline"][i],
                 np.abs(examples["truth"][i] - examples["gtmsm"][i])] for i in range(4)]
        video = write_video(tile_clips(rows), run_dir / "prediction.mp4", fps=8, scale=4)
        print(f"video: {video}")
    except Exception as e:  # video encoding is optional (ffmpeg)
        print(f"video skipped: {e}")
    m = result["mean_mse"]
    if "without_landmark" in result:
        print(f"inferred states with / without landmarks: R^2 {result['r2_memorised_states']:.3f} / "
              f"{result['without_landmark']['r2_memorised_states']:.3f}, position error after "
              f"blocked moves {result['memorised_position_error_cells']['after_blocked_moves']} / "
              f"{result['without_landmark']['memorised_position_error_cells']['after_blocked_moves']} cells")
    print(f"mean MSE over {args.test_predict} predicted steps: GTM-SM {m['gtmsm']:.5f}, "
          f"floor {m['floor']:.5f}, mean frame {m.get('mean_frame', float('nan')):.5f}, "
          f"memoryless z = 0 decode {m['baseline']:.5f}; "
          f"GTM-SM/floor {result['ratio_gtmsm_to_floor']:.2f}, "
          f"baseline/GTM-SM {result['ratio_baseline_to_gtmsm']:.2f}; "
          f"R^2 states memorised {result['r2_memorised_states']:.3f}, "
          f"predicted {result['r2_predicted_states']:.3f}; "
          f"step {result['train_step_s']['median_s']:.3f} s")
    print(f"wrote {out} and {', '.join(result_files)}")
    return 0


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
