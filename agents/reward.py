"""A reward head on the world model's latents, trained on the dataset's rewards.

``RewardHead`` follows the ``worldmodels.agents.costs.RewardFn`` signature: it predicts ``r_t`` from the
latent ``z_t`` at which ``a_t`` is taken, the action, and optionally the next latent ``z_{t+1}``.
Training targets come from filtering the real sequences with the model (``observe`` on every
prefix, so the latents are the ones the agent sees at decision time).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from worldmodels.atomic_io import atomic_write
from worldmodels.base import Batch, WorldModel
from worldmodels.checks import check_finite, check_shape


class RewardHeadFileError(ValueError):
    """A reward-head file that is not a head saved by `RewardHead.save` (or is damaged)."""


@dataclass
class RewardHeadConfig:
    """Reward head architecture and training.

    Attributes:
        latent_dim, action_dim: sizes D and A.
        use_action: feed ``a_t``.  use_next: feed ``z_{t+1}`` too.
        hidden: MLP hidden sizes.
        steps, batch_size, lr, weight_decay: Adam training on the extracted transitions.
        skip_first: transitions of the first ``skip_first`` steps of each sequence are dropped
            (the filter has not converged yet, e.g. velocity unknown from one frame).
        clip_inputs: clamp inputs to the range seen in training (no extrapolation for the
            planner to exploit).
    """

    latent_dim: int
    action_dim: int
    use_action: bool = True
    use_next: bool = True
    hidden: tuple[int, ...] = (64, 64)
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    skip_first: int = 2
    clip_inputs: bool = True
    seed: int = 0


class RewardHead(nn.Module):
    """MLP ``(z_t, a_t, z_{t+1}) -> r_t`` with input standardisation learned from data."""

    # buffers (registered in __init__): input statistics [d_in] and clamp range, output scale []
    in_mean: torch.Tensor
    in_std: torch.Tensor
    in_low: torch.Tensor
    in_high: torch.Tensor
    out_mean: torch.Tensor
    out_std: torch.Tensor

    def __init__(self, config: RewardHeadConfig):
        super().__init__()
        self.config = config
        d_in = config.latent_dim * (2 if config.use_next else 1) + (config.action_dim if config.use_action else 0)
        layers: list[nn.Module] = []
        sizes = [d_in, *config.hidden]
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), nn.SiLU()]
        layers.append(nn.Linear(sizes[-1], 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("in_mean", torch.zeros(d_in))
        self.register_buffer("in_std", torch.ones(d_in))
        # range of the standardised training inputs: inputs are clamped to it, so a planner
        # cannot exploit the head's extrapolation far outside the data (set by training)
        self.register_buffer("in_low", torch.full((d_in,), -float("inf")))
        self.register_buffer("in_high", torch.full((d_in,), float("inf")))
        self.register_buffer("out_mean", torch.zeros(()))
        self.register_buffer("out_std", torch.ones(()))

    def _inputs(self, before: torch.Tensor, actions: torch.Tensor, after: torch.Tensor | None) -> torch.Tensor:
        parts = [before]
        if self.config.use_action:
            parts.append(actions.to(before.dtype))
        if self.config.use_next:
            if after is None:
                raise ValueError("after: required by a reward head with use_next=True")
            parts.append(after)
        return torch.cat(parts, dim=-1)

    def forward(self, before: torch.Tensor, actions: torch.Tensor,
                after: torch.Tensor | None = None) -> torch.Tensor:
        """``before [..., D]``, ``actions [..., A]``, ``after [..., D]`` -> rewards ``[...]``."""
        D, A = self.config.latent_dim, self.config.action_dim
        if before.shape[-1] != D:
            raise ValueError(f"before: expected shape [..., {D}], got {list(before.shape)}")
        if actions.shape[-1] != A:
            raise ValueError(f"actions: expected shape [..., {A}], got {list(actions.shape)}")
        x = (self._inputs(before, actions, after) - self.in_mean) / self.in_std
        x = torch.maximum(torch.minimum(x, self.in_high), self.in_low)
        return self.net(x).squeeze(-1) * self.out_std + self.out_mean

    def _folded_layers(self) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """The network for ``rollout_rewards`` with the input scale and every bias folded into
        the weights: ``(low, high, weights)``.

        ``low, high [d_in, 1]`` are the clamp range of the *centred* input ``x - in_mean``
        (``in_low * in_std`` ...); ``weights[i] [out_i, in_i + 1]`` is layer i with its bias as
        the last column, the first layer's weight divided by ``in_std``. So ``weights[0] @
        [clamp(x - in_mean); 1]`` is the first layer on the standardised, clamped input
        (``in_std > 0``). Centring before scaling keeps a feature with a tiny ``in_std`` exact:
        folding the mean into the bias too would cancel two large products.
        """
        layers = list(self.net)
        for i, mod in enumerate(layers):
            expected = nn.Linear if i % 2 == 0 else nn.SiLU
            if not isinstance(mod, expected) or (i == len(layers) - 1 and not isinstance(mod, nn.Linear)):
                raise NotImplementedError(f"rollout_rewards: expected Linear/SiLU layers ending in Linear, got {mod}")
        lin = [mod for mod in layers if isinstance(mod, nn.Linear)]
        std = self.in_std
        weights = [torch.cat([lin[0].weight / std, lin[0].bias[:, None]], dim=1)]
        weights += [torch.cat([m.weight, m.bias[:, None]], dim=1) for m in lin[1:]]
        return (self.in_low * std)[:, None], (self.in_high * std)[:, None], weights

    @torch.no_grad()
    def rollout_rewards(self, start: torch.Tensor, latents: torch.Tensor,
                        actions: torch.Tensor) -> torch.Tensor:
        """Rewards of imagined trajectories in the features-first layout of planning.

        ``start [D, R]`` (latent before the first action), ``latents [H, D, R]`` (after each
        action), ``actions [H, A, R]`` -> ``[H, R]``; equals ``forward(before, actions, after)``
        on the transposed tensors up to float rounding. One step at a time through reused
        ``[hidden + 1, R]`` buffers whose last row is ones (the biases are folded into the
        weights, ``_folded_layers``), so the MLP's activations stay in cache and nothing is
        allocated per call but the output (no autograd).
        """
        H, D, R = latents.shape
        check_shape("start", start, (D, R))
        check_shape("actions", actions, (H, self.config.action_dim, R))
        ws = self.__dict__.setdefault("_workspace", {})
        like = latents

        def buf(name: str, rows: int, ones_row: bool) -> torch.Tensor:
            """``[rows (+1), R]`` reused buffer; with ``ones_row`` its extra last row is ones."""
            total = rows + int(ones_row)
            b = ws.get(name)
            if b is None or b.shape[0] != total or b.shape[1] < R or b.dtype != like.dtype \
                    or b.device != like.device:
                b = ws[name] = torch.empty(total, R, dtype=like.dtype, device=like.device)
                if ones_row:
                    b[rows:].fill_(1.0)
            return b[:, :R]

        low, high, weights = self._folded_layers()
        mean = self.in_mean[:, None]
        d_in = low.shape[0]
        x = buf("x", d_in, True)
        hidden = [buf(f"h{i}", w.shape[0], True) for i, w in enumerate(weights[:-1])]
        # (weights, input, pre-activation view) of each hidden layer, made once
        chain = list(zip(weights[:-1], [x, *hidden[:-1]], [a[:-1] for a in hidden]))
        last, x_in, silu = weights[-1], x[:d_in], torch.nn.functional.silu
        out = torch.empty(H, R, dtype=like.dtype, device=like.device)
        for t in range(H):
            parts = [start if t == 0 else latents[t - 1]]
            if self.config.use_action:
                parts.append(actions[t])
            if self.config.use_next:
                parts.append(latents[t])
            torch.cat(parts, dim=0, out=x_in)
            torch.clamp(x_in.sub_(mean), low, high, out=x_in)
            for w, inp, pre in chain:
                silu(torch.mm(w, inp, out=pre), inplace=True)
            torch.mm(last, hidden[-1] if hidden else x, out=out[t:t + 1])
        return out.mul_(self.out_std).add_(self.out_mean)

    # --- persistence -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Atomic ``torch.save`` of config and weights."""
        payload = {"config": asdict(self.config), "state_dict": self.state_dict()}
        return atomic_write(path, lambda f: torch.save(payload, f))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> RewardHead:
        """A head saved by `save`. The file is read as data only (``weights_only=True``); anything
        else (a pickled object, a wrong schema, mis-shaped weights) raises `RewardHeadFileError`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"reward head not found: {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling refused, truncated zip, not a torch file ...
            first = str(e).splitlines()[0] if str(e) else ""
            raise RewardHeadFileError(f"reward head {path} cannot be read as data: {type(e).__name__}: "
                                      f"{first[:200]}") from e
        if (not isinstance(blob, dict) or not isinstance(blob.get("config"), dict)
                or not isinstance(blob.get("state_dict"), dict)
                or not all(isinstance(v, torch.Tensor) for v in blob["state_dict"].values())):
            raise RewardHeadFileError(f"reward head {path}: expected {{'config': mapping, 'state_dict': tensors}}")
        cfg = dict(blob["config"])
        known = {f.name for f in fields(RewardHeadConfig)}
        if set(cfg) - known:
            raise RewardHeadFileError(f"reward head {path}: unknown config keys {sorted(set(cfg) - known)}")
        try:
            if "hidden" in cfg:
                cfg["hidden"] = tuple(int(h) for h in cfg["hidden"])
            head = cls(RewardHeadConfig(**cfg))
            head.load_state_dict(blob["state_dict"])
        except (TypeError, ValueError, RuntimeError) as e:
            raise RewardHeadFileError(f"reward head {path}: config or weights do not fit: "
                                      f"{str(e).splitlines()[0][:200]}") from e
        return head.to(device)


@torch.no_grad()
def filtered_latents(model: WorldModel, obs: torch.Tensor, actions: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """Filtered latents ``[B, T, D]``: ``[:, t]`` = ``observe(obs[:, :t+1]).features()``.

    Uses the model's own ``filtered_latents(obs, actions, mask)`` if it has one (one pass), or
    the KVAE's ``infer_latents`` (``[z_filtered, filtered a]``, checked against ``observe`` at the
    last step); otherwise calls ``observe`` on every prefix (T calls, batched over B).
    """
    if obs.dim() != 5:
        raise ValueError(f"obs: expected shape [B, T, C, H, W], got {list(obs.shape)}")
    B, T = obs.shape[:2]
    check_shape("actions", actions, (B, T, model.action_dim))
    # optional fast paths a model may offer beyond the WorldModel protocol
    own: Callable[..., torch.Tensor] | None = getattr(model, "filtered_latents", None)
    if callable(own):
        return own(obs, actions, mask)
    infer: Callable[..., dict[str, torch.Tensor]] | None = getattr(model, "infer_latents", None)
    if callable(infer):
        try:
            lat = infer(obs, actions, mask)
            z = torch.cat([lat["z_filtered"], lat["filtered"]], dim=-1)
        except (KeyError, TypeError, NotImplementedError):
            z = None
        if z is not None and z.shape == (B, T, model.latent_dim):
            last = model.observe(obs, actions, mask).features()
            if torch.allclose(z[:, -1], last, rtol=1e-4, atol=1e-4):
                return z
    feats = [model.observe(obs[:, : t + 1], actions[:, : t + 1],
                           None if mask is None else mask[:, : t + 1]).features() for t in range(T)]
    return torch.stack(feats, dim=1)


@torch.no_grad()
def transitions_from_batches(model: WorldModel, batches: Iterable[Batch], skip_first: int = 0,
                             device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """``(z_t, a_t, z_{t+1}, r_t)`` for t in ``[skip_first, T-2]`` from dataset batches.

    Returns a dict of flat tensors ``before [M, D]``, ``actions [M, A]``, ``after [M, D]``,
    ``rewards [M]``.
    """
    out: dict[str, list[torch.Tensor]] = {"before": [], "actions": [], "after": [], "rewards": []}
    for batch in batches:
        batch = batch.to(device)
        if batch.rewards is None:
            raise ValueError("batch.rewards: the dataset has no rewards")
        z = filtered_latents(model, batch.obs, batch.actions, batch.mask)
        s = slice(skip_first, batch.seq_len - 1)
        out["before"].append(z[:, s].flatten(0, 1))
        out["after"].append(z[:, skip_first + 1:].flatten(0, 1))
        out["actions"].append(batch.actions[:, s].flatten(0, 1))
        out["rewards"].append(batch.rewards[:, s].flatten(0, 1))
    if not out["before"]:
        raise ValueError("batches: no data")
    return {k: torch.cat(v) for k, v in out.items()}


def reward_errors(head: RewardHead, data: dict[str, torch.Tensor]) -> dict[str, float]:
    """Mean squared / absolute error and R^2 of ``head`` on transitions ``data``."""
    with torch.no_grad():
        pred = head(data["before"], data["actions"], data["after"])
        err = pred - data["rewards"]
        var = data["rewards"].var(unbiased=False).clamp_min(1e-12)
        mse = float((err ** 2).mean())
        return {"mse": mse, "mae": float(err.abs().mean()), "r2": 1.0 - mse / float(var),
                "target_var": float(var), "num": int(err.numel())}


def train_reward_head(
    model: WorldModel,
    train_batches: Iterable[Batch],
    valid_batches: Iterable[Batch] | None = None,
    config: RewardHeadConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[RewardHead, dict[str, float]]:
    """Fit a reward head on latents of a frozen ``model``; returns the head and its errors
    (``train_*`` and, with ``valid_batches``, held-out ``valid_*``)."""
    from tqdm.auto import tqdm

    config = config or RewardHeadConfig(latent_dim=model.latent_dim, action_dim=model.action_dim)
    model.eval()
    train = transitions_from_batches(model, train_batches, config.skip_first, device)
    for k, v in train.items():
        check_finite(f"train {k}", v)
    with torch.random.fork_rng(devices=[]):  # the initial weights follow config.seed, not the caller's RNG
        torch.manual_seed(config.seed)
        head = RewardHead(config)
    head = head.to(device)
    x = head._inputs(train["before"], train["actions"], train["after"])
    head.in_mean.copy_(x.mean(0))
    head.in_std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))
    xs = (x - head.in_mean) / head.in_std
    if config.clip_inputs:
        head.in_low.copy_(xs.min(0).values)
        head.in_high.copy_(xs.max(0).values)
    head.out_mean.copy_(train["rewards"].mean())
    head.out_std.copy_(train["rewards"].std(unbiased=False).clamp_min(1e-6))
    opt = torch.optim.Adam(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    M = train["rewards"].numel()
    head.train()
    for _ in tqdm(range(config.steps), desc="reward head", disable=not progress, leave=False):
        idx = torch.randint(0, M, (min(config.batch_size, M),), generator=gen).to(device)
        pred = head(train["before"][idx], train["actions"][idx], train["after"][idx])
        loss = ((pred - train["rewards"][idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    head.eval()
    metrics = {f"train_{k}": v for k, v in reward_errors(head, train).items()}
    if valid_batches is not None:
        valid = transitions_from_batches(model, valid_batches, config.skip_first, device)
        metrics.update({f"valid_{k}": v for k, v in reward_errors(head, valid).items()})
    return head, metrics
