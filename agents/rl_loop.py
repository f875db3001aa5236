"""Collecting episodes with an agent, growing a dataset with them, and the PlaNet-style loop.

``rollout`` runs a policy in a Gymnasium vector env (all episodes in lock step, batched
decisions) and returns the arrays of the dataset contract. ``append_episodes`` cuts episodes
into ``seq_len`` windows and adds them as a new shard to a dataset folder (manifest updated
atomically). ``run_rl_loop`` alternates: collect with MPC + exploration noise -> append ->
fine-tune the model (and the reward head) -> evaluate, logging ``rounds.jsonl``, checkpoints
and a video per round, and resumes from the last finished round.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from worldmodels.atomic_io import atomic_write_text

if TYPE_CHECKING:
    from worldmodels.base import WorldModel

#: ``policy(obs [n, ...], info dict of [n, ...] arrays) -> actions [n, A] or [n]``
Policy = Callable[[np.ndarray, dict], np.ndarray | int]


def make_vector_env(env_id: str, num_envs: int, max_episode_steps: int | None = None,
                    **env_kwargs) -> gym.vector.VectorEnv:
    """A ``SyncVectorEnv`` of ``num_envs`` copies with same-step autoreset (see ``MPCAgent``)."""
    import worldmodels.envs as envs  # noqa: F401  (registers the worldmodels/* ids)

    kw = dict(env_kwargs)
    if max_episode_steps is not None:
        kw["max_episode_steps"] = max_episode_steps
    return gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **kw) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)


def rollout(venv: gym.vector.VectorEnv, policy: Policy, steps: int, seed: int | list[int] | None = None,
            reset_fn: Callable[[], None] | None = None, progress: bool = False,
            desc: str = "rollout") -> dict[str, np.ndarray]:
    """One episode per sub-env of ``steps`` steps (episodes must not end earlier).

    Returns ``obs uint8 [n, steps, ...]`` (the frame before each action), ``actions float32
    [n, steps, A]`` (one-hot for discrete), ``rewards [n, steps]``, ``states [n, steps, S]``
    (if the env reports ``info["state"]``), ``returns [n]`` and ``final_state [n, S]``.
    """
    from tqdm.auto import tqdm

    n = venv.num_envs
    # SyncVectorEnv/AsyncVectorEnv take one seed per sub-env; VectorEnv.reset's stub says int only
    obs, info = venv.reset(seed=seed)  # pyright: ignore[reportArgumentType]
    if reset_fn is not None:
        reset_fn()
    space = venv.single_action_space
    discrete = isinstance(space, gym.spaces.Discrete)
    if isinstance(space, gym.spaces.Discrete):
        A = int(space.n)
    elif space.shape is None:
        raise ValueError(f"venv: the action space {space} has no shape")
    else:
        A = int(np.prod(space.shape))
    out_obs = np.empty((n, steps, *obs.shape[1:]), dtype=obs.dtype)
    acts = np.zeros((n, steps, A), np.float32)
    rews = np.zeros((n, steps), np.float32)
    states = [] if "state" in info else None
    for t in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        out_obs[:, t] = obs
        if states is not None:
            states.append(np.asarray(info["state"], np.float32))
        a = np.asarray(policy(obs, info))
        obs, r, term, trunc, info = venv.step(a)
        if (term | trunc).any() and t < steps - 1:
            raise RuntimeError(f"an episode ended at step {t + 1} < steps={steps}; use longer episodes")
        if discrete:
            acts[np.arange(n), t, a.astype(int)] = 1.0
        else:
            acts[:, t] = a.reshape(n, A)
        rews[:, t] = r
    result = {"obs": out_obs, "actions": acts, "rewards": rews, "returns": rews.sum(1)}
    if states is not None:
        result["states"] = np.stack(states, 1)
        final = info.get("final_info", info)
        if "state" in final:
            result["final_state"] = np.asarray(final["state"], np.float32)
    return result


# --------------------------------------------------------------------------- dataset growth


def append_episodes(root: str | os.PathLike, episodes: dict[str, np.ndarray], split: str = "train",
                    meta: dict[str, Any] | None = None) -> Path:
    """Cut ``episodes`` (``rollout`` output) into windows of the dataset's ``seq_len`` and add
    them to ``root`` as a new shard of ``split`` (its manifest entry gets ``meta``, e.g. the
    round that collected it); returns the shard path. Written by
    ``worldmodels.envs.writer.append_shard``, checked against the dataset's layout."""
    from worldmodels.envs.writer import append_shard

    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    T = int(manifest["seq_len"])
    n, steps = episodes["actions"].shape[:2]
    k = steps // T
    if k == 0:
        raise ValueError(f"episodes: {steps} steps are shorter than the dataset's seq_len={T}")
    arrays = {}
    for key in ("obs", "actions", "rewards", "states"):
        if key not in episodes:
            raise ValueError(f"episodes: missing {key!r}")
        x = episodes[key][:, : k * T]
        arrays[key] = x.reshape(n * k, T, *x.shape[2:])
    return append_shard(root, arrays, split, entry={"source": "rl_loop", **(meta or {})})


