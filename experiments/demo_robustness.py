"""How reliably the demo's recipe swings the pendulum up: training seeds x RL rounds x horizons.

For each training seed: the demo's KVAE (``worldmodels demo``'s ``train`` config with that seed)
-> the demo's reward head -> after 0, 1, ..., ``--rounds`` PlaNet-style rounds (the demo's round
settings: ``worldmodels.agents.rl_loop`` with 8 episodes of 150 steps at H = 12, 200 fine-tuning updates, a
new reward head), ``--episodes`` noise-free episodes of 200 steps from starts 0, 1, ... at each
planning setting in ``--settings``: ``H`` (horizon) or ``H/twW`` (horizon and
``MPCConfig.terminal_weight`` W; the rounds themselves plan without one). An episode counts as
upright when the rod stays within 0.5 rad of the top for at least 90 % of its last 50 steps
(``worldmodels.agents.oracle.upright_fraction``). These tuning starts (reset seeds 0, 1, ...) choose the
setting; after the last round the chosen one is measured on ``--eval-episodes`` held-out starts
(reset seeds 1000, ...), the numbers to report.

Resumable: a seed's finished cells are cached in ``<run>/seed_<s>/cells.json`` and its rounds
resume (``run_rl_loop``), so several invocations with disjoint ``--seeds`` can share the cores and
a last one over all seeds writes the table from the cache.

    python -m experiments.demo_robustness --seeds 0 1 2 3 4 --rounds 3 --settings 12 12/tw2 20 --threads 1

Writes ``experiments/results/demo_robustness.json`` (+ ``.png``: upright episodes vs rounds).
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import torch

from experiments.protocol import Protocol, SeedSet, mean_ci, prepare_run_dir
from worldmodels.atomic_io import atomic_write_json

ENV_ID = "worldmodels/Pendulum-v0"
UPRIGHT = 0.9  # fraction of the last 50 steps within 0.5 rad of the top


def base_model(cfg: dict[str, Any], seed_dir: Path) -> str:
    """Train (or reuse) the demo's KVAE in ``seed_dir``; returns its checkpoint path."""
    from worldmodels.agents.commands.train import train_from_config

    summary_path = seed_dir / "summary.json"
    if not summary_path.is_file():
        train_from_config(cfg, seed_dir)
    summary = json.loads(summary_path.read_text())
    return summary.get("best_checkpoint") or summary["checkpoint"]


def parse_setting(text: str) -> tuple[int, float]:
    """``"12"`` -> ``(12, 0.0)``; ``"12/tw2"`` -> ``(12, 2.0)``."""
    h, _, w = text.partition("/tw")
    try:
        horizon, weight = int(h), float(w) if w else 0.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected H or H/twW, e.g. 12 or 12/tw2") from None
    if horizon < 1 or weight < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the horizon must be >= 1 and the weight >= 0")
    return horizon, weight


def cell_key(rounds: int, horizon: int, terminal_weight: float) -> str:
    """``"<rounds>/<horizon>"``, with ``"/tw<weight>"`` appended for a nonzero terminal weight."""
    return f"{rounds}/{horizon}" + (f"/tw{terminal_weight:g}" if terminal_weight else "")


QUICK_OVERRIDES = (  # --quick: the demo config shrunk to seconds
    "data.preset=pendulum_small", "train.steps=2", "train.batch_size=16", "train.val_every=2",
    "train.checkpoint_every=2",
    "model.config={a_dim: 2, z_dim: 3, num_modes: 2, encoder: mlp, decoder: mlp, mlp_hidden: [32]}",
    "control.reward_steps=5", "control.rl_episodes=1", "control.rl_episode_steps=15", "control.rl_train_steps=2",
    "control.rl_horizon=2")


TUNING_START, EVALUATION_START = 0, 1000  # reset seeds of the tuning and the held-out evaluation starts


def evaluate_cell(model, head, horizon: int, terminal_weight: float, episodes: int, steps: int,
                  planner: str, start: int = TUNING_START) -> dict[str, Any]:
    """Noise-free episodes from starts ``start .. start + episodes - 1``: returns and upright fractions."""
    from worldmodels.agents.commands.plan import plan_episodes

    r = plan_episodes(model, head, ENV_ID, planner=planner, planner_overrides={"horizon": horizon},
                      terminal_weight=terminal_weight, episodes=episodes, steps=steps, video=False,
                      seed=start, progress=False)
    fr = r["upright_fraction_last50"]
    return {"horizon": horizon, "terminal_weight": terminal_weight, "mean_return": r["mean_return"],
            "returns": r["returns"], "upright_fraction_last50": fr,
            "upright": int(sum(f >= UPRIGHT for f in fr)), "episodes": episodes, "seconds": r["seconds"]}


