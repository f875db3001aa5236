"""Long-horizon prediction in image navigation with the GTM-SM (thesis 7.4.1, 7.7.1), under the
evaluation protocol: several training seeds, trained baselines at the same budget, held-out worlds.

One command, from scratch::

    python -m experiments.gtmsm_navigation            # --quick: a smoke run in seconds

For every training seed (``--seeds 0 1 2``) it trains, on the same data, with the same number of
updates, batch and learning-rate schedule:

* ``gtmsm``: the thesis GTM-SM (``state_inference="prior"``: states from the actions, the wall gate
  of eq. 7.3 learned through the ELBO);
* ``gtmsm_frames``: the named variant ``state_inference="frames_posterior"`` (an approximate
  posterior over states that sees whether the frame changed, with its KL term);
* ``vae_rnn``: the VAE-RNN (an LSTM prior over frame codes and actions), trained on the same
  ``tau + train_predict`` frames of each sequence;
* ``ssm_learned_prior``: a state-space model without memory: the GTM-SM's VAE and state-space model
  with a learned prior ``p(z_t | s_t)`` (an MLP of the state) in place of the DND memory;

and scores them on the held-out test worlds: frames ``[0, tau)`` are shown, the next
``test_predict`` (256) are predicted from the actions alone. References: the mean training frame
(the best constant prediction) and the reconstruction floor (the thesis GTM-SM's VAE decoding its
own codes of the true frames). Reported per seed and as a mean with a 95 % interval over seeds:
the mean per-frame MSE over the predicted steps, and the R^2 of the best affine map from the
learned states to the true grid positions (memorised and predicted states). Training never sees
the true positions.

One run folder per seed and model (``<run-dir>/seed_<s>/<model>``), config-hashed and resumed
after a kill (`experiments.protocol.prepare_run_dir`). Writes
``experiments/results/gtmsm_navigation.json`` and PNGs next to it (prediction error per step,
states, a strip of true vs predicted frames), and a video under the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from experiments._results import output_dir, save_results
from experiments.protocol import (
    Protocol,
    SeedSet,
    budget_record,
    mean_ci,
    paired_claim,
    prepare_run_dir,
    summarize_curves,
)
from worldmodels.base import Batch, WorldModel
from worldmodels.gtmsm import GTMSM, GTMSMConfig
from worldmodels.vae_rnn import VAERNN, VAERNNConfig

ROOT = Path(__file__).resolve().parents[1]

#: the thesis' budget (7.7.1): 50 000 updates at batch 16, lr 1e-3 annealed linearly to 5e-5
PAPER_BUDGET = {"updates": 50000, "batch_size": 16}
#: trained models, in the order they are trained and reported
MODELS = ("gtmsm", "gtmsm_frames", "vae_rnn", "ssm_learned_prior")
LABELS = {"gtmsm": "GTM-SM (thesis)", "gtmsm_frames": "GTM-SM, frames posterior (variant)",
          "vae_rnn": "VAE-RNN", "ssm_learned_prior": "SSM without memory, learned prior",
          "mean_frame": "mean training frame", "floor": "reconstruction floor"}
QUICK = {"preset": "image_navigation_small", "tau": 64, "train_predict": 16, "test_predict": 32,
         "steps": 3, "max_test": 6, "batch_size": 4, "no_video": True, "timing_repeats": 1}


class ShardSequences(Dataset):
    """A dataset split held in memory as uint8; items as in ``SequenceDataset`` plus ``states``
    (true grid positions, for evaluation only). ``length`` keeps the first steps of each sequence."""

    def __init__(self, root: str | Path, split: str, length: int | None = None) -> None:
        root = Path(root)
        manifest = json.loads((root / "manifest.json").read_text())
        shards = manifest["splits"][split]["shards"]
        arrays = [np.load(root / s["file"]) for s in shards]
        cut = slice(None, length)
        self.obs = np.concatenate([a["obs"][:, cut] for a in arrays])  # [N, T, H, W, C] uint8
        self.actions = np.concatenate([a["actions"][:, cut] for a in arrays]).astype(np.float32)
        self.states = np.concatenate([a["states"][:, cut] for a in arrays]).astype(np.float32)

    def __len__(self) -> int:
        return len(self.obs)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        obs = torch.from_numpy(self.obs[i]).permute(0, 3, 1, 2).float() / 255.0
        return {"obs": obs, "actions": torch.from_numpy(self.actions[i]),
                "mask": torch.ones(obs.shape[0]), "states": torch.from_numpy(self.states[i])}

    def batch(self, idx: Sequence[int] | range) -> Batch:
        """Sequences ``idx`` as one `Batch` (``obs [B, T, C, H, W]`` in [0, 1], ``states [B, T, 2]``)."""
        items = [self[i] for i in idx]
        return Batch(obs=torch.stack([x["obs"] for x in items]),
                     actions=torch.stack([x["actions"] for x in items]),
                     mask=torch.stack([x["mask"] for x in items]),
                     states=torch.stack([x["states"] for x in items]))

    def mean_frame(self, max_sequences: int = 500) -> torch.Tensor:
        """The mean frame ``[C, H, W]`` in [0, 1] of the first ``max_sequences`` sequences."""
        frames = self.obs[:max_sequences].reshape(-1, *self.obs.shape[2:])  # [N, H, W, C] uint8
        return torch.from_numpy(frames.mean(0, dtype=np.float64)).float().permute(2, 0, 1) / 255.0


def dataset_spec(preset: str, obstacles: bool):
    """The preset's spec, or its obstacle variant (thesis 7.10.1) under ``<preset>_obstacles``."""
    from worldmodels.envs.generate import get_spec

    spec = get_spec(preset)
    if obstacles:
        spec = dataclasses.replace(spec, name=f"{spec.name}_obstacles",
                                   env_kwargs={**spec.env_kwargs, "obstacles": True},
                                   description=f"{spec.description} (with obstacles)")
    return spec


