"""Training the actor-critic on trajectories imagined by a frozen world model (Dreamer-style).

Each update draws start states (filtered beliefs of real sequences), imagines ``horizon`` steps
with ``model.step`` under the actor's actions, scores them with the reward function on
``(z_h, a_h, z_{h+1})``, and computes lambda-returns bootstrapped with the target critic. The
critic regresses on the returns (stop-gradient, in symlog space by default); the actor maximises
them, by backpropagating through the model's dynamics (continuous actions) or by REINFORCE with
the critic as baseline (discrete actions), plus an entropy bonus. Returns are normalised by
DreamerV3's percentile scale.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from worldmodels.atomic_io import atomic_write_json
from worldmodels.base import LatentState, WorldModel, supports_step
from worldmodels.checks import check_finite, check_shape

from ..costs import RewardFn
from .actor_critic import ActorCritic
from .config import ARCHITECTURE_FIELDS, ActorCriticConfig
from .returns import lambda_returns
from .starts import StartData, start_states

POLICY_FILE = "actor_critic.pt"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class Imagined:
    """An imagined batch of trajectories: ``features [B, H + 1, D]`` (states 0 .. H), ``actions
    [B, H, A]``, the actor's ``log_probs [B, H]`` and ``entropies [B, H]`` of those actions."""

    features: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    entropies: torch.Tensor


@contextmanager
def frozen(*modules: Any) -> Iterator[None]:
    """Parameters of the given modules (non-modules are skipped) stop requiring gradients and the
    modules go to eval mode; both are restored on exit, even after an error."""
    mods = [m for m in modules if isinstance(m, nn.Module)]
    flags = [(p, p.requires_grad) for m in mods for p in m.parameters()]
    modes = [(m, m.training) for m in mods]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for m in mods:
            m.eval()
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.train(mode)


def imagine(model: WorldModel, ac: ActorCritic, state: LatentState, features: torch.Tensor, horizon: int,
            *, sample_dynamics: bool = False, dynamics_grad: bool = True,
            generator: torch.Generator | None = None) -> Imagined:
    """Roll ``horizon`` steps from ``state`` / ``features [B, D]`` under the actor's sampled actions.

    ``dynamics_grad=False`` steps the model without autograd (REINFORCE needs gradients only
    through the actor's log-probabilities). The loop runs over the horizon, batched over B.
    """
    feats, acts, logps, ents = [features], [], [], []
    for _ in range(horizon):
        dist = ac.actor(feats[-1])
        a, logp = dist.sample(generator)
        a_model = a.to(features.dtype)
        with torch.set_grad_enabled(dynamics_grad and torch.is_grad_enabled()):
            state, f = model.step(state, a_model if dynamics_grad else a_model.detach(),
                                  sample=sample_dynamics, generator=generator)
        feats.append(f)
        acts.append(a_model)
        logps.append(logp)
        ents.append(dist.entropy(logp))
    return Imagined(torch.stack(feats, 1), torch.stack(acts, 1), torch.stack(logps, 1), torch.stack(ents, 1))


def imagined_rewards(reward_fn: RewardFn, traj: Imagined) -> torch.Tensor:
    """Rewards ``[B, H]`` of the transitions ``(z_h, a_h, z_{h+1})`` of ``traj``."""
    B, H = traj.actions.shape[:2]
    r = reward_fn(traj.features[:, :-1], traj.actions, traj.features[:, 1:])
    check_shape("reward_fn(...)", r, (B, H))
    return r