def run_seed(seed: int, args: argparse.Namespace, ctl: dict[str, Any], cfg: dict[str, Any],
             chosen: tuple[int, float] | None = None) -> dict[str, dict]:
    """All cells (``cell_key``) of one training seed on the tuning starts, computing the missing ones;
    with ``chosen`` (a horizon and terminal weight) also that setting after the last round on the
    held-out evaluation starts (key ``"eval/" + cell_key``)."""
    from worldmodels.agents.commands.plan import demo_rl_config, fit_demo_reward_head, load_world_model
    from worldmodels.agents.reward import RewardHead
    from worldmodels.agents.rl_loop import run_rl_loop

    seed_dir = prepare_run_dir(Path(args.run_dir) / f"seed_{seed}",
                               {"seed": seed, "config": cfg, "episodes": args.episodes, "steps": args.steps,
                                "eval_episodes": args.eval_episodes}, retrain=args.retrain)
    cache = seed_dir / "cells.json"
    cells: dict[str, dict] = json.loads(cache.read_text()) if cache.is_file() else {}
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(seed=seed, progress=False, device="cpu")
    checkpoint = base_model(cfg, seed_dir)
    data = cfg["data"]["root"]
    model = load_world_model(checkpoint)
    head_path = seed_dir / "reward_head.pt"
    if head_path.is_file():
        head = RewardHead.load(head_path)
    else:
        head, _ = fit_demo_reward_head(model, data, int(ctl["reward_steps"]), progress=False)
        head.save(head_path)
    base = (model, head)
    for k in range(args.rounds + 1):
        todo = [(h, w, TUNING_START, args.episodes, cell_key(k, h, w)) for h, w in args.settings]
        if chosen is not None and k == args.rounds:
            todo.append((*chosen, EVALUATION_START, args.eval_episodes, "eval/" + cell_key(k, *chosen)))
        todo = [t for t in todo if t[-1] not in cells]
        if not todo:
            continue
        if k == 0:
            model, head = base
        else:
            rl_cfg = demo_rl_config(rounds=k, planner=ctl["planner"],
                                    horizon=int(ctl.get("rl_horizon") or ctl["horizon"]),
                                    episodes=int(ctl["rl_episodes"]),
                                    episode_steps=int(ctl.get("rl_episode_steps", 150)),
                                    train_steps=int(ctl["rl_train_steps"]), reward_steps=int(ctl["reward_steps"]))
            run_rl_loop(*base, data, seed_dir / "rl", rl_cfg, progress=False)
            last = seed_dir / "rl" / f"round_{k - 1:03d}"
            model, head = load_world_model(last / "model"), RewardHead.load(last / "reward_head.pt")
        for h, w, start, n, key in todo:
            c = cells[key] = evaluate_cell(model, head, h, w, n, args.steps, ctl["planner"], start)
            print(f"seed {seed} {key}: mean {c['mean_return']:.0f}, upright {c['upright']} of {c['episodes']}",
                  flush=True)
            atomic_write_json(cache, cells)
    return cells


def choose_setting(table: dict[str, dict[str, dict]], rounds: int,
                   settings: list[tuple[int, float]]) -> tuple[int, float]:
    """The setting with the most upright tuning episodes after the last round, summed over training
    seeds (ties: the higher mean return)."""
    def merit(hw: tuple[int, float]) -> tuple[int, float]:
        cells = [t[cell_key(rounds, *hw)] for t in table.values()]
        return sum(c["upright"] for c in cells), sum(c["mean_return"] for c in cells) / len(cells)

    return max(settings, key=merit)


