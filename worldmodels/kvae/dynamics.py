"""The dynamics parameter network alpha_t(a_{0:t-1}) that mixes the K LGSSM modes (eq. 6.10)."""

from __future__ import annotations

from typing import cast

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
        """One online step: ``a_prev [N, a_dim]`` -> ``(alpha [N, K], new_state)``.

        ``state`` is in ``nn.LSTM``'s layout, ``(h, c)`` each ``[1, N, hidden]`` (None: zeros);
        the MLP network keeps none (None).
        """
        if self.kind != "lstm":
            return self._weights(self.mlp(a_prev)), None
        if state is None:
            h = c = a_prev.new_zeros(a_prev.shape[0], self.rnn.hidden_size)
        else:
            h, c = state[0][0], state[1][0]
        h, c = self.lstm_cell(a_prev, h, c)
        return self._weights(self.head(h)), (h.unsqueeze(0), c.unsqueeze(0))

    def lstm_cell(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of the (single-layer) ``self.rnn``: ``x [N, a_dim]``, ``h, c [N, hidden]``.

        The LSTM equations on ``self.rnn``'s weights (gate order i, f, g, o) with plain tensor
        ops: ``nn.LSTM`` on a length-1 sequence goes through the oneDNN RNN kernel, whose per-call
        set-up and thread synchronisation cost far more than the arithmetic of one step.
        """
        w_ih, w_hh, b_ih, b_hh = lstm_weights(self.rnn)
        gates = F.linear(x, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


def lstm_weights(rnn: nn.LSTM) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """First-layer ``(weight_ih [4h, in], weight_hh [4h, h], bias_ih [4h], bias_hh [4h])`` of
    ``rnn`` (gate order i, f, g, o); the biases are None for ``bias=False``."""
    # nn.LSTM registers its parameters by name at run time: the type stubs cannot see them
    w_ih = cast(torch.Tensor, rnn.weight_ih_l0)
    w_hh = cast(torch.Tensor, rnn.weight_hh_l0)
    if not rnn.bias:
        return w_ih, w_hh, None, None
    return w_ih, w_hh, cast(torch.Tensor, rnn.bias_ih_l0), cast(torch.Tensor, rnn.bias_hh_l0)
