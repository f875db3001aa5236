"""Does the imputation experiment's VAE-RNN collapse under an initialisation?

Trains the VAE-RNN of ``experiments.kvae_imputation`` (conv VAE, 2-d code, 50 LSTM units,
lr 0.007, batch 16) for a few hundred updates per (init, seed) and reports the training loss,
the spread of the encoder means over test frames (a collapsed encoder has spread ~0) and the
wrong-pixel fraction of its reconstructions. One command:

    python -m experiments.vaernn_init_check --steps 300 --inits torch xavier --seeds 0

writes ``experiments/results/vaernn_init_check.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from experiments._results import output_dir, save_results
from experiments.kvae_common import SequenceTensors, ensure_dataset, train, wrong_pixel_fraction
from experiments.protocol import prepare_run_dir
from worldmodels.vae_rnn import VAERNN, VAERNNConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--inits", nargs="+", default=["torch", "xavier"], choices=["torch", "xavier"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--run-dir", default="runs/vaernn_init_check")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--quick", action="store_true", help="3 updates on the small ball set (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 3
        if args.run_dir == "runs/vaernn_init_check":
            args.run_dir = "runs/vaernn_init_check_quick"
    torch.set_num_threads(args.threads)
    dataset = "bouncing_ball_small" if args.quick else "bouncing_ball"
    root = ensure_dataset(dataset)
    train_set = SequenceTensors(root, "train", limit=5000, binarize=True)
    n_test = min(100, len(SequenceTensors(root, "test", binarize=True)))
    test = SequenceTensors(root, "test", limit=n_test, binarize=True).batch(slice(0, n_test))
    results = {}
    for init in args.inits:
        for seed in args.seeds:
            torch.manual_seed(seed)
            model = VAERNN(VAERNNConfig(obs_shape=train_set.obs_shape, action_dim=train_set.action_dim,
                                        latent_dim=2, hidden_dim=50, encoder="conv", init=init))
            run_cfg = {"dataset": dataset, "init": init, "steps": args.steps, "seed": seed,
                       "batch_size": 16, "lr": 0.007}
            run = prepare_run_dir(Path(args.run_dir) / f"{init}_seed{seed}", run_cfg, retrain=args.retrain)
            summary = train(model, train_set, run, steps=args.steps, batch_size=16, lr=0.007,
                            decay_every_steps=6240, seed=seed, resume=True)
            model.eval()
            with torch.no_grad():
                codes, _ = model.encoder(test.obs)
                recon = model.decode(codes)
            r = {"final_loss": (summary.get("final_train") or {}).get("loss"),
                 "code_std": codes.flatten(0, 1).std(0).tolist(),
                 "recon_wrong_pixels": wrong_pixel_fraction(recon, test.obs, torch.zeros(test.obs.shape[:2]))}
            results[f"{init}_seed{seed}"] = r
            print(init, seed, r, flush=True)
    save_results("vaernn_init_check", vars(args), results,
                 module="vaernn_init_check", args=argv, out_dir=output_dir(args.out_dir, args.quick))
    return 0


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
