"""State-space transitions of the GTM-SM (thesis eqs. 7.3, 7.4 and section 7.4.2.2)."""

from __future__ import annotations

import torch
from torch import nn

from worldmodels.gtmsm.config import GTMSMConfig


class ScaledLinear(nn.Linear):
    """``nn.Linear`` whose weights are stored divided by ``scale`` and multiplied back in the
    forward pass: same function and initialisation, but Adam's steps act ``scale`` times
    faster on it (a per-module learning-rate multiplier that any optimiser setup respects)."""

    def __init__(self, n_in: int, n_out: int, scale: float = 1.0) -> None:
        super().__init__(n_in, n_out)
        self.scale = float(scale)
        with torch.no_grad():
            self.weight.div_(self.scale)
            self.bias.div_(self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.scale, self.bias * self.scale)


def _mlp(sizes: list[int], scale: float = 1.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(ScaledLinear(sizes[i], sizes[i + 1], scale))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class StateTransition(nn.Module):
    """Mean of ``p(s_t | s_{t-1}, a_t)``: ``s_{t-1} + R(s_{t-1}) d_t * gate``.

    * displacement ``d_t = M a_t`` (learned ``M``, no bias), or with ``momentum``
      ``d_t = c_s * tanh(sigmoid(c_f) * d_{t-1} + M a_t)`` (7.4.2.2);
    * ``rotation``: ``R`` rotates the (x, y) part of ``d_t`` by the angle ``s^{(3)}`` (eq. 7.4);
    * ``gate``: ``sigma_d(s_{t-1} + R d_t)`` in (0, 1), an MLP that learns to cancel moves into
      walls (eq. 7.3). A known move factor (e.g. "the frame changed") can replace it.

    Shapes: states ``[..., S]``, actions ``[..., A]``, displacements ``[..., S]``.
    """

    # with config.gate (set in __init__): the gate MLP, and buffers with the running mean [S],
    # covariance [S, S] and whitening map [S, S] of its inputs and the statistics updates seen []
    gate_net: nn.Sequential
    gate_mean: torch.Tensor
    gate_cov: torch.Tensor
    gate_white: torch.Tensor
    gate_stats_updates: torch.Tensor

    def __init__(self, config: GTMSMConfig) -> None:
        super().__init__()
        self.config = config
        S = config.state_dim
        self.M = nn.Linear(config.action_dim, S, bias=False)
        if config.gate:
            self.gate_net = _mlp([S, *config.gate_hidden, 1], config.gate_lr_scale)
            last = self.gate_net[-1]
            if not isinstance(last, ScaledLinear):
                raise TypeError(f"gate_net: expected a ScaledLinear output layer, got {last}")
            with torch.no_grad():  # start open: sigma(3) = 0.95
                last.bias.fill_(3.0 / config.gate_lr_scale)
            # input whitening (running statistics, like batch norm): the learned state space
            # can be rotated and very anisotropic (thesis fig. 7.2c); whitened inputs keep the
            # wall boundary easy to learn for a small MLP
            self.register_buffer("gate_mean", torch.zeros(S))
            self.register_buffer("gate_cov", torch.eye(S))
            self.register_buffer("gate_white", torch.eye(S))
            self.register_buffer("gate_stats_updates", torch.zeros((), dtype=torch.long))
        if config.momentum:
            self.c_f = nn.Parameter(torch.full((S,), -1.0))
            self.c_s = nn.Parameter(torch.ones(S))

    def displacement(self, actions: torch.Tensor, prev_disp: torch.Tensor | None = None
                     ) -> torch.Tensor:
        """``d_t`` in agent space, ``[..., S]``."""
        d = self.M(actions)
        if self.config.momentum:
            if prev_disp is None:
                prev_disp = torch.zeros_like(d)
            d = self.c_s * torch.tanh(torch.sigmoid(self.c_f) * prev_disp + d)
        return d

    def to_state_space(self, state: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
        """Rotate the planar part of ``disp`` by the angle ``state[..., 2]`` (identity otherwise)."""
        if not self.config.rotation:
            return disp
        c, s = torch.cos(state[..., 2]), torch.sin(state[..., 2])
        dx, dy, da = disp.unbind(-1)
        return torch.stack([c * dx - s * dy, s * dx + c * dy, da], -1)

    def gate(self, projected: torch.Tensor, basis: torch.Tensor | None = None) -> torch.Tensor:
        """``sigma_d`` at the projected state ``s_{t-1} + R d_t``: ``[..., 1]`` in (0, 1).
        ``basis``: ``gate_basis()``, computed once for many calls (optional)."""
        if not self.config.gate:
            return projected.new_ones(*projected.shape[:-1], 1)
        return torch.sigmoid(self.gate_logit(projected, basis))

    def gate_basis(self) -> torch.Tensor | None:
        """``[S, S]`` map of ``gate_input="action_basis"`` (None for the other inputs): the
        coordinates of a state in the singular basis of ``M`` (detached), scaled by ``1/sv``.
        With fewer action than state dimensions (``A < S``, e.g. rotation driven by 2-d
        actions) the directions no action spans are scaled by the smallest singular value."""
        if not self.config.gate or self.config.gate_input != "action_basis":
            return None
        M = self.M.weight.detach()  # [S, A]
        S, A = M.shape
        U, sv, _ = torch.linalg.svd(M, full_matrices=A < S)  # M = U diag(sv) V^T, U [S, S]
        if A < S:
            sv = torch.cat([sv, sv[-1:].expand(S - sv.shape[0])])
        return U / sv.clamp(min=1e-6 * sv.max().clamp(min=1e-12))  # diag(1/sv) U^T, as columns

    def gate_features(self, projected: torch.Tensor, basis: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Input of the gate MLP for projected states ``[..., S]`` -> ``[..., S]``.

        ``gate_input="action_basis"``: the state in units of the learned displacements,
        ``pinv(M) s`` projected back to S dims by the (detached) right singular vectors: it is
        invariant to rotations and stretches of the learned state space (fig. 7.2c), so walls
        stay "k moves from the start" however M is oriented (``basis``: a precomputed
        ``gate_basis()``). ``"whitened"``: running-statistics whitening. ``"raw"``: the state
        itself (as in eq. 7.3).
        """
        mode = self.config.gate_input
        if mode == "raw":
            return projected
        if mode == "whitened":
            # clones: the running statistics are updated in place later in the same step
            return (projected - self.gate_mean.clone()) @ self.gate_white.clone().T
        if basis is None:
            basis = self.gate_basis()
            if basis is None:
                raise ValueError(f"gate_input={mode!r} needs config.gate=True")
        return projected @ basis

    def gate_logit(self, projected: torch.Tensor, basis: torch.Tensor | None = None
                   ) -> torch.Tensor:
        return self.gate_net(self.gate_features(projected, basis))

    @torch.no_grad()
    def update_gate_stats(self, x: torch.Tensor, momentum: float = 0.05) -> None:
        """Update the running mean/covariance of gate inputs from ``x [N, S]`` (detached)."""
        x = x.reshape(-1, x.shape[-1]).to(self.gate_mean.dtype)
        if x.shape[0] < 2:
            return
        mean = x.mean(0)
        xc = x - mean
        cov = xc.T @ xc / (x.shape[0] - 1)
        if int(self.gate_stats_updates) == 0:
            self.gate_mean.copy_(mean)
            self.gate_cov.copy_(cov)
        else:
            self.gate_mean.lerp_(mean, momentum)
            self.gate_cov.lerp_(cov, momentum)
        self.gate_stats_updates += 1
        S = self.gate_cov.shape[0]
        c = self.gate_cov + 1e-6 * self.gate_cov.diagonal().mean().clamp(min=1e-8) * torch.eye(
            S, dtype=self.gate_cov.dtype, device=self.gate_cov.device)
        L = torch.linalg.cholesky(c)
        self.gate_white.copy_(torch.linalg.solve_triangular(
            L, torch.eye(S, dtype=c.dtype, device=c.device), upper=False))

    def step(self, state: torch.Tensor, actions: torch.Tensor,
             prev_disp: torch.Tensor | None = None, move: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One transition mean. ``move [..., 1]`` (optional) replaces the gate.

        Returns ``(mean [..., S], d_t [..., S])``.
        """
        d = self.displacement(actions, prev_disp)
        return self.step_displaced(state, d, move), d

    def step_displaced(self, state: torch.Tensor, d: torch.Tensor,
                       move: torch.Tensor | None = None, basis: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """Transition mean ``state + R d * factor`` for a known displacement ``d [..., S]``;
        the factor is ``move [..., 1]`` if given, else the gate (``basis``: ``gate_basis()``)."""
        disp = self.to_state_space(state, d)
        factor = move if move is not None else self.gate(state + disp, basis)
        return state + disp * factor

    @property
    def linear(self) -> bool:
        """True when the mean is ``s + M a * factor`` with a factor known in advance."""
        return not (self.config.rotation or self.config.momentum)