def ensure_dataset(spec, data_dir: Path) -> Path:
    """Generate ``spec`` into ``data_dir`` unless its manifest exists; returns ``data_dir``."""
    if not (data_dir / "manifest.json").exists():
        from worldmodels.envs.generate import generate_dataset

        print(f"generating {spec.name} into {data_dir}", flush=True)
        generate_dataset(spec, data_dir)
    return data_dir


def gtmsm_config(args: argparse.Namespace, obs_shape: tuple[int, ...], action_dim: int) -> GTMSMConfig:
    """The thesis GTM-SM of this run (``--landmark``/``--no-gate`` change it for every GTM-SM)."""
    r = args.transition_std if args.transition_std is not None else (0.05 if args.landmark else 1e-3)
    return GTMSMConfig(tau=args.tau, predict_steps=args.train_predict, encoder=args.encoder,
                       landmark=args.landmark, transition_std=r, obs_std=args.obs_std,
                       state_inference="prior", gate=not args.no_gate,
                       obs_shape=(int(obs_shape[0]), int(obs_shape[1]), int(obs_shape[2])),
                       action_dim=action_dim)


def build_model(name: str, base: GTMSMConfig, vae_rnn_hidden: int) -> WorldModel:
    """One of `MODELS`, sized like the thesis GTM-SM ``base`` (same frames, code size, VAE nets)."""
    if name == "gtmsm":
        return GTMSM(base)
    if name == "gtmsm_frames":
        return GTMSM(dataclasses.replace(base, state_inference="frames_posterior"))
    if name == "ssm_learned_prior":
        return GTMSM(dataclasses.replace(base, memory=False, landmark=False, memoryless_prior="learned"))
    if name == "vae_rnn":
        return VAERNN(VAERNNConfig(obs_shape=base.obs_shape, action_dim=base.action_dim, latent_dim=base.z_dim,
                                   hidden_dim=vae_rnn_hidden, encoder=base.encoder, mlp_hidden=base.hidden,
                                   likelihood="gaussian"))
    raise ValueError(f"name: expected one of {MODELS}, got {name!r}")


