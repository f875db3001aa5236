"""Stable-Baselines3 trained only inside the model, evaluated in the real pendulum from pixels.

For each training seed (``--seeds``, default 0 1 2):

1. a pendulum KVAE and its reward head, the recipe of ``experiments.pendulum_swingup`` (16x16
   frames, ``--train-steps`` updates of batch ``--batch-size`` on the ``pendulum`` dataset, MLP
   alpha network). A finished run of that experiment with the same configuration hash
   (``--model-run-dir``, default ``runs/pendulum_swingup``) is reused; otherwise the model is
   trained in ``<run-dir>/seed_<s>/model``;
2. SB3 (``--algo``, SAC by default) trained for ``--model-steps`` steps **only** inside
   ``ModelEnv``: latent observations, episodes of ``--imagined-length`` steps starting from the
   filtered beliefs of real ``--context``-frame windows of the training split, rewards from the
   reward head;
3. the same algorithm trained in the real ``worldmodels/Pendulum-v0`` on its true state
   (``[cos, sin, theta_dot]``, not pixels) for the same wall time as step 2;
4. evaluation on held-out starts (reset seeds 1000, 1001, ...): the in-model policy acts from
   pixels through the KVAE's filter (``worldmodels.agents.feature_policy.FeaturePolicyAgent``), the
   real-env policy on the state, and a uniformly random torque on the same starts.

Returns are per training seed and as a mean with a 95 % interval; each seed's folder holds its
policies and ``seed_result.json``, so a stopped run resumes at the first unfinished seed (rerun
the same command). One command, from scratch:

    python -m experiments.sb3_in_model            # --quick: a smoke run

Writes ``experiments/results/sb3_in_model.json`` (+ ``.png``).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import matplotlib
import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.callbacks import BaseCallback

from experiments._results import output_dir, save_results
from experiments.pendulum_swingup import ENV_ID, batches, evaluate, kvae_config, prepare_latent_agent
from experiments.protocol import (
    ConfigMismatchError,
    Protocol,
    SeedSet,
    config_hash,
    mean_ci,
    paired_claim,
    prepare_run_dir,
    t_quantile,
)
from worldmodels import envs  # noqa: F401  (registers worldmodels/Pendulum-v0)
from worldmodels.agents import commands, mpc, reward, rl_loop  # noqa: F401  (see load_everything)
from worldmodels.agents.feature_policy import FeaturePolicyAgent
from worldmodels.agents.model_env import ModelEnv
from worldmodels.agents.policy.starts import context_windows
from worldmodels.atomic_io import atomic_write, atomic_write_json
from worldmodels.envs import generate  # noqa: F401  (see load_everything)
from worldmodels.registry import registered_models

Algo = Literal["sac", "ppo"]
EVALUATION_START = 1000  # reset seeds of the held-out evaluation episodes
TORQUE = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
SEED_RESULT = "seed_result.json"
METHODS = {"in_model": "SB3 trained in the model (pixels via the KVAE filter)",
           "real": "SB3 trained on the real env (true state, same wall time)",
           "random": "random torque"}

QUICK = {"train_steps": 6, "reward_steps": 6, "model_steps": 300, "learning_starts": 100, "imagined_length": 20,
         "episodes": 2, "steps": 8, "starts": 256, "batch_size": 16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/sb3_in_model", help="one sub-folder per training seed")
    p.add_argument("--model-run-dir", default="runs/pendulum_swingup",
                   help="finished pendulum_swingup runs (seed_<s>) reused when their configuration hash matches; "
                        "'none' never reuses")
    p.add_argument("--data", default=None, help="dataset folder (default runs/data/<preset>)")
    p.add_argument("--quick", action="store_true", help="tiny sizes everywhere (a smoke run)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--train-steps", type=int, default=4000, help="KVAE updates per training seed")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--reward-steps", type=int, default=3000)
    p.add_argument("--dynamics", default="mlp", choices=["lstm", "mlp"], help="KVAE alpha network")
    p.add_argument("--algo", default="sac", choices=["sac", "ppo"])
    p.add_argument("--model-steps", type=int, default=20000, help="SB3 env steps inside the model")
    p.add_argument("--learning-starts", type=int, default=1000, help="SAC steps before the first update")
    p.add_argument("--imagined-length", type=int, default=50,
                   help="steps of an imagined episode (short: the model's error grows with the horizon; SB3 "
                        "bootstraps the value at truncation)")
    p.add_argument("--context", type=int, default=8, help="real frames filtered into a start belief / per action")
    p.add_argument("--starts", type=int, default=4096, help="real context windows imagined episodes start from")
    p.add_argument("--episodes", type=int, default=20, help="held-out evaluation starts (reset seeds 1000, ...)")
    p.add_argument("--steps", type=int, default=200, help="steps of an evaluation episode")
    p.add_argument("--retrain", action="store_true",
                   help="delete run folders trained under another configuration and train again")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu", help="device of the KVAE and of SB3")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--out-dir", default=None, help="results folder (default experiments/results)")
    args = p.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            setattr(args, k, v)
        if args.run_dir == "runs/sb3_in_model":
            args.run_dir = "runs/sb3_in_model_quick"
        args.model_run_dir = "none"
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds: expected distinct training seeds, got {args.seeds}")
    for name in ("model_steps", "imagined_length", "context", "starts", "episodes", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: expected >= 1, got {getattr(args, name)}")
    args.checkpoint = None  # prepare_latent_agent trains (or reuses) the KVAE
    return args


def make_protocol(args: argparse.Namespace) -> Protocol:
    """Training seeds and held-out evaluation starts; nothing is tuned on real episodes."""
    return Protocol(tuple(args.seeds), SeedSet.span(f"{ENV_ID} reset seed", EVALUATION_START, args.episodes),
                    None, notes="no setting is chosen on real episodes (SB3 defaults); every reported return "
                                "comes from the evaluation starts")


# --------------------------------------------------------------------------- the world model
def world_model(args, seed: int, seed_dir: Path, device: torch.device, progress: bool):
    """KVAE + reward head of training seed ``seed``: a finished ``pendulum_swingup`` run with the
    same configuration hash if there is one, else trained in ``seed_dir/model``.
    Returns ``(model, head, info, seconds)``."""
    args.train_seed = seed
    make_cfg = partial(kvae_config, dynamics=args.dynamics)
    t0 = time.time()
    if args.model_run_dir != "none":
        shared = Path(args.model_run_dir) / f"seed_{seed}"
        finished = all((shared / f).is_file() for f in ("kvae/summary.json", "reward_head.pt",
                                                         "reward_head_metrics.json", "config_hash.txt"))
        if finished:
            try:
                model, head, info = prepare_latent_agent(args, shared, device, progress, config_fn=make_cfg)
                return model, head, {**info, "reused": str(shared)}, time.time() - t0
            except ConfigMismatchError:
                pass  # trained under another configuration: train our own
    model, head, info = prepare_latent_agent(args, seed_dir / "model", device, progress, config_fn=make_cfg)
    return model, head, info, time.time() - t0


def start_contexts(args, data: Path) -> dict[str, torch.Tensor]:
    """Real ``--context``-frame windows of the training split the imagined episodes start from."""

    return context_windows(batches(data, "train"), args.context, stride=2, limit=args.starts)


# --------------------------------------------------------------------------- SB3
class StateObservation(gym.Wrapper):
    """The pixel pendulum observed through its true state ``info["state"]`` = ``[cos, sin, theta_dot]``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(np.array([-1, -1, -8], np.float32), np.array([1, 1, 8], np.float32))

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return info["state"], info

    def step(self, action):
        _, r, term, trunc, info = self.env.step(action)
        return info["state"], r, term, trunc, info


