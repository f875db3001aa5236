"""KVAE on the gravity and polygon scenes (thesis 6.5.3, figures 6.3c, 6.4, 6.5).

For each scene: train a KVAE (gravity: z in R^5, K = 3; polygon: z in R^4, K = 7; as in 6.8)
with the MLP dynamics network alpha_t(a_{t-1}) so that its weights can be drawn over the
a-plane (figure 6.4 style map, with encoded test trajectories on top); long generations from 4
frames as videos (truth is shown while it lasts); encoded / generated / smoothed latent
trajectories (figure 6.3c style); wrong-pixel fraction of smoothing vs filtering at p = 0.8.
One command:

    python -m experiments.kvae_scenes --steps 300

writes ``experiments/results/kvae_scenes.json`` + PNGs; videos and checkpoints go to ``--run-dir``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from experiments._results import output_dir, save_results
from experiments.kvae_common import (
    SequenceTensors,
    ensure_dataset,
    evaluate_elbo,
    random_mask,
    train,
    wrong_pixel_fraction,
)
from experiments.kvae_imputation import MeanFrame, plot_latents
from experiments.protocol import prepare_run_dir
from worldmodels.kvae import KVAE, KVAEConfig
from worldmodels.video import tile_clips, write_video

SCENES = {
    "gravity": dict(dataset="bouncing_ball_gravity", z_dim=5, num_modes=3),
    "polygon": dict(dataset="bouncing_ball_polygon", z_dim=4, num_modes=7),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default="gravity,polygon")
    p.add_argument("--train-seqs", type=int, default=5000)
    p.add_argument("--test-seqs", type=int, default=200)
    p.add_argument("--steps", type=int, default=12500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.007)
    p.add_argument("--recon-weight", type=float, default=0.3)
    p.add_argument("--vae-warmup", type=int, default=0,
                   help="first KVAE updates with the fixed N(0, I) prior (plain VAE)")
    p.add_argument("--dynamics", default="mlp", choices=("mlp", "lstm"))
    p.add_argument("--freeze-dynamics-epochs", type=int, default=1)
    p.add_argument("--generation-steps", type=int, default=60)
    p.add_argument("--run-dir", default="runs/kvae_scenes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-name", default="kvae_scenes")
    p.add_argument("--eval-only", action="store_true",
                   help="skip training: load <run-dir>/<scene>/checkpoints/last.pt")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--quick", action="store_true",
                   help="a few updates on the small passive-ball set for both scenes (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.train_seqs, args.test_seqs, args.steps, args.batch_size, args.generation_steps = 64, 8, 3, 8, 8
        if args.run_dir == "runs/kvae_scenes":
            args.run_dir = "runs/kvae_scenes_quick"
    return args


@torch.no_grad()
def long_generation(kvae: KVAE, data: SequenceTensors, steps: int, path: Path, n: int = 4) -> None:
    """Truth (while it lasts, then black) next to the generation from the first 4 frames."""
    b = data.batch(slice(0, n))
    T = b.obs.shape[1]
    acts = torch.zeros(n, 4 - 1 + steps, data.action_dim)
    gen = kvae.generate(b.obs[:, :4], acts, horizon=steps)  # [n, steps, C, H, W]
    truth = torch.zeros_like(gen)
    k = min(steps, T - 4)
    truth[:, :k] = b.obs[:, 4:4 + k]
    rows = [[truth[i].numpy(), gen[i].numpy()] for i in range(n)]
    write_video(tile_clips(rows, pad=1, scale=3), path, fps=8)


@torch.no_grad()
def generation_summary_image(kvae: KVAE, data: SequenceTensors, steps: int, path: Path) -> None:
    """Figure 6.5 style: one generated video drawn as one image, intensity = time index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = 3
    b = data.batch(slice(0, n))
    gen = kvae.generate(b.obs[:, :4], torch.zeros(n, 3 + steps, data.action_dim), horizon=steps)
    fig, axes = plt.subplots(1, n, figsize=(3 * n, 3))
    w = torch.linspace(0.2, 1.0, steps)[:, None, None]
    for i, ax in enumerate(axes):
        img = (gen[i, :, 0] * w).max(0).values.numpy()
        ax.imshow(img, cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{steps}-step generations from 4 frames (brighter = later)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@torch.no_grad()
def alpha_map(kvae: KVAE, data: SequenceTensors, path: Path, n_traj: int = 20) -> None:
    """Figure 6.4 style: alpha^(k)(a_{t-1}) over the a-plane with encoded trajectories."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = data.batch(slice(0, min(len(data), 200)))
    a, _ = kvae.encode(b.obs)  # [N, T, 2]
    flat = a.reshape(-1, 2)
    lo, hi = flat.min(0).values, flat.max(0).values
    pad = (0.1 * (hi - lo)).clamp(min=0.5)  # collapsed codes would give an empty extent
    xs = torch.linspace(float(lo[0] - pad[0]), float(hi[0] + pad[0]), 120)
    ys = torch.linspace(float(lo[1] - pad[1]), float(hi[1] + pad[1]), 120)
    X, Y = torch.meshgrid(xs, ys, indexing="xy")
    grid = torch.stack([X, Y], -1).reshape(-1, 2)
    alpha, _ = kvae.dynamics.step(grid, None)
    alpha = alpha.reshape(120, 120, -1).numpy()
    K = alpha.shape[-1]
    cols = min(K, 4)
    rows = int(np.ceil(K / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= K:
            ax.axis("off")
            continue
        ax.imshow(alpha[..., k], origin="lower", cmap="gray", vmin=0, vmax=1,
                  extent=(float(xs[0]), float(xs[-1]), float(ys[0]), float(ys[-1])), aspect="auto")
        for i in range(min(n_traj, a.shape[0])):
            ax.plot(a[i, :, 0].numpy(), a[i, :, 1].numpy(), "-", color="tab:red", lw=0.6, alpha=0.7)
        ax.set_title(f"alpha^({k + 1})")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("dynamics parameter network over the a-plane (white = weight 1)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # denormals made trained-model updates ~3x slower on CPU
    run_dir = Path(args.run_dir)
    out_dir = output_dir(args.out_dir, args.quick)
    results: dict = {}
    for scene in args.scenes.split(","):
        spec = dict(SCENES[scene], dataset="bouncing_ball_small") if args.quick else SCENES[scene]
        root = ensure_dataset(spec["dataset"])
        train_set = SequenceTensors(root, "train", limit=args.train_seqs, binarize=True)
        test_set = SequenceTensors(root, "test", limit=args.test_seqs, binarize=True)
        torch.manual_seed(args.seed)
        cfg = KVAEConfig(obs_shape=train_set.obs_shape, action_dim=train_set.action_dim,
                         use_controls=False, a_dim=2, z_dim=spec["z_dim"],
                         num_modes=spec["num_modes"], dynamics=args.dynamics,
                         recon_weight=args.recon_weight, vae_warmup_updates=args.vae_warmup)
        spe = len(train_set) // args.batch_size
        if args.eval_only:
            from worldmodels.training import load

            kvae = load(run_dir / scene / "checkpoints" / "last.pt")
            summ = json.loads((run_dir / scene / "summary.json").read_text())
        else:
            kvae = KVAE(cfg)
            run_cfg = {"dataset": spec["dataset"], "train_seqs": len(train_set), "kvae": cfg.__dict__,
                       "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                       "freeze_dynamics_epochs": args.freeze_dynamics_epochs, "seed": args.seed}
            summ = train(kvae, train_set, prepare_run_dir(run_dir / scene, run_cfg, retrain=args.retrain),
                         steps=args.steps, batch_size=args.batch_size, lr=args.lr, decay_every_steps=20 * spe,
                         freeze_epochs={"dynamics": args.freeze_dynamics_epochs}, seed=args.seed, resume=True)
        kvae.eval()
        T = test_set.obs_u8.shape[1]
        mask = random_mask(len(test_set), T, 0.8, generator=torch.Generator().manual_seed(7))
        b = test_set.batch(slice(0, len(test_set)))
        scores = {m: wrong_pixel_fraction(kvae.impute(b.obs, b.actions, mask, method=m), b.obs, mask)
                  for m in ("smooth", "filter")}
        scores["mean_frame"] = wrong_pixel_fraction(MeanFrame(train_set).impute(b.obs, None, mask),
                                                    b.obs, mask)
        elbo = evaluate_elbo(kvae, test_set, estimators=("exact",))
        pngs = {k: out_dir / f"{args.out_name}_{scene}_{k}.png"
                for k in ("alpha", "latents", "generation")}
        alpha_map(kvae, test_set, pngs["alpha"])
        plot_latents(kvae, test_set, pngs["latents"])
        generation_summary_image(kvae, test_set, args.generation_steps, pngs["generation"])
        if not args.quick:
            long_generation(kvae, test_set, args.generation_steps, run_dir / f"{scene}_long_generation.mp4")
        results[scene] = {
            "dataset": spec["dataset"], "z_dim": spec["z_dim"], "num_modes": spec["num_modes"],
            "wrong_pixels_p0.8": scores, "test_elbo_per_seq": elbo["exact"],
            "train": {k: summ.get(k) for k in ("steps", "epochs", "final_train", "wall_s", "time_s")},
            "artifacts": {k: v.name for k, v in pngs.items()},
        }
        print(scene, results[scene]["wrong_pixels_p0.8"], elbo, flush=True)
    save_results(args.out_name, vars(args), results, seed=args.seed, module="kvae_scenes", args=argv,
                 out_dir=out_dir)
    save_results(args.out_name, vars(args), results, seed=args.seed, module="kvae_scenes", args=argv,
                 out_dir=run_dir)
    return 0


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
