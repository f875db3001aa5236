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
from worldmodels.kalman.shared_host import symmetric


@dataclass
class Problem:
    """A validated LGSSM problem (B batch, T steps, n state, m observation dims).

    * ``obs`` ``[B, T, m]``: observations with masked entries replaced by zeros.
    * ``mask`` ``[B, T]`` bool (True = observed) or None (all observed).
    * ``A`` ``[n, n]`` (shared) or ``[B, T, n, n]``; ``C`` ``[m, n]`` or ``[B, T, m, n]``.
    * ``Q`` ``[n, n]``, ``R`` ``[m, m]``, ``mu0`` ``[B, n]``, ``P0`` ``[n, n]`` or ``[B, n, n]``.
    * ``Bu`` ``[B, T, n]`` control input ``B_t u_t`` (zero at t = 0, which the model ignores) or None.
    * ``spd_pending``: ``Q``, ``R``, ``P0`` are not yet checked to be symmetric positive definite
      (:func:`prepare` with ``defer_spd``); the shared-covariance path checks them where it
      computes or reuses the covariances (:func:`check_spd_inputs`), which it then records here.
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
    spd_pending: bool = False

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
    arrays = [x.detach().numpy() for x in mats]
    if not symmetric(arrays):                              # also fails on NaN or inf
        return False
    try:
        for a in arrays:
            np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        return False
    return True


def spd_inputs_ok(Q: torch.Tensor, R: torch.Tensor, P0: torch.Tensor) -> bool:
    """Whether ``Q``, ``R`` and ``P0`` (``[n, n]`` or ``[B, n, n]``) are all finite, symmetric and
    positive definite (one host sync; in NumPy for CPU tensors)."""
    if Q.device.type == "cpu" and Q.dtype in (torch.float32, torch.float64):
        return _spd_all_ok_host([R, torch.stack([Q, P0])] if P0.dim() == 2 else [R, Q, P0])
    flags = [_spd_ok(R).reshape(-1)]
    if P0.dim() == 2:                                      # one batched test for Q and P0
        flags.append(_spd_ok(torch.stack([Q, P0])))
    else:
        flags += [_spd_ok(Q).reshape(-1), _spd_ok(P0).reshape(-1)]
    return bool(torch.cat(flags).all())


def check_spd_inputs(Q: torch.Tensor, R: torch.Tensor, P0: torch.Tensor, known_bad: bool = False
                     ) -> None:
    """Raise ``ValueError`` naming the first of ``Q``, ``R``, ``P0`` that is not finite, symmetric
    and positive definite (the exact per-tensor checks run only when the fast test fails, or
    directly when the caller already saw a failure: ``known_bad``)."""
    if known_bad or not spd_inputs_ok(Q, R, P0):
        for name, x in (("Q", Q), ("R", R), ("P0", P0)):
            check_spd(name, x)


def _validate(tensors: dict[str, torch.Tensor], mask: torch.Tensor | None, spd: bool = True) -> None:
    """Raise ``ValueError`` unless the inputs are finite (``obs`` only where ``mask`` is True)
    and, with ``spd``, Q, R, P0 are symmetric positive definite.

    Fast path, one host sync: one finite sum over everything but Q, R, P0 (a non-finite entry
    makes the sum non-finite; an overflowing sum of finite entries only sends us to the exact
    per-tensor checks, which also name the culprit) and the SPD tests (:func:`spd_inputs_ok`)."""
    names = ("Q", "R", "P0")
    others = [name for name in tensors if name not in names and (name != "obs" or mask is None)]
    with torch.inference_mode():                           # read-only: no autograd bookkeeping
        finite = bool(torch.isfinite(torch.stack([tensors[name].sum() for name in others]).sum()))
    Q, R, P0 = (tensors[name] for name in names)
    ok = finite and (not spd or spd_inputs_ok(Q, R, P0))
    if ok:
        if mask is None:
            return
    else:
        if spd:
            check_spd_inputs(Q, R, P0, known_bad=True)
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
            validate: bool = True, defer_spd: bool = False) -> Problem:
    """Check the arguments of ``kalman_filter`` & co. and return a :class:`Problem`.

    ``defer_spd``: for a problem with covariances shared by the batch (``Problem.shared``),
    leave the symmetric-positive-definite checks of ``Q``, ``R``, ``P0`` to the shared path
    (``Problem.spd_pending``), which folds them into its own factorisations.  Only for callers
    that send such problems to :mod:`worldmodels.kalman.shared`."""
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
    defer = validate and defer_spd and A.dim() == 2 and C.dim() == 2 and P0.dim() == 2 and mask_b is None
    if validate:
        _validate(tensors, mask_b, spd=not defer)
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
    return Problem(obs=obs, mask=mask_b, A=A, C=C, Q=Q, R=R, mu0=mu0_b, P0=P0, Bu=Bu, spd_pending=defer)