def make_algo(algo: Algo, env: gym.Env, args, seed: int):
    """A fresh SB3 agent with default hyperparameters (SAC: buffer sized to the run)."""

    if algo == "sac":
        return SAC("MlpPolicy", env, seed=seed, device=args.device, verbose=0,
                   buffer_size=max(args.model_steps, 1000), learning_starts=args.learning_starts)
    return PPO("MlpPolicy", env, seed=seed, device=args.device, verbose=0)


def wall_clock_limit(seconds: float):
    """An SB3 callback that stops training after ``seconds`` of wall time."""

    class _Stop(BaseCallback):
        def _on_training_start(self) -> None:
            self.t0 = time.time()

        def _on_step(self) -> bool:
            return time.time() - self.t0 < seconds

    return _Stop()


def save_policy(agent, path: Path) -> Path:
    """The SB3 policy's weights (a tensor state dict, readable with ``weights_only=True``), atomically.

    SB3's own ``.zip`` archives carry pickled objects, so they are not written or read here: a
    finished seed is resumed from its ``seed_result.json`` instead."""
    return atomic_write(path, lambda f: torch.save(agent.policy.state_dict(), f))


def train_in_model(args, model, head, contexts, seed: int, path: Path):
    """SB3 for ``--model-steps`` steps inside ``ModelEnv`` (latent observations); its policy weights
    saved to ``path``. Returns ``(agent, {"imagined_steps", "seconds"})``."""

    env = ModelEnv(model, head, contexts, TORQUE, episode_length=args.imagined_length, obs_mode="latent")
    agent = make_algo(args.algo, env, args, seed)
    t0 = time.time()
    agent.learn(total_timesteps=args.model_steps, progress_bar=False)
    seconds = time.time() - t0
    save_policy(agent, path)
    return agent, {"imagined_steps": int(agent.num_timesteps), "seconds": seconds}


