"""Validation and normalisation of the arguments of the batched Kalman functions.

Everything public funnels through :func:`prepare`, which checks every shape (``ValueError``
naming the argument, expected and actual shape), checks that ``Q``, ``R`` and ``P0`` are
symmetric positive definite and that observed entries are finite, and returns a
:class:`Problem` holding the model in the layout the recursions use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldmodels.checks import check_shape


@dataclass
class Problem:
    """A validated LGSSM problem (B batch, T steps, n state, m observation dims).

    * ``obs`` ``[B, T, m]``: observations with masked entries replaced by zeros.
    * ``mask`` ``[B, T]`` bool (True = observed) or None (all observed).
    * ``A`` ``[n, n]`` (shared) or ``[B, T, n, n]``; ``C`` ``[m, n]`` or ``[B, T, m, n]``.
    * ``Q`` ``[n, n]``, ``R`` ``[m, m]``, ``mu0`` ``[B, n]``, ``P0`` ``[n, n]`` or ``[B, n, n]``.
    * ``Bu`` ``[B, T, n]`` control input ``B_t u_t`` (zero at t = 0, which the model ignores) or None.
    """

    obs: torch.Tensor
    mask: torch.Tensor | None
    A: torch.Tensor
    C: torch.Tensor
    Q: torch.Tensor
    R: torch.Tensor
    mu0: torch.Tensor
    P0: torch.Tensor
    Bu: torch.Tensor | None

    @property
    def batch(self) -> int:
        return self.obs.shape[0]

    @property
    def steps(self) -> int:
        return self.obs.shape[1]

    @property
    def n(self) -> int:
        return self.Q.shape[-1]

    @property
    def m(self) -> int:
        return self.R.shape[-1]

    @property
    def shared(self) -> bool:
        """True when A, C and P0 are shared across the batch and nothing is masked, so the
        covariance recursion is the same for every sequence."""
        return self.A.dim() == 2 and self.C.dim() == 2 and self.P0.dim() == 2 and self.mask is None

    def A_at(self, t: int) -> torch.Tensor:
        """``A_t``: ``[n, n]`` or ``[B, n, n]``."""
        return self.A if self.A.dim() == 2 else self.A[:, t]

    def C_at(self, t: int) -> torch.Tensor:
        """``C_t``: ``[m, n]`` or ``[B, m, n]``."""
        return self.C if self.C.dim() == 2 else self.C[:, t]

    def A_from(self, start: int) -> torch.Tensor:
        """``A_t`` for t >= start: ``[n, n]`` or ``[B, T - start, n, n]`` (broadcasts with [B, T', ...])."""
        return self.A if self.A.dim() == 2 else self.A[:, start:]


def check_spd(name: str, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every matrix in ``x`` (``[..., k, k]``) is symmetric PD."""
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf values")
    scale = x.detach().abs().amax().clamp_min(torch.finfo(x.dtype).tiny)
    asym = (x.detach() - x.detach().mT).abs().amax()
    if asym > 1e-5 * scale:
        raise ValueError(f"{name} must be symmetric; max |{name} - {name}^T| = {float(asym):.3g}")
    _, info = torch.linalg.cholesky_ex(x.detach())
    if (info != 0).any():
        raise ValueError(f"{name} must be positive definite (Cholesky factorisation failed)")


def _spd_ok(x: torch.Tensor) -> torch.Tensor:
    """Bool ``[...]``: each matrix of ``x`` ``[..., k, k]`` is finite, symmetric and positive
    definite (as :func:`check_spd`, which checks a whole tensor at once)."""
    x = x.detach()
    scale = x.abs().amax((-2, -1)).clamp_min(torch.finfo(x.dtype).tiny)
    asym = (x - x.mT).abs().amax((-2, -1))
    _, info = torch.linalg.cholesky_ex(x)
    return torch.isfinite(x).flatten(-2).all(-1) & (asym <= 1e-5 * scale) & (info == 0)


def _spd_all_ok_host(mats: list[torch.Tensor]) -> bool:
    """Every matrix of the CPU tensors ``mats`` (each ``[..., k, k]``, float32 or float64) is
    finite, symmetric and positive definite, as :func:`_spd_ok`, tested in NumPy (a few
    microseconds per small matrix instead of a dozen PyTorch dispatches)."""
    for x in mats:
        a = x.detach().numpy()
        if not np.isfinite(a).all():
            return False
        scale = np.maximum(np.abs(a).max(axis=(-2, -1)), np.finfo(a.dtype).tiny)
        if not (np.abs(a - a.swapaxes(-1, -2)).max(axis=(-2, -1)) <= 1e-5 * scale).all():
            return False
        try:
            np.linalg.cholesky(a)
        except np.linalg.LinAlgError:
            return False
    return True


def _validate(tensors: dict[str, torch.Tensor], mask: torch.Tensor | None) -> None:
    """Raise ``ValueError`` unless Q, R, P0 are symmetric PD and the other inputs are finite
    (``obs`` only where ``mask`` is True).

    Fast path, one host sync: the SPD tests (in NumPy for CPU tensors) and one finite sum over
    everything else (a non-finite entry makes the sum non-finite; an overflowing sum of finite
    entries only sends us to the exact per-tensor checks, which also name the culprit)."""
    spd = ("Q", "R", "P0")
    others = [name for name in tensors if name not in spd and (name != "obs" or mask is None)]
    total = torch.stack([tensors[name].sum() for name in others]).sum()
    Q, R, P0 = (tensors[name] for name in spd)
    if Q.device.type == "cpu" and Q.dtype in (torch.float32, torch.float64):
        ok = (_spd_all_ok_host([R, torch.stack([Q, P0])] if P0.dim() == 2 else [R, Q, P0])
              and bool(torch.isfinite(total)))
    else:
        flags = [torch.isfinite(total).reshape(1), _spd_ok(R).reshape(-1)]
        if P0.dim() == 2:                                  # one batched test for Q and P0
            flags.append(_spd_ok(torch.stack([Q, P0])))
        else:
            flags += [_spd_ok(Q).reshape(-1), _spd_ok(P0).reshape(-1)]
        ok = bool(torch.cat(flags).all())
    if ok:
        if mask is None:
            return
    else:
        for name in spd:
            check_spd(name, tensors[name])
        for name in others:
            if name != "obs" and not torch.isfinite(tensors[name]).all():
                raise ValueError(f"{name} contains NaN or inf values")
    obs = tensors["obs"]
    finite = torch.isfinite(obs).all(-1)
    if mask is not None:
        finite = finite | ~mask
    if not bool(finite.all()):
        b, t = (~finite).nonzero()[0].tolist()
        raise ValueError(f"obs contains NaN or inf at an observed step (batch {b}, step {t}); "
                         "mark missing steps with mask = 0")


def _shared_or_varying(name: str, x: torch.Tensor, rows: int, cols: int | None, batch: int,
                       steps: int, rows_label: str, cols_label: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 2:
        check_shape(name, x, (rows if rows >= 0 else rows_label, cols if cols is not None else cols_label))
    elif x.dim() == 4:
        check_shape(name, x, (batch, steps, rows if rows >= 0 else rows_label,
                              cols if cols is not None else cols_label))
    else:
        raise ValueError(
            f"{name}: expected shape [{rows_label}, {cols_label}] (shared) or "
            f"[{batch}, {steps}, {rows_label}, {cols_label}] (time-varying), got {list(x.shape)}")


def prepare(obs: torch.Tensor, *, A: torch.Tensor, C: torch.Tensor, Q: torch.Tensor,
            R: torch.Tensor, mu0: torch.Tensor, P0: torch.Tensor, B: torch.Tensor | None = None,
            controls: torch.Tensor | None = None, mask: torch.Tensor | None = None,
            validate: bool = True) -> Problem:
    """Check the arguments of ``kalman_filter`` & co. and return a :class:`Problem`."""
    if not isinstance(obs, torch.Tensor):
        raise TypeError(f"obs must be a torch.Tensor, got {type(obs).__name__}")
    check_shape("obs", obs, ("B", "T", "m"))
    if not obs.is_floating_point():
        raise ValueError(f"obs must be a floating-point tensor, got {obs.dtype}")
    batch, steps, m = obs.shape
    if steps < 1:
        raise ValueError("obs: need at least one time step (T >= 1)")
    check_shape("Q", Q, ("n", "n"))
    n = Q.shape[0]
    check_shape("R", R, (m, m))
    _shared_or_varying("A", A, n, n, batch, steps, "n", "n")
    _shared_or_varying("C", C, m, n, batch, steps, "m", "n")
    if mu0.dim() == 1:
        check_shape("mu0", mu0, (n,))
    else:
        check_shape("mu0", mu0, (batch, n))
    if P0.dim() == 2:
        check_shape("P0", P0, (n, n))
    else:
        check_shape("P0", P0, (batch, n, n))
    if (B is None) != (controls is None):
        raise ValueError("B and controls must be given together (got "
                         f"B={'None' if B is None else list(B.shape)}, "
                         f"controls={'None' if controls is None else list(controls.shape)})")
    Bu = None
    if controls is not None and B is not None:  # given together (checked above)
        check_shape("controls", controls, (batch, steps, "p"))
        p = controls.shape[-1]
        _shared_or_varying("B", B, n, p, batch, steps, "n", "p")
    tensors = {"obs": obs, "A": A, "C": C, "Q": Q, "R": R, "mu0": mu0, "P0": P0}
    if controls is not None and B is not None:
        tensors.update(B=B, controls=controls)
    for name, x in tensors.items():
        if x.dtype != obs.dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but obs has dtype {obs.dtype}; "
                             "pass all tensors in one floating dtype")
        if x.device != obs.device:
            raise ValueError(f"{name} is on {x.device} but obs is on {obs.device}")

    mask_b = None
    if mask is not None:
        check_shape("mask", mask, (batch, steps))
        mask_b = mask.to(obs.device) != 0
        if bool(mask_b.all()):
            mask_b = None
    if validate:
        _validate(tensors, mask_b)
    if mask_b is not None:
        obs = torch.where(mask_b.unsqueeze(-1), obs, torch.zeros((), dtype=obs.dtype, device=obs.device))
    if controls is not None and B is not None:
        if B.dim() == 2:
            Bu = controls @ B.mT
        else:
            Bu = (B @ controls.unsqueeze(-1)).squeeze(-1)
        first = torch.ones(steps, 1, dtype=Bu.dtype, device=Bu.device)
        first[0] = 0.0
        Bu = Bu * first                                    # B_0 u_0 is ignored by the model
    mu0_b = mu0.expand(batch, n) if mu0.dim() == 1 else mu0
    return Problem(obs=obs, mask=mask_b, A=A, C=C, Q=Q, R=R, mu0=mu0_b, P0=P0, Bu=Bu)