def plot(table: dict[str, dict[str, dict]], rounds: int, settings: list[tuple[int, float]], path: Path) -> None:
    """Upright episodes vs rounds, one panel per (horizon, terminal weight), one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(settings), figsize=(4.2 * len(settings), 3.4), sharey=True, squeeze=False)
    for ax, (h, w) in zip(axes[0], settings):
        for seed, cells in table.items():
            ks = [k for k in range(rounds + 1) if cell_key(k, h, w) in cells]
            ax.plot(ks, [cells[cell_key(k, h, w)]["upright"] for k in ks], marker="o", label=f"seed {seed}")
        ax.set_title(f"H = {h}" + (f", terminal weight {w:g}" if w else ""))
        ax.set_xlabel("RL rounds before the episodes")
        ax.set_xticks(range(rounds + 1))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("episodes ending upright")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (train.seed)")
    p.add_argument("--rounds", type=int, default=3, help="evaluate after 0..ROUNDS rounds")
    p.add_argument("--settings", type=parse_setting, nargs="+", default=[(12, 0.0), (20, 0.0)], metavar="H[/twW]",
                   help="final planning settings: horizon, optionally with a terminal weight (default: 12 20)")
    p.add_argument("--episodes", type=int, default=8,
                   help="tuning starts (reset seeds 0, 1, ...) on which the settings are compared")
    p.add_argument("--eval-episodes", type=int, default=8,
                   help="held-out starts (reset seeds 1000, ...) on which the chosen setting is reported")
    p.add_argument("--retrain", action="store_true",
                   help="delete seed folders made under another configuration and start again")
    p.add_argument("--steps", type=int, default=200, help="steps per evaluation episode")
    p.add_argument("--run-dir", default="runs/demo_robustness")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the demo config, as in `worldmodels demo --set` (e.g. train.steps=50)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", "--out-dir", dest="out", default=None, help="results folder (default experiments/results)")
    p.add_argument("--name", default="demo_robustness")
    p.add_argument("--quick", action="store_true",
                   help="a tiny model on the small pendulum set, 2 rounds of 1 short episode (a smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.set = [*QUICK_OVERRIDES, *args.set]
        args.rounds, args.episodes, args.eval_episodes, args.steps = 1, 2, 2, 5
        args.settings = [(2, 0.0), (3, 0.0)]
        if args.run_dir == "runs/demo_robustness":
            args.run_dir = "runs/demo_robustness_quick"
    if args.rounds < 0 or args.episodes < 1 or args.eval_episodes < 1:
        p.error("--rounds must be >= 0, --episodes and --eval-episodes >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    from worldmodels.agents.commands import apply_overrides, ensure_dataset
    from worldmodels.agents.commands.demo import DEFAULT_CONFIG

    from ._results import output_dir, save_results

    cfg = apply_overrides(copy.deepcopy(DEFAULT_CONFIG), args.set)
    ctl = cfg["control"]
    cfg["data"]["root"] = str(ensure_dataset(cfg["data"], progress=False))
    table = {str(s): run_seed(s, args, ctl, cfg) for s in args.seeds}
    chosen = choose_setting(table, args.rounds, args.settings)
    table = {str(s): run_seed(s, args, ctl, cfg, chosen) for s in args.seeds}
    settings = args.settings
    summary = {cell_key(0, h, w)[2:]: {k: sum(table[str(s)][cell_key(k, h, w)]["upright"] for s in args.seeds)
                                       for k in range(args.rounds + 1)} for h, w in settings}
    for name, counts in summary.items():
        print(f"H / terminal weight {name}: upright episodes (of {args.episodes * len(args.seeds)}) after "
              f"0..{args.rounds} rounds: {list(counts.values())}")
    out = output_dir(args.out, args.quick)
    config = {"seeds": args.seeds, "rounds": args.rounds, "settings": [cell_key(0, h, w)[2:] for h, w in settings],
              "episodes": args.episodes,
              "steps": args.steps, "overrides": args.set, "control": ctl, "train": cfg["train"],
              "upright_threshold": UPRIGHT}
    eval_key = "eval/" + cell_key(args.rounds, *chosen)
    evaluation = {"setting": cell_key(0, *chosen)[2:], "rounds": args.rounds,
                  "upright": {s: table[s][eval_key]["upright"] for s in table},
                  "upright_total": sum(table[s][eval_key]["upright"] for s in table),
                  "episodes_total": args.eval_episodes * len(table),
                  "mean_return": mean_ci([table[s][eval_key]["mean_return"] for s in table])}
    print(f"chosen on the tuning starts: {evaluation['setting']}; held-out starts: {evaluation['upright_total']} "
          f"of {evaluation['episodes_total']} upright", flush=True)
    protocol = Protocol(tuple(args.seeds), SeedSet.span(f"{ENV_ID} reset seed", EVALUATION_START, args.eval_episodes),
                        SeedSet.span(f"{ENV_ID} reset seed", TUNING_START, args.episodes),
                        notes="settings are compared on the tuning starts after every round; the chosen one is "
                              "reported after the last round on the evaluation starts")
    path = save_results(args.name, config, {"cells": table, "upright_total": summary, "evaluation": evaluation},
                        module="demo_robustness", args=argv, protocol=protocol, out_dir=out)
    plot(table, args.rounds, settings, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