def train_in_real_env(args, seconds: float, seed: int, path: Path):
    """SB3 on the real pendulum's true state for ``seconds`` of wall time; its policy weights saved
    to ``path``. Returns ``(agent, {"env_steps", "seconds"})``."""

    env = StateObservation(gym.make(ENV_ID))
    agent = make_algo(args.algo, env, args, seed)
    t0 = time.time()
    agent.learn(total_timesteps=10 ** 8, callback=wall_clock_limit(seconds), progress_bar=False)
    took = time.time() - t0
    save_policy(agent, path)
    return agent, {"env_steps": int(agent.num_timesteps), "seconds": took}


# --------------------------------------------------------------------------- evaluation
def evaluate_random(args, progress: bool) -> dict:
    """Uniform torques in [-2, 2] on the evaluation starts."""
    rng = np.random.default_rng(EVALUATION_START)

    def make(n):
        return (lambda o, i: rng.uniform(-2, 2, (n, 1)).astype(np.float32)), None, None

    return evaluate("random", make, args.episodes, args.steps, EVALUATION_START, progress)


def evaluate_in_model_policy(args, model, agent, device, progress: bool) -> dict:
    """The in-model policy from pixels: frames -> KVAE filter -> latent features -> SB3."""

    def make(n):
        acting = FeaturePolicyAgent(model, lambda f: agent.predict(f, deterministic=True)[0], TORQUE,
                                    context=args.context, num_envs=n, device=device)
        return (lambda o, i: acting.act(o)), acting.reset, acting

    return evaluate("SB3 in model", make, args.episodes, args.steps, EVALUATION_START, progress)


def evaluate_real_policy(args, agent, progress: bool) -> dict:
    """The real-env policy on the true state ``info["state"]`` of the evaluation starts."""
    def make(n):
        return (lambda o, i: agent.predict(np.asarray(i["state"]), deterministic=True)[0]), None, None

    return evaluate("SB3 real", make, args.episodes, args.steps, EVALUATION_START, progress)


def episode_summary(r: dict) -> dict[str, Any]:
    """Mean return, per-episode returns and wall seconds of a batch of evaluation episodes."""
    return {"mean_return": float(r["returns"].mean()), "returns": r["returns"].tolist(),
            "seconds": float(r["seconds"])}


