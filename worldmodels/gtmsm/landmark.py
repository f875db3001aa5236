"""Landmark inference network of the GTM-SM (thesis appendix 7.10).

``q(s_t | s_{t-1}, a_t, z_t, m)``: the frame code ``z_t`` queries the DND in reverse (codes as
keys, states as values); the ``K'`` retrieved states pull the prior mean towards them,

    mu_q = mu_p + sum_k beta_k (mu_k - mu_p),   beta_k = sigmoid(NN(delta_k)) in [0, 1],
    log var_q = log var_p + NN(delta_{1:K'}, log var_{1:K'}, log var_p),

where ``delta_k`` is the squared distance in code space. When the agent is blocked, its frame
equals a memorised one and the state snaps back to the stored position.
"""

from __future__ import annotations

import torch
from torch import nn


class LandmarkInference(nn.Module):
    """Merge the prior ``N(mu_p, var_p)`` with states retrieved by a reverse DND read.

    Shapes: ``mu_p, logvar_p [..., S]``; ``sq_dist, valid [..., K]``;
    ``mu_k, logvar_k [..., K, S]``. Returns ``(mu_q, logvar_q) [..., S]``.
    """

    def __init__(self, state_dim: int, k: int, hidden: int = 32) -> None:
        super().__init__()
        self.k = k
        beta_in, beta_out = nn.Linear(1, hidden), nn.Linear(hidden, 1)  # created in this order (seeded init)
        self.beta_net = nn.Sequential(beta_in, nn.Tanh(), beta_out)
        nn.init.constant_(beta_out.bias, -3.0)  # start by trusting the prior
        n_in = k * (1 + state_dim) + state_dim
        var_in, var_out = nn.Linear(n_in, hidden), nn.Linear(hidden, state_dim)
        self.var_net = nn.Sequential(var_in, nn.Tanh(), var_out)
        nn.init.zeros_(var_out.weight)
        nn.init.zeros_(var_out.bias)

    def weights(self, sq_dist: torch.Tensor, valid: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(beta, feat) [..., K]``: pull weights in [0, 1] (0 where invalid) and the distance
        features ``log(delta + 1e-6)`` (10, "very far", where invalid). Depend on codes only."""
        feat = torch.log(torch.where(valid, sq_dist, torch.ones_like(sq_dist)) + 1e-6)
        feat = torch.where(valid, feat, torch.full_like(feat, 10.0))
        beta = torch.sigmoid(self.beta_net(feat.unsqueeze(-1))).squeeze(-1) * valid
        return beta, feat

    def logvar(self, feat: torch.Tensor, valid: torch.Tensor, logvar_p: torch.Tensor,
               logvar_k: torch.Tensor) -> torch.Tensor:
        """``log var_q = log var_p + NN(delta_{1:K}, log var_{1:K}, log var_p)``, ``[..., S]``."""
        lv_k = torch.where(valid.unsqueeze(-1), logvar_k, torch.zeros_like(logvar_k))
        return logvar_p + self.var_net(torch.cat([feat, lv_k.flatten(-2), logvar_p], -1))

    def forward(self, mu_p: torch.Tensor, logvar_p: torch.Tensor, sq_dist: torch.Tensor,
                valid: torch.Tensor, mu_k: torch.Tensor, logvar_k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        beta, feat = self.weights(sq_dist, valid)
        mu_q = mu_p + (beta.unsqueeze(-1) * (mu_k - mu_p.unsqueeze(-2))).sum(-2)
        return mu_q, self.logvar(feat, valid, logvar_p, logvar_k)
