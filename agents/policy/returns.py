"""Lambda-returns of imagined trajectories and the percentile scale that normalises them."""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.checks import check_shape


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, discount: float,
                   lambda_: float) -> torch.Tensor:
    """TD(lambda) returns of imagined trajectories, bootstrapped with the last value.

    ``rewards [B, H]``: ``rewards[:, h]`` is the reward of the step from state h to state h + 1;
    ``values [B, H + 1]``: the (target) critic's values of states 0 .. H. Returns ``[B, H]``::

        R_h = r_h + discount * ((1 - lambda_) * V_{h+1} + lambda_ * R_{h+1}),   R_H = V_H.

    ``lambda_ = 0`` gives one-step TD targets, ``lambda_ = 1`` the discounted reward sum plus the
    discounted last value.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards: expected shape [B, H], got {list(rewards.shape)}")
    B, H = rewards.shape
    check_shape("values", values, (B, H + 1))
    # the loop runs over the horizon (H ~ 15), batched over B
    next_return = values[:, H]
    out = []
    for h in range(H - 1, -1, -1):
        next_return = rewards[:, h] + discount * ((1 - lambda_) * values[:, h + 1] + lambda_ * next_return)
        out.append(next_return)
    return torch.stack(out[::-1], dim=1)


class ReturnScale(nn.Module):
    """DreamerV3's return normaliser: an exponential moving average S of the spread between two
    percentiles of the returns; returns (or advantages) are divided by ``max(1, S)``, so large
    returns are scaled down while small ones are not blown up (noise)."""

    # buffers (registered in __init__): the averaged spread S and whether it has been set, both 0-dim
    spread: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, decay: float = 0.99, percentiles: tuple[float, float] = (0.05, 0.95)):
        super().__init__()
        self.decay = float(decay)
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.register_buffer("spread", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> torch.Tensor:
        """Fold the spread of ``returns`` (any shape) into the average; returns ``max(1, S)``."""
        x = returns.detach().flatten().to(self.spread.dtype)
        q = torch.quantile(x, torch.tensor(self.percentiles, dtype=x.dtype, device=x.device))
        new = q[1] - q[0]
        averaged = self.decay * self.spread + (1 - self.decay) * new
        self.spread.copy_(torch.where(self.initialised, averaged, new))  # no host sync
        self.initialised.fill_(True)
        return self.scale()

    def scale(self) -> torch.Tensor:
        """The current divisor ``max(1, S)`` (0-dim)."""
        return self.spread.clamp_min(1.0)