# --------------------------------------------------------------------------- one seed
def run_seed(args, seed: int, device: torch.device, random_eval: dict, progress: bool) -> dict[str, Any]:
    """Model, in-model SB3, real-env SB3 and their evaluation for one training seed (resumed)."""
    seed_dir = Path(args.run_dir) / f"seed_{seed}"
    model, head, model_info, model_seconds = world_model(args, seed, seed_dir, device, progress)
    sb3_config = {"model_config_hash": model_info["config_hash"], "algo": args.algo, "seed": seed,
                  "model_steps": args.model_steps, "learning_starts": args.learning_starts,
                  "imagined_length": args.imagined_length, "context": args.context, "starts": args.starts,
                  "episodes": args.episodes, "steps": args.steps}
    prepare_run_dir(seed_dir / "sb3", sb3_config, retrain=args.retrain)
    done = seed_dir / "sb3" / SEED_RESULT
    if done.is_file():
        return json.loads(done.read_text())
    torch.manual_seed(seed)
    data = Path(model_info["dataset"])
    in_model_agent, in_model = train_in_model(args, model, head, start_contexts(args, data), seed,
                                              seed_dir / "sb3" / "in_model_policy.pt")
    real_agent, real = train_in_real_env(args, in_model["seconds"], seed, seed_dir / "sb3" / "real_policy.pt")
    in_model_eval = evaluate_in_model_policy(args, model, in_model_agent, device, progress)
    real_eval = evaluate_real_policy(args, real_agent, progress)
    manifest = json.loads((data / "manifest.json").read_text())
    result = {
        "in_model": episode_summary(in_model_eval), "real": episode_summary(real_eval),
        "random": episode_summary(random_eval),
        "training": {
            "world_model": {"seconds_this_run": model_seconds, "config_hash": model_info["config_hash"],
                            "reused": model_info.get("reused"), "reward_head": model_info.get("reward_head"),
                            "real_frames_in_dataset": int(manifest["splits"]["train"]["num_sequences"])
                            * int(manifest["seq_len"])},
            "in_model": in_model, "real": real,
        },
    }
    atomic_write_json(done, result)
    print(f"seed {seed}: return in model {result['in_model']['mean_return']:.1f}, real "
          f"{result['real']['mean_return']:.1f}, random {result['random']['mean_return']:.1f}", flush=True)
    return result


def load_everything() -> None:
    """Import every module the run needs (all registered model classes included) before it starts,
    so that edits to the source files during an hours-long run cannot break it half-way."""
    import matplotlib.pyplot  # noqa: F401
    import tqdm.auto  # noqa: F401

    from worldmodels import data, kvae, training  # noqa: F401
    from worldmodels.agents.commands import plan  # noqa: F401
    from worldmodels.training import checkpoint  # noqa: F401

    registered_models()
    t_quantile(2)  # scipy's t distribution, when installed


def main(argv=None) -> int:
    args = parse_args(argv)
    load_everything()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # see pendulum_swingup: denormals from the trained KVAE slow the CPU
    progress = not args.no_progress
    device = torch.device(args.device)
    protocol = make_protocol(args)
    t_start = time.time()
    random_eval = evaluate_random(args, progress)
    per_seed = {str(s): run_seed(args, s, device, random_eval, progress) for s in args.seeds}
    values = {m: [per_seed[str(s)][m]["mean_return"] for s in args.seeds] for m in METHODS}
    results: dict[str, Any] = {
        "per_seed": per_seed,
        "headline": {"metric": f"mean return on {args.episodes} held-out starts of {args.steps} steps "
                               "(higher is better; returns are negative)", "lower_is_better": False,
                     "per_method": {METHODS[m]: mean_ci(v) for m, v in values.items()}},
        "claims": [paired_claim("SB3 trained only in the model beats a random policy in the real env",
                                values["random"], values["in_model"]),
                   paired_claim("SB3 trained in the real env for the same wall time beats SB3 trained in the model",
                                values["in_model"], values["real"])],
        "env_steps_note": "in_model: imagined steps only (plus the real frames of the dataset the KVAE was "
                          "trained on); real: real env steps of the state-observation baseline",
        "wall_seconds": time.time() - t_start,
    }
    config = {k: v for k, v in vars(args).items() if k not in ("train_seed",)}
    config["kvae"] = kvae_config(dynamics=args.dynamics).__dict__
    config["config_hash"] = config_hash(config)

    out = save_results("sb3_in_model", config, results, module="sb3_in_model", args=argv, protocol=protocol,
                       out_dir=output_dir(args.out_dir, args.quick))
    plot(values, out.with_suffix(".png"))
    print(f"wrote {out}")
    return 0


def plot(values: dict[str, list[float]], path: Path) -> None:
    """Per-seed mean returns (dots) and the mean over seeds (bars) of each method."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, v in enumerate(values.values()):
        ax.bar(i, np.mean(v), color=f"C{i}", alpha=0.5)
        ax.plot(np.full(len(v), i), v, "ko", ms=4)
    ax.set_xticks(range(len(values)), [METHODS[m].split(" (")[0] for m in values], fontsize=8)
    ax.set_ylabel("mean return, held-out starts")
    ax.set_title("pendulum from pixels: SB3 trained inside the KVAE")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from experiments.protocol import run_cli

    raise SystemExit(run_cli(main))