def losses(model: WorldModel, reward_fn: RewardFn, ac: ActorCritic, state: LatentState, features: torch.Tensor,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The actor's plus the critic's loss on one imagined batch, and detached metrics.

    Updates ``ac.return_scale`` with the batch's returns.
    """
    c = ac.config
    dynamics = c.gradient == "dynamics"
    traj = imagine(model, ac, state, features, c.horizon, sample_dynamics=c.sample_dynamics,
                   dynamics_grad=dynamics, generator=generator)
    rewards = imagined_rewards(reward_fn, traj)
    returns = lambda_returns(rewards, ac.target_critic(traj.features).to(rewards.dtype),
                             c.discount, c.return_lambda)  # [B, H]
    scale = ac.return_scale.update(returns).to(returns.dtype)
    entropy = traj.entropies.mean()
    raw = ac.critic.raw(traj.features[:, :-1].detach())  # [B, H], symlog(V) or V
    if dynamics:
        actor_loss = -(returns / scale).mean() - c.entropy_coef * entropy
    else:
        baseline = ac.critic(traj.features[:, :-1]).detach()
        advantage = ((returns - baseline) / scale).detach()
        actor_loss = -(traj.log_probs * advantage).mean() - c.entropy_coef * entropy
    critic_loss = 0.5 * ((raw - ac.critic.to_raw(returns.detach()).to(raw.dtype)) ** 2).mean()
    with torch.no_grad():
        values = ac.critic(traj.features[:, :1])  # [B, 1]
    metrics = {"return": returns[:, 0].mean(), "reward": rewards.mean(), "value": values[:, 0].mean(),
               "actor_loss": actor_loss, "critic_loss": critic_loss, "entropy": entropy,
               "return_scale": scale}
    return actor_loss + critic_loss, {k: v.detach() for k, v in metrics.items()}


def train_actor_critic(
    model: WorldModel,
    reward_fn: RewardFn,
    data_or_starts: StartData,
    config: ActorCriticConfig,
    run_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    *,
    actor_critic: ActorCritic | None = None,
    overwrite: bool = False,
) -> tuple[ActorCritic, dict[str, Any]]:
    """Train an actor-critic in the imagination of the frozen ``model`` (see the module docstring).

    Args:
        model: a ``WorldModel`` with the stepwise protocol; its parameters get no gradients and
            its ``requires_grad`` flags and train/eval mode are restored afterwards (likewise for
            ``reward_fn`` if it is a module).
        reward_fn: rewards of latent transitions (``worldmodels.agents.costs.RewardFn``, e.g. a ``RewardHead``).
        data_or_starts: start data (``worldmodels.agents.policy.starts.StartData``): a dataset folder, batches,
            contexts ``{"obs", "actions"}`` or a ready `StartStates` pool.
        config: settings; ``latent_dim``/``action_dim`` default to the model's, the action bounds
            must match the environment's (``ActorCriticConfig.for_action_space``).
        run_dir: if given, writes ``actor_critic.pt``, ``metrics.jsonl`` (every ``log_every``
            updates) and ``summary.json``; an existing ``actor_critic.pt`` there is refused
            unless ``overwrite``.
        device: where training runs (the model is moved there).
        progress: show a progress bar.
        actor_critic: continue training this one instead of a new one.

    Returns:
        ``(actor_critic, metrics)``: metrics of the last logging window (``return``: mean
        lambda-return from the start states, ``value``, ``critic_loss``, ``entropy`` ...), plus
        ``updates``, ``seconds``, ``imagined_steps`` and ``start_states``.
    """
    from tqdm.auto import tqdm

    if not supports_step(model):
        raise TypeError(f"model: {type(model).__name__} has no stepwise latent state (initial_state/step)")
    config = config.for_model(model)
    device = torch.device(device)
    out = Path(run_dir) if run_dir is not None else None
    if out is not None and (out / POLICY_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out / POLICY_FILE} exists; pass overwrite=True to replace it")
    model.to(device)
    ac = actor_critic if actor_critic is not None else ActorCritic(config)
    if actor_critic is not None:
        differ = [f for f in ARCHITECTURE_FIELDS if getattr(config, f) != getattr(ac.config, f)]
        if differ:
            raise ValueError(f"actor_critic: built with other {', '.join(differ)} than config")
        ac.config = config
    ac.to(device).train()
    starts = start_states(model, data_or_starts, context=config.context, stride=config.start_stride,
                          limit=config.max_starts, device=device)
    opt_actor = torch.optim.Adam(ac.actor.parameters(), lr=config.actor_lr)
    opt_critic = torch.optim.Adam(ac.critic.parameters(), lr=config.critic_lr)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    log = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / METRICS_FILE, "w")
    window: list[dict[str, torch.Tensor]] = []
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    bar = tqdm(range(1, config.updates + 1), desc="actor-critic", disable=not progress, leave=False)
    try:
        with frozen(model, reward_fn):
            for update in bar:
                state, feats = starts.sample(config.batch_size, generator)
                loss, metrics = losses(model, reward_fn, ac, state, feats, generator)
                opt_actor.zero_grad(set_to_none=True)
                opt_critic.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(ac.actor.parameters(), config.grad_clip)
                nn.utils.clip_grad_norm_(ac.critic.parameters(), config.grad_clip)
                opt_actor.step()
                opt_critic.step()
                ac.update_target()
                window.append(metrics)
                if update % config.log_every == 0 or update == config.updates:
                    last = {k: float(torch.stack([m[k] for m in window]).mean()) for k in window[0]}
                    for k in ("return", "critic_loss"):
                        check_finite(f"actor-critic {k} at update {update}", torch.tensor(last[k]))
                    window = []
                    bar.set_postfix(ret=f"{last['return']:.3g}", vloss=f"{last['critic_loss']:.3g}",
                                    ent=f"{last['entropy']:.3g}")
                    if log is not None:
                        log.write(json.dumps({"update": update, **last}) + "\n")
                        log.flush()
    finally:
        if log is not None:
            log.close()
    ac.eval()
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {**last, "updates": config.updates, "seconds": seconds,
                              "imagined_steps": config.updates * config.batch_size * config.horizon,
                              "start_states": len(starts)}
    if out is not None:
        ac.save(out / POLICY_FILE, overwrite=True)
        atomic_write_json(out / SUMMARY_FILE, {"config": asdict(config), "metrics": result})
    return ac, result
