"""AE-RNN of thesis section 6.5.1: an LSTM over the codes of a frozen, pre-trained auto-encoder.

The KVAE's imputation baseline as the paper describes it: "a pretrained convolutional
auto-encoder, identical to the one used for the KVAE, feeds the encodings to an LSTM network.
During training the LSTM predicts the next encoding [...]; for data imputation the LSTM either
receives the previous output or, if available, the encoding of the observed frame". With the
KVAE's own encoder and decoder (``encode = lambda x: kvae.encode(x)[0]``, ``decode =
kvae.decode``) it differs from KVAE filtering only in the dynamics, so the two compare the
dynamics alone on the same decoder.

Recursion (``u_t = actions[:, t]`` leads from frame t to t + 1)::

    c_t = encode(x_t) if frame t is observed else p_t          (p_0 = c_0: frame 0 is observed)
    (h_t, s_t) = LSTM([c_t, u_t], (h_{t-1}, s_{t-1}));   p_{t+1} = c_t + W h_t + b

Training minimises the squared error of ``p_t`` against the observed codes, with the inputs
dropped at random (per-sequence drop probability uniform in ``train_drop``, the first
``first_observed`` frames kept) so that the LSTM learns to run on its own predictions, as it
must for imputation and generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.base import Batch, LossOutput, Observed, fill_missing
from worldmodels.checks import check_batch_frames, check_frames, check_sequences, frame_shape, model_dtype

Codec = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class CodeRNNConfig:
    """``code_dim`` m of the auto-encoder's codes, ``obs_shape`` (C, H, W), LSTM size."""

    code_dim: int
    action_dim: int
    obs_shape: tuple[int, int, int]
    hidden_dim: int = 50
    train_drop: tuple[float, float] = (0.0, 1.0)  # per-sequence input drop probability range
    first_observed: int = 4  # frames always fed to the LSTM during training

    def __post_init__(self) -> None:
        self.obs_shape = frame_shape(self.obs_shape)
        lo, hi = self.train_drop
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"train_drop: expected 0 <= lo <= hi <= 1, got {self.train_drop}")
        if self.code_dim < 1 or self.hidden_dim < 1:
            raise ValueError(f"code_dim and hidden_dim must be >= 1, got {self.code_dim}, {self.hidden_dim}")


class CodeRNN(nn.Module):
    """LSTM over frozen codes. ``encode``: frames ``[B, T, C, H, W] -> [B, T, m]``; ``decode``:
    codes ``[..., m] -> frames [..., C, H, W]`` in [0, 1]. Neither is trained nor saved with
    the LSTM: only the LSTM and its output layer are parameters."""

    def __init__(self, config: CodeRNNConfig, encode: Codec, decode: Codec) -> None:
        super().__init__()
        self.config = config
        self.encode_fn, self.decode_fn = encode, decode
        m, A = config.code_dim, config.action_dim
        self.rnn = nn.LSTMCell(m + A, config.hidden_dim)
        self.head = nn.Linear(config.hidden_dim, m)
        nn.init.zeros_(self.head.weight)  # start as "the code stays where it is"
        nn.init.zeros_(self.head.bias)

    def codes(self, obs: torch.Tensor) -> torch.Tensor:
        """Frozen encodings ``[B, T, m]``."""
        with torch.no_grad():
            c = self.encode_fn(obs)
        if c.shape != (*obs.shape[:2], self.config.code_dim):
            raise ValueError(f"encode: expected codes of shape {[*obs.shape[:2], self.config.code_dim]}, "
                             f"got {list(c.shape)}")
        return c.detach()

    def run(self, codes: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions ``p [B, T, m]`` (``p_0 = c_0``) and filled codes ``[B, T, m]`` (observed
        codes where ``mask = 1``, the LSTM's own predictions elsewhere)."""
        B, T, _ = codes.shape
        h = codes.new_zeros(B, self.config.hidden_dim)
        s = torch.zeros_like(h)
        pred = codes[:, 0]
        preds, filled = [], []
        for t in range(T):
            m_t = mask[:, t, None]
            c_t = m_t * codes[:, t] + (1 - m_t) * pred
            preds.append(pred)
            filled.append(c_t)
            if t < T - 1:
                h, s = self.rnn(torch.cat([c_t, actions[:, t]], -1), (h, s))
                pred = c_t + self.head(h)
        return torch.stack(preds, 1), torch.stack(filled, 1)

    def _check(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return check_sequences(obs, actions, mask, self.config.obs_shape, self.config.action_dim)

    def loss(self, batch: Batch) -> LossOutput:
        """Mean squared error per observed code of the next-code predictions (t >= 1)."""
        mask = self._check(batch.obs, batch.actions, batch.mask)
        batch = check_batch_frames(batch, model_dtype(self), value_range=None)
        codes = self.codes(batch.obs)
        B, T = mask.shape
        lo, hi = self.config.train_drop
        p = lo + (hi - lo) * torch.rand(B, 1, device=mask.device)
        keep = (torch.rand(B, T, device=mask.device) >= p).to(mask.dtype)
        keep[:, :self.config.first_observed] = 1.0
        preds, _ = self.run(codes, batch.actions, mask * keep)
        err = ((preds - codes) ** 2).sum(-1)[:, 1:] * mask[:, 1:]
        n = mask[:, 1:].sum().clamp(min=1.0)
        loss = err.sum() / n
        return LossOutput(loss=loss, terms={"code_mse": loss.detach()})

    @torch.no_grad()
    def impute(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor,
               method: str = "filter", observed: Observed = "estimate") -> torch.Tensor:
        """Frames ``[B, T, C, H, W]``: decoded observed codes, and the LSTM's predictions where
        ``mask = 0``. The LSTM only filters forward, so ``method`` must be ``"filter"``."""
        if method != "filter":
            raise ValueError(f"method: the AE-RNN only filters forward, expected 'filter', got {method!r}")
        mask = self._check(obs, actions, mask)
        obs = check_frames(obs, mask, model_dtype(self), value_range=None)
        _, filled = self.run(self.codes(obs), actions, mask)
        return fill_missing(self.decode_fn, filled, obs, mask, observed)
