"""Bouncing-ball imputation (thesis figure 6.3a/b/c): KVAE smoothing vs filtering vs VAE-RNN.

Score: fraction of wrongly guessed pixels (frames binarised at 0.5) over the unobserved frames.
Random drops: first 4 frames observed, later frames dropped with p = 0.1 .. 1.0. Consecutive
drops: n = 1 .. 15 frames missing after the first 4. One command:

    python -m experiments.kvae_imputation --steps 600 --train-seqs 5000

writes ``experiments/results/kvae_imputation.json`` and ``.png`` plots, and the checkpoints,
videos and copies of the plots into ``--run-dir``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments._results import RESULTS_DIR, save_results
from experiments.kvae_common import (SequenceTensors, ensure_dataset, evaluate_elbo, gap_mask,
                                     random_mask, train, wrong_pixel_fraction,
                                     wrong_pixels_per_frame)
from worldmodels.baselines import CodeRNN, CodeRNNConfig
from worldmodels.kvae import KVAE, KVAEConfig
from worldmodels.vae_rnn import VAERNN, VAERNNConfig
from worldmodels.video import tile_clips, write_video

PAPER = {  # read off figure 6.3 (see shared/references/kvae-reference-code.md)
    "random_smooth": {0.1: 0.006, 0.5: 0.0075, 0.8: 0.013, 0.9: 0.019, 1.0: 0.027},
    "random_filter": {0.1: 0.0075, 0.5: 0.010, 0.8: 0.016, 0.9: 0.0215, 1.0: 0.027},
    "gap_smooth": {1: 0.006, 5: 0.010, 9: 0.015, 15: 0.023},
    "gap_filter": {1: 0.0085, 5: 0.015, 9: 0.020, 15: 0.026},
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="bouncing_ball")
    p.add_argument("--train-seqs", type=int, default=5000)
    p.add_argument("--test-seqs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=12500, help="KVAE updates (paper: 80 epochs = 12500)")
    p.add_argument("--baseline-steps", type=int, default=None, help="VAE-RNN updates (default: --steps)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.007)
    p.add_argument("--decay-every", type=int, default=None,
                   help="updates between x0.85 decays (default: 20 epochs)")
    p.add_argument("--freeze-dynamics-epochs", type=int, default=None,
                   help="epochs the alpha network stays frozen (default: 1/8 of training, >= 1)")
    p.add_argument("--recon-weight", type=float, default=0.3)
    p.add_argument("--vae-warmup", type=int, default=0,
                   help="first KVAE updates with the fixed N(0, I) prior (plain VAE)")
    p.add_argument("--run-dir", default="runs/kvae_imputation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--vaernn-init", choices=("torch", "xavier"), default="xavier",
                   help="VAE-RNN initialisation; with PyTorch's defaults it collapsed to the mean frame at lr 0.007 "
                        "(experiments.vaernn_init_check)")
    p.add_argument("--skip-baseline", action="store_true", help="no VAE-RNN and no AE-RNN")
    p.add_argument("--aernn-steps", type=int, default=3000,
                   help="updates of the AE-RNN (an LSTM over the trained KVAE's frozen codes, section "
                        "6.5.1), trained in the scoring run; cheap: no convolutions are trained")
    p.add_argument("--resume", action="store_true",
                   help="continue each model from its last checkpoint in --run-dir (extends a run to --steps)")
    p.add_argument("--train-only", choices=("kvae", "vaernn"), default=None,
                   help="train (or resume) only this model and exit without scoring; lets the two models "
                        "train in parallel processes, then a --resume run scores both")
    p.add_argument("--out-name", default="kvae_imputation")
    return p.parse_args(argv)


@torch.no_grad()
def score(models: dict, data: SequenceTensors, masks: torch.Tensor, batch: int = 100) -> dict[str, float]:
    """Wrong-pixel fraction of each (model, method) on ``data`` with per-sequence ``masks``."""
    out = {}
    for name, (model, method) in models.items():
        wrong, miss = 0.0, 0.0
        for s in range(0, len(data), batch):
            b = data.batch(slice(s, s + batch))
            m = masks[s:s + batch]
            pred = model.impute(b.obs, b.actions, m, method=method)
            n_miss = float((1 - m).sum())
            wrong += wrong_pixel_fraction(pred, b.obs, m) * n_miss
            miss += n_miss
        out[name] = wrong / max(miss, 1.0)
    return out


class Reconstruction:
    """Not an imputer: a model's VAE decoding the encoder means of the true frames, the floor
    its imputations can reach (the error of its auto-encoder alone)."""

    def __init__(self, encoder, decode) -> None:
        self.encoder, self.decode_fn = encoder, decode

    def impute(self, obs, actions, mask, method="filter"):
        return self.decode_fn(self.encoder(obs)[0])


def bounce_frames(states: torch.Tensor) -> torch.Tensor:
    """``[N, T]`` bool: the ball hit a wall between frames t-1 and t (a velocity component
    changed sign; ``states [N, T, 4]`` = x, y, vx, vy)."""
    v = states[..., 2:4]
    flip = (torch.sign(v[:, 1:]) != torch.sign(v[:, :-1])).any(-1)
    return torch.cat([torch.zeros_like(flip[:, :1]), flip], 1)


@torch.no_grad()
def error_near_bounces(models: dict, data: SequenceTensors, masks: torch.Tensor,
                       batch: int = 100) -> dict[str, dict[str, float]]:
    """Wrong-pixel fraction of each (model, method) over the unobserved frames, split into the
    frames right after a wall contact (``bounce``) and the rest (``free``)."""
    bounce = bounce_frames(data.states)
    miss = 1.0 - masks
    out = {}
    for name, (model, method) in models.items():
        wrong = []
        for s in range(0, len(data), batch):
            b = data.batch(slice(s, s + batch))
            pred = model.impute(b.obs, b.actions, masks[s:s + batch], method=method)
            wrong.append(wrong_pixels_per_frame(pred, b.obs))
        wrong = torch.cat(wrong)
        out[name] = {k: float((wrong * miss * sel).sum() / (miss * sel).sum().clamp(min=1.0))
                     for k, sel in (("bounce", bounce.float()), ("free", (~bounce).float()))}
    out["frames"] = {"bounce": float((miss * bounce).sum()), "free": float((miss * ~bounce).sum())}
    return out


class MeanFrame:
    """Trivial imputer: every frame is the per-pixel mean training frame (walls, no ball)."""

    def __init__(self, train_set: SequenceTensors) -> None:
        self.frame = train_set.obs_u8[:, :].float().mean((0, 1)) / 255.0  # [C, H, W]

    def impute(self, obs, actions, mask, method="filter"):
        return self.frame.expand_as(obs)


def mean_frame_scores(train_set: SequenceTensors, test_set: SequenceTensors, xs_random, xs_gap):
    """Wrong-pixel fractions of `MeanFrame` on the same masks as the models."""
    models = {"mean_frame": (MeanFrame(train_set), "filter")}
    T, N = test_set.obs_u8.shape[1], len(test_set)
    out = {"random": [], "gap": []}
    for key, xs in (("random", xs_random), ("gap", xs_gap)):
        for x in xs:
            g = torch.Generator().manual_seed(1000 + int(10 * x))
            masks = random_mask(N, T, x, generator=g) if key == "random" else gap_mask(N, T, x)
            out[key].append(score(models, test_set, masks)["mean_frame"])
    return out


def plot_curves(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, xlabel in ((axes[0], "random", "drop probability"),
                            (axes[1], "gap", "consecutive missing frames")):
        xs = res[key]["x"]
        for name, style in (("kvae_smooth", "-o"), ("kvae_filter", "-s"), ("vaernn", "-^"),
                            ("aernn", "-v"), ("mean_frame", "-x")):
            if name in res[key]:
                ax.plot(xs, res[key][name], style, label=name.replace("_", " "))
        for name, style in (("smooth", "k--"), ("filter", "k:")):
            pts = PAPER[f"{key}_{name}"]
            ax.plot(list(pts), list(pts.values()), style, alpha=0.6, label=f"paper {name}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("fraction of wrong pixels (unobserved frames)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("(a) frames missing at random")
    axes[1].set_title("(b) frames missing in the middle")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def plot_latents(kvae: KVAE, data: SequenceTensors, path: Path, n: int = 4) -> None:
    """Figure 6.3c: encoded vs generated (first 4 frames) vs smoothed (first + last 4) codes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = data.batch(slice(0, n))
    T = b.obs.shape[1]
    gen_mask = torch.zeros(n, T)
    gen_mask[:, :4] = 1
    sm_mask = gen_mask.clone()
    sm_mask[:, -4:] = 1
    enc = kvae.infer_latents(b.obs, b.actions, torch.ones(n, T))["encoded"]
    gen = kvae.infer_latents(b.obs, b.actions, gen_mask)["filtered"]
    smo = kvae.infer_latents(b.obs, b.actions, sm_mask)["smoothed"]
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2))
    for i, ax in enumerate(np.atleast_1d(axes)):
        for arr, style, lab in ((enc, "k-", "encoded"), (gen, "r-", "generated"),
                                (smo, "b-", "smoothed")):
            a = arr[i].numpy()
            ax.plot(a[:, 0], a[:, 1], style, label=lab, lw=1.2)
            ax.plot(a[0, 0], a[0, 1], "h", color=style[0], ms=7)
        obs_idx = sm_mask[i].bool().numpy()
        e = enc[i].numpy()
        ax.plot(e[obs_idx, 0], e[obs_idx, 1], "ks", ms=4, label="observed")
        ax.set_xticks([])
        ax.set_yticks([])
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle("codes a_t: encoded, generated from 4 frames, smoothed with the last 4 too")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def video(models: dict, data: SequenceTensors, p: float, path: Path, n: int = 4) -> None:
    b = data.batch(slice(0, n))
    T = b.obs.shape[1]
    g = torch.Generator().manual_seed(123)
    mask = random_mask(n, T, p, generator=g)
    rows = []
    for i in range(n):
        shown = b.obs[i] * mask[i, :, None, None, None] + 0.25 * (1 - mask[i, :, None, None, None])
        row = [b.obs[i].numpy(), shown.numpy()]
        for model, method in models.values():
            row.append(model.impute(b.obs[i:i + 1], b.actions[i:i + 1], mask[i:i + 1],
                                    method=method)[0].numpy())
        rows.append(row)
    write_video(tile_clips(rows, pad=1, scale=3), path, fps=4)


