"""The actor's action distributions, and the actor and critic networks on latent features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from worldmodels.checks import model_dtype

from .config import ActorCriticConfig


def mlp(d_in: int, hidden: tuple[int, ...], d_out: int, layer_norm: bool) -> nn.Sequential:
    """``Linear -> [LayerNorm] -> SiLU`` per hidden size, then a ``Linear`` to ``d_out``."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(d_in, h)] + ([nn.LayerNorm(h)] if layer_norm else []) + [nn.SiLU()]
        d_in = h
    layers.append(nn.Linear(d_in, d_out))
    return nn.Sequential(*layers)


class SquashedNormal:
    """A Gaussian squashed by ``tanh`` and scaled to ``[low, high]``, per action dimension.

    ``mean, std [..., A]`` are the pre-squash Gaussian's; ``low, high [A]`` the box bounds.
    Samples are reparameterised (gradients reach ``mean`` and ``std``).
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, low: torch.Tensor, high: torch.Tensor):
        self.mean, self.std = mean, std
        self.low, self.half = low, (high - low) / 2

    def _to_box(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (u + 1) * self.half

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action [..., A], log_prob [...])`` of one reparameterised draw."""
        eps = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        x = self.mean + self.std * eps
        return self._to_box(torch.tanh(x)), self._log_prob_pre(x)

    def _log_prob_pre(self, x: torch.Tensor) -> torch.Tensor:
        normal = -0.5 * ((x - self.mean) / self.std) ** 2 - self.std.log() - 0.5 * math.log(2 * math.pi)
        # d action / d x = half * (1 - tanh(x)^2); log(1 - tanh^2) = 2 (log 2 - x - softplus(-2x))
        log_det = 2 * (math.log(2.0) - x - F.softplus(-2 * x)) + self.half.log()
        return (normal - log_det).sum(-1)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """Log density ``[...]`` of box actions ``[..., A]`` (clipped just inside the bounds)."""
        u = ((action - self.low) / self.half - 1).clamp(-1 + 1e-6, 1 - 1e-6)
        return self._log_prob_pre(torch.atanh(u))

    def entropy(self, log_prob: torch.Tensor) -> torch.Tensor:
        """One-sample entropy estimate ``-log p(a)`` ``[...]`` for a draw with ``log_prob``."""
        return -log_prob

    def mode(self) -> torch.Tensor:
        """The deterministic action ``[..., A]``: the squashed Gaussian mean."""
        return self._to_box(torch.tanh(self.mean))


class OneHotCategorical:
    """A categorical over A choices with one-hot samples and straight-through gradients.

    ``logits [..., A]``; ``unimix`` of the uniform distribution is mixed in (DreamerV3), so no
    action's probability collapses to zero.
    """

    def __init__(self, logits: torch.Tensor, unimix: float = 0.0):
        probs = logits.softmax(-1)
        if unimix > 0:
            probs = (1 - unimix) * probs + unimix / logits.shape[-1]
        self.probs = probs
        self.log_probs = probs.clamp_min(1e-12).log()

    def sample(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(one-hot action [..., A], log_prob [...])``; the action's gradient is the probabilities'."""
        flat = self.probs.detach().reshape(-1, self.probs.shape[-1])
        idx = torch.multinomial(flat, 1, generator=generator).reshape(self.probs.shape[:-1])
        onehot = F.one_hot(idx, self.probs.shape[-1]).to(self.probs.dtype)
        return onehot + self.probs - self.probs.detach(), self.log_prob(onehot)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        """Log probability ``[...]`` of one-hot actions ``[..., A]``."""
        return (action.detach() * self.log_probs).sum(-1)

    def entropy(self, log_prob: torch.Tensor | None = None) -> torch.Tensor:
        """Exact entropy ``[...]``."""
        return -(self.probs * self.log_probs).sum(-1)

    def mode(self) -> torch.Tensor:
        """The most probable action, one-hot ``[..., A]``."""
        return F.one_hot(self.probs.argmax(-1), self.probs.shape[-1]).to(self.probs.dtype)


ActionDist = SquashedNormal | OneHotCategorical


class Actor(nn.Module):
    """Policy ``pi(a | z)`` on latent features ``z [..., D]``: a squashed Gaussian in the action box
    (continuous) or a one-hot categorical (discrete)."""

    # buffers (registered in __init__): the action box ``[A]`` (0 and 1 for discrete actions)
    low: torch.Tensor
    high: torch.Tensor

    def __init__(self, config: ActorCriticConfig):
        super().__init__()
        self.config = config
        D, A = config.dims()
        self.net = mlp(D, config.hidden, A if config.discrete else 2 * A, config.layer_norm)
        low, high = config.bounds() if not config.discrete else ((0.0,) * A, (1.0,) * A)
        self.register_buffer("low", torch.tensor(low))
        self.register_buffer("high", torch.tensor(high))

    def forward(self, features: torch.Tensor) -> ActionDist:
        """The action distribution at ``features [..., D]`` (computed in the actor's dtype)."""
        out = self.net(features.to(self.low.dtype))
        c = self.config
        if c.discrete:
            return OneHotCategorical(out, c.unimix)
        mean, raw_std = out.chunk(2, -1)
        std = c.min_std + (c.max_std - c.min_std) * torch.sigmoid(raw_std + 2.0)
        return SquashedNormal(mean, std, self.low, self.high)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) log(1 + |x|)``: compresses large magnitudes, near identity around 0 (DreamerV3)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `symlog`: ``sign(x) (exp(|x|) - 1)``."""
    return torch.sign(x) * torch.expm1(x.abs())


class Critic(nn.Module):
    """State value ``V(z)``: latent features ``[..., D]`` -> values ``[...]`` (in the input's dtype),
    so it can serve as ``rollout_objective``'s ``value_fn``.

    With ``config.critic_space == "symlog"`` the network outputs ``symlog(V)`` (``raw``) and is
    regressed in that space, so values of any magnitude (a discount of 0.99 sums ~100 rewards) are
    learned at the same pace as small ones.
    """

    def __init__(self, config: ActorCriticConfig):
        super().__init__()
        self.space = config.critic_space
        self.net = mlp(config.dims()[0], config.hidden, 1, config.layer_norm)

    def raw(self, features: torch.Tensor) -> torch.Tensor:
        """The network's output ``[...]`` (``symlog(V)`` or ``V``), in the network's dtype."""
        return self.net(features.to(model_dtype(self.net))).squeeze(-1)

    def to_raw(self, values: torch.Tensor) -> torch.Tensor:
        """Values ``[...]`` in the space of `raw` (regression targets)."""
        return symlog(values) if self.space == "symlog" else values

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out = self.raw(features)
        return (symexp(out) if self.space == "symlog" else out).to(features.dtype)