def model_config(model: WorldModel) -> dict[str, Any]:
    """The configuration dataclass of one of `MODELS` as a dict (what its run folder's hash covers)."""
    if not isinstance(model, (GTMSM, VAERNN)):
        raise TypeError(f"model: expected a GTMSM or a VAERNN, got {type(model).__name__}")
    return dataclasses.asdict(model.config)


def train_model(model: WorldModel, name: str, seed: int, args: argparse.Namespace, run_dir: Path,
                train_set: Dataset, dataset: str) -> dict[str, Any]:
    """Train ``model`` (or resume it) in ``run_dir`` with Adam, lr annealed linearly from ``args.lr``
    to ``args.final_lr`` over ``args.steps`` updates. The folder is config-hashed: a folder trained
    under another configuration is an error unless ``args.retrain``. Returns steps and wall time
    (seconds, summed over resumed sessions)."""
    from worldmodels.training import TrainConfig, Trainer

    tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, schedule="linear",
                     final_lr=args.final_lr, anneal_steps=max(1, args.steps), grad_clip=args.grad_clip,
                     seed=seed, device=args.device, log_every=25,
                     checkpoint_every=min(500, max(100, args.steps // 5)), tensorboard=False,
                     progress=not args.no_progress)
    prepare_run_dir(run_dir, {"model": name, "model_config": model_config(model),
                              "dataset": dataset, "steps": args.steps, "batch_size": args.batch_size,
                              "lr": args.lr, "final_lr": args.final_lr, "grad_clip": args.grad_clip,
                              "seed": seed}, retrain=args.retrain)
    t0 = time.time()
    summary = Trainer(model, tc, run_dir, train_set, resume="auto").fit()
    log = run_dir / "train_wall_s.json"
    total = (json.loads(log.read_text())["wall_s"] if log.exists() else 0.0) + time.time() - t0
    log.write_text(json.dumps({"wall_s": total}))
    return {"steps": args.steps, "wall_s": total,
            "summary": {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}


def trained_models(args: argparse.Namespace, seed: int, names: Sequence[str], train_set: Dataset,
                   base: GTMSMConfig, dataset: str) -> tuple[dict[str, WorldModel], dict[str, dict]]:
    """Train (or load) the models ``names`` of training seed ``seed`` in
    ``<run-dir>/seed_<seed>/<name>``; returns them in eval mode on ``args.device`` and their
    training records."""
    models, training = {}, {}
    for name in names:
        torch.manual_seed(seed)
        model = build_model(name, base, args.vae_rnn_hidden)
        training[name] = train_model(model, name, seed, args, Path(args.run_dir) / f"seed_{seed}" / name,
                                     train_set, dataset)
        models[name] = model.eval().to(args.device)
    return models, training


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


@torch.no_grad()
def predict_frames(model: WorldModel, obs: torch.Tensor, actions: torch.Tensor, tau: int
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Frames ``[B, T - tau, C, H, W]`` predicted from ``obs/actions [B, T, ...]`` after showing
    the first ``tau``; for a GTM-SM also its memorised states ``[B, tau, S]`` (posterior means)
    and predicted states ``[B, T - tau, S]`` (else None)."""
    if not isinstance(model, GTMSM):
        return model.predict(obs, actions, tau), None, None
    belief = model.observe(obs[:, :tau], actions[:, :tau])
    lat = model.imagine(belief, actions[:, tau - 1:-1].unsqueeze(1))[:, 0]
    codes = model.encode(obs[:, :tau])[0] if model.landmark is not None else None
    path = model.posterior_states(obs[:, :tau], actions[:, :tau], codes=codes, num_memorised=tau, sample=False)
    return model.decode(lat), path.mean, lat[..., :model.config.state_dim]


@torch.no_grad()
def evaluate_seed(models: Mapping[str, WorldModel], test: ShardSequences, tau: int, horizon: int,
                  max_test: int | None, batch_size: int, device: str, mean_frame: torch.Tensor
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Scores of one training seed's models on the first ``max_test`` test worlds (all if None).

    Returns ``(scores, examples)``: ``scores["mse"][name]`` the mean per-frame MSE over the
    ``horizon`` predicted steps and all worlds, ``scores["per_step"][name]`` its curve over the
    horizon, ``scores["r2_memorised_states"]`` / ``["r2_predicted_states"]`` per GTM-SM-type
    model; the references ``mean_frame`` (``[C, H, W]``) and ``floor`` (reconstructions by the
    first model's VAE, a GTM-SM) are scored alike. ``examples``: the first batch's frames and
    states, for plots.
    """
    n = len(test) if max_test is None else min(len(test), max_test)
    floor_model = next(m for m in models.values() if isinstance(m, GTMSM))
    sq: dict[str, list[np.ndarray]] = {}
    states: dict[str, dict[str, list[np.ndarray]]] = {}
    true_mem, true_pred = [], []
    examples: dict[str, np.ndarray] = {}
    for i0 in range(0, n, batch_size):
        b = test.batch(range(i0, min(n, i0 + batch_size))).to(device)
        assert b.states is not None
        obs, actions = b.obs[:, :tau + horizon], b.actions[:, :tau + horizon]
        truth = obs[:, tau:]
        preds = {"mean_frame": mean_frame.to(truth).expand_as(truth), "floor": floor_model.reconstruct(truth)}
        for name, model in models.items():
            preds[name], mem, pred = predict_frames(model, obs, actions, tau)
            if mem is not None and pred is not None:
                st = states.setdefault(name, {"mem": [], "pred": []})
                st["mem"].append(mem.cpu().numpy())
                st["pred"].append(pred.cpu().numpy())
        for name, p in preds.items():
            sq.setdefault(name, []).append(((p - truth) ** 2).mean((-3, -2, -1)).cpu().numpy())
        true_mem.append(b.states[:, :tau].cpu().numpy())
        true_pred.append(b.states[:, tau:tau + horizon].cpu().numpy())
        if not examples:
            examples = {"truth": truth.cpu().numpy(), **{k: v.cpu().numpy() for k, v in preds.items()},
                        "mem_true": true_mem[-1], "pred_true": true_pred[-1]}
            for name, st in states.items():
                examples[f"{name}/mem_states"], examples[f"{name}/pred_states"] = st["mem"][0], st["pred"][0]
    per = {k: np.concatenate(v) for k, v in sq.items()}  # [N, horizon]
    tm, tp = np.concatenate(true_mem).reshape(-1, 2), np.concatenate(true_pred).reshape(-1, 2)
    scores: dict[str, Any] = {"n_sequences": n,
                              "mse": {k: float(v.mean()) for k, v in per.items()},
                              "per_step": {k: v.mean(0).tolist() for k, v in per.items()},
                              "r2_memorised_states": {}, "r2_predicted_states": {},
                              "memorised_position_error_cells": {}}
    for name, st in states.items():
        S = st["mem"][0].shape[-1]
        r2, err = affine_fit(np.concatenate(st["mem"]).reshape(-1, S), tm)
        scores["r2_memorised_states"][name] = r2
        scores["memorised_position_error_cells"][name] = float(err.mean())
        scores["r2_predicted_states"][name] = r2_affine(np.concatenate(st["pred"]).reshape(-1, S), tp)
    return scores, examples


def step_time(model: WorldModel, batch: Batch, repeats: int = 5) -> float:
    """Median seconds of one optimiser step (forward, backward, Adam) of a copy of ``model``."""
    import copy

    m = copy.deepcopy(model).train()
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        out = m.loss(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def summarize_seeds(per_seed: Mapping[int, Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Headline, secondary metrics and claims from the per-seed scores (seeds in order)."""
    seeds = list(per_seed)
    mse = {k: [per_seed[s]["mse"][k] for s in seeds] for k in names}
    headline = {"metric": f"mean per-frame MSE over the {len(per_seed[seeds[0]]['per_step'][names[0]])} "
                          "predicted frames, held-out test worlds",
                "lower_is_better": True,
                "per_method": {LABELS[k]: mean_ci(v) for k, v in mse.items()}}
    state_models = [k for k in names if k in per_seed[seeds[0]]["r2_memorised_states"]]
    secondary = [{"metric": f"R^2 of the affine map from {what} states to the true positions "
                            f"(higher is better)",
                  "per_method": {LABELS[k]: mean_ci([per_seed[s][key][k] for s in seeds]) for k in state_models}}
                 for what, key in (("memorised", "r2_memorised_states"), ("predicted", "r2_predicted_states"))]
    claims = []
    if "gtmsm" in mse:
        g = mse["gtmsm"]
        for other in ("mean_frame", "vae_rnn", "ssm_learned_prior"):
            if other in mse:
                claims.append(paired_claim(f"GTM-SM (thesis) predicts with a lower MSE than the {LABELS[other]}",
                                           g, mse[other]))
        claims.append(paired_claim("GTM-SM (thesis) predicts within 1.5x the reconstruction floor",
                                   g, [1.5 * f for f in mse["floor"]]))
        claims.append(paired_claim("the mean training frame's MSE is at least 3x GTM-SM's (thesis)",
                                   [3.0 * v for v in g], mse["mean_frame"]))
        if "gtmsm_frames" in mse:
            claims.append(paired_claim("the frames-posterior variant predicts with a lower MSE than the thesis "
                                       "GTM-SM", mse["gtmsm_frames"], g))
    return {"headline": headline, "secondary": secondary, "claims": claims,
            "per_step": summarize_curves([per_seed[s]["per_step"] for s in seeds])}


def plots(result: Mapping[str, Any], examples: Mapping[str, np.ndarray], tau: int, stem: Path) -> list[str]:
    """Per-step MSE over seeds (``<stem>.png``), the states of one test world
    (``<stem>_states.png``, figure 7.2c) and true vs predicted frames (``<stem>_frames.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, s in result["per_step"].items():
        h = np.arange(1, len(s["mean"]) + 1)
        ax.plot(h, s["mean"], label=LABELS.get(k, k))
        if s["low"][0] is not None:
            ax.fill_between(h, s["low"], s["high"], alpha=0.2)
    ax.set_xlabel("prediction step after the memorisation phase")
    ax.set_ylabel("per-frame MSE (mean over training seeds)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(f"image navigation: held-out worlds, tau = {tau}")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)
    plt.close(fig)
    files.append(str(stem.with_suffix(".png")))

    if "gtmsm/mem_states" in examples:  # figure 7.2c: inferred states of one test world
        ms, mt = examples["gtmsm/mem_states"][0], examples["mem_true"][0]
        ps, pt = examples["gtmsm/pred_states"][0], examples["pred_true"][0]
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        axes[0].scatter(mt[:, 1], -mt[:, 0], c=np.arange(len(mt)), cmap="viridis", s=12)
        axes[0].set_title("true positions (memorisation)")
        axes[1].scatter(ms[:, 0], ms[:, 1], c=mt[:, 0] * 9 + mt[:, 1], cmap="tab20", s=14)
        axes[1].set_title("GTM-SM states s_t (colour = true cell)")
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
    cols = [c for c in list(range(0, 8)) + list(range(max(8, H - 48), max(8, H - 48) + 8)) if c < H]
    rows = [("true", examples["truth"][0])] + [(LABELS[k], examples[k][0]) for k in (*MODELS, "floor")
                                                if k in examples]
    h, w = examples["truth"].shape[-2:]
    pad = 1
    mosaic = np.ones((len(rows) * (h + pad) + pad, len(cols) * (w + pad) + pad, 3))
    for r, (_, clip) in enumerate(rows):
        for c, t in enumerate(cols):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            mosaic[y:y + h, x:x + w] = np.clip(clip[t].transpose(1, 2, 0), 0, 1)
    fig, ax = plt.subplots(figsize=(len(cols) * 0.6 + 2.0, len(rows) * 0.6 + 0.6))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))], [n for n, _ in rows], fontsize=7)
    ax.set_xticks([pad + c * (w + pad) + w / 2 for c in range(len(cols))], [str(tau + t + 1) for t in cols],
                  fontsize=6)
    ax.set_xlabel("time step t (prediction phase)", fontsize=7)
    fig.tight_layout()
    path = stem.parent / f"{stem.name}_frames.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    files.append(str(path))
    return files


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated subset of {','.join(MODELS)} (gtmsm is required)")
    p.add_argument("--preset", default="image_navigation")
    p.add_argument("--data-dir", default=None, help="default runs/data/<preset>")
    p.add_argument("--run-dir", default=None, help="one sub-folder per training seed and model "
                                                   "(default runs/gtmsm_navigation[_quick])")
    p.add_argument("--tau", type=int, default=256, help="memorised frames")
    p.add_argument("--train-predict", type=int, default=32, help="predicted frames per training sequence")
    p.add_argument("--test-predict", type=int, default=256, help="predicted frames at test time")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000,
                   help="updates of every model (the thesis: 50 000; this default fits ~75 min on one CPU thread)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--final-lr", type=float, default=5e-5, help="lr annealed linearly to this over --steps")
    p.add_argument("--grad-clip", type=float, default=10.0)
    p.add_argument("--encoder", default="mlp", choices=["mlp", "conv"])
    p.add_argument("--obs-std", type=float, default=0.1, help="std of the GTM-SM's Gaussian frame likelihood")
    p.add_argument("--vae-rnn-hidden", type=int, default=128, help="LSTM units of the VAE-RNN")
    p.add_argument("--obstacles", action="store_true", help="obstacle variant of the env (7.10.1)")
    p.add_argument("--landmark", action="store_true", help="landmark inference network (7.10) in every GTM-SM")
    p.add_argument("--transition-std", type=float, default=None, help="r (default 1e-3; 0.05 with --landmark)")
    p.add_argument("--no-gate", action="store_true", help="no wall gate (7.10.1 with displacements)")
    p.add_argument("--max-test", type=int, default=None, help="test worlds scored (default: all)")
    p.add_argument("--eval-batch", type=int, default=25)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="gtmsm_navigation", help="results name")
    p.add_argument("--out-dir", "--results-dir", dest="out_dir", default=None,
                   help="results folder (default experiments/results; --quick: runs/quick_results)")
    p.add_argument("--quick", action="store_true", help="the small navigation set, a few updates (a smoke run)")
    p.add_argument("--no-video", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--timing-repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
    args.run_dir = args.run_dir or str(ROOT / "runs" / ("gtmsm_navigation_quick" if args.quick else "gtmsm_navigation"))
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown or "gtmsm" not in names or len(set(names)) != len(names):
        p.error(f"--models: expected distinct names among {','.join(MODELS)} including gtmsm, got {args.models}")
    args.models = ",".join(k for k in MODELS if k in names)  # training and report order
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct training seeds, got {args.seeds}")
    return args


def load_data(args: argparse.Namespace) -> tuple[Any, ShardSequences, ShardSequences]:
    """(spec, train split cut to ``tau + train_predict`` steps, full test split); generates the
    dataset if missing and checks that test sequences hold ``tau + test_predict`` steps."""
    spec = dataset_spec(args.preset, args.obstacles)
    data_dir = ensure_dataset(spec, Path(args.data_dir or ROOT / "runs" / "data" / spec.name))
    train_set = ShardSequences(data_dir, "train", length=args.tau + args.train_predict)
    test_set = ShardSequences(data_dir, "test")
    if test_set.obs.shape[1] < args.tau + args.test_predict:
        raise ValueError(f"--test-predict: sequences of {test_set.obs.shape[1]} steps are shorter than tau + "
                         f"test_predict = {args.tau + args.test_predict}")
    return spec, train_set, test_set


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.time()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    spec, train_set, test_set = load_data(args)
    base = gtmsm_config(args, train_set[0]["obs"].shape[1:], train_set.actions.shape[-1])
    names = args.models.split(",")
    mean_frame = train_set.mean_frame()
    per_seed, training, examples = {}, {}, {}
    for seed in args.seeds:
        models, training[seed] = trained_models(args, seed, names, train_set, base, spec.name)
        per_seed[seed], ex = evaluate_seed(models, test_set, args.tau, args.test_predict, args.max_test,
                                           args.eval_batch, args.device, mean_frame)
        print(f"seed {seed} MSE:", {k: round(v, 5) for k, v in per_seed[seed]["mse"].items()}, flush=True)
        if seed == args.seeds[0]:
            examples = ex
            timing = train_set.batch(range(min(args.batch_size, len(train_set)))).to(args.device)
            step_s = {k: step_time(m, timing, args.timing_repeats) for k, m in models.items()}
    n_test = per_seed[args.seeds[0]]["n_sequences"]
    res: dict[str, Any] = summarize_seeds(per_seed, [*names, "mean_frame", "floor"])
    budget = budget_record(args.steps, args.batch_size, PAPER_BUDGET["updates"], PAPER_BUDGET["batch_size"],
                           "every model trained with the same number of updates, batch, sequences and "
                           "learning-rate schedule as the GTM-SM")
    res.update({
        "per_seed": {str(s): per_seed[s] for s in args.seeds},
        "training": {str(s): training[s] for s in args.seeds},
        "budget": budget,
        "budget_note": (f"{args.steps} updates at batch {args.batch_size} per model and training seed, lr "
                        f"{args.lr:g} annealed linearly to {args.final_lr:g} (the thesis: 50 000 updates, lr 1e-3); "
                        f"trained models: {', '.join(LABELS[k] for k in names)}"
                        + ("" if "gtmsm_frames" in names else "; the frames-posterior variant was not run")),
        "train_step_s": {"batch": args.batch_size, "T": args.tau + args.train_predict, "device": args.device,
                         "threads": torch.get_num_threads(), "median_s": step_s},
        "models": {k: LABELS[k] for k in names},
        "n_test_worlds": n_test,
        "wall_seconds": time.time() - t_start,  # this invocation (resumed training counts only its part)
    })
    protocol = Protocol(tuple(args.seeds), SeedSet.span(f"{spec.name}/test sequence", 0, n_test),
                        SeedSet.span(f"{spec.name}/valid sequence", 0, spec.splits.get("valid", 0)),
                        notes="no setting is selected by this experiment (hyper-parameters are the script's "
                              "defaults); the valid worlds are reserved for tuning and unused")
    out_dir = output_dir(args.out_dir, args.quick)
    files = plots(res, examples, args.tau, out_dir / args.name)
    res["artifacts"] = {"plots": [Path(f).name for f in files]}
    out = save_results(args.name, {**vars(args), "model": dataclasses.asdict(base)}, res,
                       module="gtmsm_navigation", args=argv, protocol=protocol, out_dir=out_dir)
    if not args.no_video:
        write_prediction_video(examples, names, Path(args.run_dir) / f"seed_{args.seeds[0]}" / "prediction.mp4")
    head = res["headline"]["per_method"]
    print("mean MSE over seeds:", {k: round(v["mean"], 5) for k, v in head.items()})
    for c in res["claims"]:
        print(f"  {c['statement']}: {c['verdict']}")
    print(f"wrote {out} and {', '.join(files)}", flush=True)
    return 0


def write_prediction_video(examples: Mapping[str, np.ndarray], names: Sequence[str], path: Path) -> None:
    """True frames beside each model's predictions for 4 test worlds (skipped without ffmpeg)."""
    try:
        from worldmodels.video import tile_clips, write_video

        rows = [[examples["truth"][i], *(examples[k][i] for k in names)]
                for i in range(min(4, len(examples["truth"])))]
        print(f"video: {write_video(tile_clips(rows), path, fps=8, scale=4)}")
    except Exception as e:  # video encoding is optional (ffmpeg)
        print(f"video skipped: {e}")


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
