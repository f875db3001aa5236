"""The dynamics parameter network alpha_t(a_{0:t-1}) that mixes the K LGSSM modes (eq. 6.10)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DynamicsNetwork(nn.Module):
    """Mixture weights ``alpha_t [.., K]`` from the previous encodings.

    ``lstm``: ``d_t = LSTM(a_{t-1}, d_{t-1})``, ``alpha_t = softmax(W d_t + b)`` (50 units in the
    paper); ``mlp``: ``alpha_t = softmax(MLP(a_{t-1}))`` (figure 6.4). The input before the first
    frame is a learned ``a_init`` (the paper's a_0). With ``concrete=True`` training draws alpha
    from a Concrete distribution (a relaxed switching LGSSM); evaluation uses the softmax.
    """

    def __init__(self, a_dim: int, num_modes: int, kind: str = "lstm", hidden: int = 50,
                 concrete: bool = False, temperature: float = 0.5) -> None:
        super().__init__()
        self.kind = kind
        self.a_dim = a_dim
        self.num_modes = num_modes
        self.concrete = concrete
        self.temperature = temperature
        self.a_init = nn.Parameter(torch.zeros(a_dim))
        if kind == "lstm":
            self.rnn = nn.LSTM(a_dim, hidden, batch_first=True)
            self.head = nn.Linear(hidden, num_modes)
        elif kind == "mlp":
            self.mlp = nn.Sequential(nn.Linear(a_dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, num_modes))
        else:
            raise ValueError(f"kind: expected 'lstm' or 'mlp', got {kind!r}")

    def network_parameters(self) -> list[nn.Parameter]:
        """Parameters of the network proper (everything but ``a_init``)."""
        return [p for n, p in self.named_parameters() if n != "a_init"]

    def _weights(self, logits: torch.Tensor) -> torch.Tensor:
        if self.concrete and self.training:
            u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
            gumbel = -torch.log(-torch.log(u))
            return F.softmax((logits + gumbel) / self.temperature, dim=-1)
        return F.softmax(logits, dim=-1)

    def initial_state(self, batch_shape: tuple[int, ...], like: torch.Tensor):
        """State before the first frame: ``(a_prev, rnn_state)`` with ``a_prev = a_init``."""
        a_prev = self.a_init.to(like).expand(*batch_shape, self.a_dim)
        return a_prev, None

    def sequence(self, a: torch.Tensor) -> torch.Tensor:
        """``alpha [B, T, K]`` for fully known encodings ``a [B, T, a_dim]`` in one pass.

        ``alpha[:, t]`` depends on ``a_init, a[:, :t]`` only.
        """
        B = a.shape[0]
        inputs = torch.cat([self.a_init.to(a).expand(B, 1, self.a_dim), a[:, :-1]], dim=1)
        if self.kind == "lstm":
            h, _ = self.rnn(inputs)
            logits = self.head(h)
        else:
            logits = self.mlp(inputs)
        return self._weights(logits)

    def step(self, a_prev: torch.Tensor, state=None):
        """One online step: ``a_prev [N, a_dim]`` -> ``(alpha [N, K], new_state)``."""
        if self.kind == "lstm":
            h, state = self.rnn(a_prev.unsqueeze(1), state)
            logits = self.head(h[:, 0])
        else:
            logits = self.mlp(a_prev)
        return self._weights(logits), state