def build_vaernn(obs_shape: tuple[int, ...], action_dim: int, init: str) -> VAERNN:
    """The VAE-RNN baseline: conv VAE with a 2-d code and a 50-unit LSTM prior."""
    return VAERNN(VAERNNConfig(obs_shape=obs_shape, action_dim=action_dim, latent_dim=2, hidden_dim=50,
                               encoder="conv", init=init))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # denormals made trained-model updates ~3x slower on CPU
    torch.manual_seed(args.seed)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    root = ensure_dataset(args.dataset)
    train_set = SequenceTensors(root, "train", limit=args.train_seqs, binarize=True)
    test_set = SequenceTensors(root, "test", limit=args.test_seqs, binarize=True)
    steps_per_epoch = len(train_set) // args.batch_size
    decay_every = args.decay_every or 20 * steps_per_epoch
    epochs = max(1, args.steps // steps_per_epoch)
    freeze = args.freeze_dynamics_epochs
    if freeze is None:
        freeze = max(1, epochs // 8)

    cfg = KVAEConfig(obs_shape=train_set.obs_shape, action_dim=train_set.action_dim,
                     use_controls=False, a_dim=2, z_dim=4, num_modes=3,
                     recon_weight=args.recon_weight, vae_warmup_updates=args.vae_warmup)
    kvae = KVAE(cfg)
    t0 = time.time()
    if args.train_only != "vaernn":
        kvae_summary = train(kvae, train_set, run_dir / "kvae", steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr, decay_every_steps=decay_every,
                             freeze_epochs={"dynamics": freeze}, seed=args.seed, resume=args.resume)
    if args.train_only == "kvae":
        return 0
    kvae_time = time.time() - t0
    kvae.eval()
    models = {"kvae_smooth": (kvae, "smooth"), "kvae_filter": (kvae, "filter")}

    base_summary = None
    if args.train_only == "vaernn" and args.skip_baseline:
        raise SystemExit("--train-only vaernn contradicts --skip-baseline")
    if not args.skip_baseline:
        torch.manual_seed(args.seed)
        vaernn = build_vaernn(train_set.obs_shape, train_set.action_dim, args.vaernn_init)
        base_summary = train(vaernn, train_set, run_dir / "vaernn",
                             steps=args.baseline_steps or args.steps, batch_size=args.batch_size,
                             lr=args.lr, decay_every_steps=decay_every, seed=args.seed, resume=args.resume)
        if args.train_only == "vaernn":
            return 0
        vaernn.eval()
        models["vaernn"] = (vaernn, "filter")
        # The paper's AE-RNN: an LSTM over the codes of the same (here: the trained KVAE's)
        # auto-encoder, so that it differs from KVAE filtering in the dynamics alone.
        torch.manual_seed(args.seed)
        aernn = CodeRNN(CodeRNNConfig(code_dim=cfg.a_dim, action_dim=train_set.action_dim,
                                      obs_shape=train_set.obs_shape, hidden_dim=50),
                        encode=lambda x: kvae.encode(x)[0], decode=kvae.decode)
        aernn_summary = train(aernn, train_set, run_dir / "aernn", steps=args.aernn_steps,
                              batch_size=args.batch_size, lr=args.lr, decay_every_steps=decay_every,
                              seed=args.seed, resume=args.resume)
        aernn.eval()
        models["aernn"] = (aernn, "filter")
    models["mean_frame"] = (MeanFrame(train_set), "filter")

    T = test_set.obs_u8.shape[1]
    N = len(test_set)
    res: dict = {"random": {"x": [round(0.1 * k, 1) for k in range(1, 11)]},
                 "gap": {"x": list(range(1, 16))}}
    for key, xs in (("random", res["random"]["x"]), ("gap", res["gap"]["x"])):
        for x in xs:
            g = torch.Generator().manual_seed(1000 + int(10 * x))
            masks = random_mask(N, T, x, generator=g) if key == "random" else gap_mask(N, T, x)
            for name, v in score(models, test_set, masks).items():
                res[key].setdefault(name, []).append(v)
            print(key, x, {k: round(v[-1], 4) for k, v in res[key].items() if k != "x"}, flush=True)
    elbo = evaluate_elbo(kvae, test_set, estimators=("exact", "marginal"))

    # Where the errors are: frames right after a wall contact vs free flight, and each model's
    # auto-encoder floor (its VAE decoding the true frames' codes) on the same frames.
    diag_models = {k: v for k, v in models.items() if k != "mean_frame"}
    diag_models["kvae_recon"] = (Reconstruction(kvae.encode, kvae.decode), "filter")
    if "vaernn" in models:
        diag_models["vaernn_recon"] = (Reconstruction(vaernn.encoder, vaernn.decode), "filter")
    breakdown = {}
    for p_drop in (0.1, 0.5):
        g = torch.Generator().manual_seed(1000 + int(10 * p_drop))
        breakdown[str(p_drop)] = error_near_bounces(diag_models, test_set, random_mask(N, T, p_drop, generator=g))
        print("breakdown p", p_drop, breakdown[str(p_drop)], flush=True)

    png = RESULTS_DIR / f"{args.out_name}.png"
    plot_curves(res, png)
    plot_curves(res, run_dir / "imputation.png")
    plot_latents(kvae, test_set, RESULTS_DIR / f"{args.out_name}_latents.png")
    video(models, test_set, 0.8, run_dir / "imputation_p0.8.mp4")

    rand, gap = res["random"], res["gap"]
    order_ok = [s < f for s, f in zip(rand["kvae_smooth"][:-1], rand["kvae_filter"][:-1])]
    results = {
        "random": rand, "gap": gap, "paper": {k: {str(a): b for a, b in v.items()} for k, v in PAPER.items()},
        "test_elbo_per_seq": elbo, "test_elbo_per_frame": {k: v / T for k, v in elbo.items()},
        "smooth_below_filter_all_p_lt_1": all(order_ok),
        "filter_below_baseline": {
            b: {key: [f < v for f, v in zip(res[key]["kvae_filter"], res[key][b])][:-1 if key == "random" else None]
                for key in ("random", "gap")} for b in ("vaernn", "aernn") if b in rand},
        "error_near_bounces": breakdown,
        "kvae_train": {k: kvae_summary[k] for k in ("steps", "epochs", "final_train", "wall_s")},
        "vaernn_train": None if base_summary is None else
        {k: base_summary[k] for k in ("steps", "epochs", "final_train", "wall_s")},
        "aernn_train": None if base_summary is None else
        {k: aernn_summary[k] for k in ("steps", "epochs", "final_train", "wall_s")},
        "kvae_train_time_s": kvae_time,
        "train_seqs": len(train_set), "test_seqs": N,
        "artifacts": {"plot": str(png), "latents": str(RESULTS_DIR / f"{args.out_name}_latents.png"),
                      "video": str(run_dir / "imputation_p0.8.mp4"),
                      "checkpoint": kvae_summary.get("checkpoint")},
    }
    save_results(args.out_name, {**vars(args), "kvae_config": cfg.__dict__,
                                 "freeze_dynamics_epochs": freeze, "decay_every_steps": decay_every},
                 results, argv=sys.argv if argv is None else ["-m", "experiments.kvae_imputation", *argv],
                 seed=args.seed)
    save_results(args.out_name, vars(args), results, seed=args.seed, out_dir=run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