def drop_unfinished_rounds(root: str | os.PathLike, finished: int, split: str = "train") -> int:
    """Remove the shards that rounds ``>= finished`` appended to ``root`` (a round stopped
    between collecting and being recorded), so a resumed loop does not add its data twice;
    returns how many were removed."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    info = manifest["splits"].get(split)
    shards = info["shards"] if info else []
    keep = len(shards)
    while keep and shards[keep - 1].get("source") == "rl_loop" and shards[keep - 1].get("round", -1) >= finished:
        keep -= 1
    if any(s.get("source") == "rl_loop" and s.get("round", -1) >= finished for s in shards[:keep]):
        raise RuntimeError(f"{root}: shards of unfinished rounds sit between finished ones; cannot drop them")
    dropped = shards[keep:]
    if not dropped:
        return 0
    info["shards"] = shards[:keep]
    info["num_sequences"] = sum(int(s["num_sequences"]) for s in info["shards"])
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=2))
    for s in dropped:
        (root / s["file"]).unlink(missing_ok=True)
    return len(dropped)


# --------------------------------------------------------------------------- the loop
@dataclass
class RLLoopConfig:
    """PlaNet-style data collection loop.

    Attributes:
        env_id: Gymnasium id of the real environment (pixel observations).
        rounds: collect/train/evaluate rounds.
        collect_episodes, episode_steps: episodes collected per round and their length.
        exploration_noise: MPC action noise (fraction of the half-range; PlaNet uses 0.3).
        eval_episodes: episodes without noise after each round (0: no evaluation).
        planner: preset name; planner_overrides: config fields to replace.
        context: frames the agent filters; train_steps: fine-tuning updates per round.
        reward_steps: reward head updates per round; batch_size, lr: fine-tuning.
    """

    env_id: str = "worldmodels/Pendulum-v0"
    rounds: int = 3
    collect_episodes: int = 4
    episode_steps: int = 150
    exploration_noise: float = 0.3
    eval_episodes: int = 4
    planner: str = "cem_fast"
    planner_overrides: dict = field(default_factory=dict)
    context: int = 8
    train_steps: int = 200
    reward_steps: int = 500
    batch_size: int = 32
    lr: float = 3e-4
    seed: int = 0
    device: str = "cpu"
    video: bool = True


def run_rl_loop(model: WorldModel, reward_head, dataset: str | os.PathLike, run_dir: str | os.PathLike,
                config: RLLoopConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Run (or resume) the loop; returns the per-round records (also ``rounds.jsonl``).

    ``dataset`` is copied once to ``run_dir/data`` and grown there. Each round writes
    ``round_<k>/`` with the fine-tuned model checkpoint (trainer run folder), the reward head
    and an evaluation video; a finished round is recorded in ``rounds.jsonl`` and skipped on
    resume (the model and reward head of the last finished round are reloaded).
    """
    import torch

    from worldmodels.base import as_world_model
    from worldmodels.training import TrainConfig, Trainer, load

    from .mpc import MPCAgent, MPCConfig
    from .planners import make_planner
    from .reward import RewardHead, RewardHeadConfig, train_reward_head

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data = run_dir / "data"
    if not (data / "manifest.json").exists():
        tmp = run_dir / ".data.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(dataset, tmp)
        os.replace(tmp, data)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    log = run_dir / "rounds.jsonl"
    records = [json.loads(l) for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    if records:
        last = run_dir / f"round_{records[-1]['round']:03d}"
        model = as_world_model(load(last / "model", device=config.device), str(last / "model"))
        reward_head = RewardHead.load(last / "reward_head.pt", device=config.device)
    drop_unfinished_rounds(data, len(records))
    device = torch.device(config.device)
    model = model.to(device)
    reward_head = reward_head.to(device)

    def agent_for(n: int, noise: float, seed: int):
        space = make_vector_env(config.env_id, 1).single_action_space
        planner = make_planner(config.planner, action_space=space, **config.planner_overrides)
        return MPCAgent(model, planner, reward_head,
                        MPCConfig(context=config.context, exploration_noise=noise, seed=seed,
                                  record=config.video), num_envs=n, device=device)

    for k in range(len(records), config.rounds):
        t0 = time.time()
        rd = run_dir / f"round_{k:03d}"
        model.eval()
        # 1. collect with exploration noise
        agent = agent_for(config.collect_episodes, config.exploration_noise, config.seed + 1000 * k)
        venv = make_vector_env(config.env_id, config.collect_episodes, max_episode_steps=config.episode_steps + 1)
        seeds = [config.seed + 10_000 * (k + 1) + i for i in range(config.collect_episodes)]
        with torch.no_grad():
            eps = rollout(venv, lambda o, i, agent=agent: agent.act(o), config.episode_steps, seed=seeds,
                          reset_fn=agent.reset, progress=progress, desc=f"round {k} collect")
        append_episodes(data, eps, "train", meta={"round": k})
        # 2. fine-tune the model and the reward head on the grown dataset
        tcfg = TrainConfig(steps=config.train_steps, batch_size=config.batch_size, lr=config.lr,
                           seed=config.seed + k, device=config.device, progress=progress,
                           val_every=config.train_steps, checkpoint_every=None, tensorboard=False)
        # a round stopped before it was recorded is redone from scratch (its data were dropped)
        Trainer(model, tcfg, rd / "model", str(data), str(data), overwrite=True).fit()
        model = as_world_model(load(rd / "model", device=device), str(rd / "model"))
        from worldmodels.data import make_dataloader

        hcfg = RewardHeadConfig(**{**asdict(reward_head.config), "steps": config.reward_steps})
        hcfg.hidden = tuple(hcfg.hidden)
        reward_head, head_metrics = train_reward_head(
            model, make_dataloader(str(data), "train", 64, shuffle=False),
            make_dataloader(str(data), "valid", 64, shuffle=False), hcfg, device=device, progress=progress)
        reward_head.save(rd / "reward_head.pt")
        # 3. evaluate without noise
        ev = None
        if config.eval_episodes > 0:
            agent = agent_for(config.eval_episodes, 0.0, config.seed + 1000 * k + 1)
            venv = make_vector_env(config.env_id, config.eval_episodes,
                                   max_episode_steps=config.episode_steps + 1)
            seeds = [config.seed + 7_777 + i for i in range(config.eval_episodes)]
            with torch.no_grad():
                ev = rollout(venv, lambda o, i, agent=agent: agent.act(o), config.episode_steps, seed=seeds,
                             reset_fn=agent.reset, progress=progress, desc=f"round {k} eval")
            if config.video:
                agent.imagination_video(rd / "imagination.mp4")
        rec = {"round": k, "collected_return_mean": float(eps["returns"].mean()),
               "eval_return_mean": None if ev is None else float(ev["returns"].mean()),
               "eval_returns": None if ev is None else ev["returns"].tolist(), "reward_head": head_metrics,
               "seconds": time.time() - t0}
        with open(log, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        records.append(rec)
    return records
