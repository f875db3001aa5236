"""Coloured (power-law) Gaussian noise along the planning horizon, as in iCEM.

Power spectral density ``S(f) ~ 1 / f**beta``: beta = 0 is white noise, larger beta gives
smoother, lower-frequency action sequences (Pinneri et al. 2020; the `colorednoise` package).
"""

from __future__ import annotations

import math

import torch


def colored_noise(beta: float, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
                  device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Unit-variance Gaussian noise of ``shape [..., H, A]`` coloured along the H axis (dim -2)."""
    if len(shape) < 2:
        raise ValueError(f"shape: expected at least 2 dims [..., H, A], got {shape}")
    if beta == 0:
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    *lead, H, A = shape
    f = torch.fft.rfftfreq(H, device=device, dtype=torch.float64)  # [F]
    fmin = 1.0 / H
    f = f.clamp_min(fmin)
    scale = f.pow(-beta / 2.0)  # [F]
    F_ = scale.numel()
    w = scale[1:].clone()
    w[-1] *= (1 + (H % 2)) / 2.0
    sigma = 2 * math.sqrt(float((w ** 2).sum())) / H
    sr = torch.randn(*lead, A, F_, device=device, dtype=torch.float64, generator=generator) * scale
    si = torch.randn(*lead, A, F_, device=device, dtype=torch.float64, generator=generator) * scale
    if H % 2 == 0:
        si[..., -1] = 0
        sr[..., -1] *= math.sqrt(2)
    si[..., 0] = 0
    sr[..., 0] *= math.sqrt(2)
    y = torch.fft.irfft(torch.complex(sr, si), n=H, dim=-1) / sigma  # [..., A, H]
    return y.transpose(-1, -2).to(dtype).contiguous()
