"""Checks for environment and policy options: one ``ValueError`` naming the option and the range.

Every helper returns the value converted (``float``, ``int`` or a float64 array), so an
environment stores exactly what it checked.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


def _range(low: float | None, high: float | None, low_open: bool = False) -> str:
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{'(' if low_open else '['}{lo}, {hi}]"


def finite_float(name: str, value, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` with ``low_open``); NaN, inf,
    non-numbers and values outside raise ``ValueError`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (Real, np.floating, np.integer)):
        raise ValueError(f"{name}: expected a number in {_range(low, high, low_open)}, got {value!r}")
    x = float(value)
    if (not math.isfinite(x) or (low is not None and (x <= low if low_open else x < low))
            or (high is not None and x > high)):
        raise ValueError(f"{name}: expected a finite number in {_range(low, high, low_open)}, got {x!r}")
    return x


def finite_vector(name: str, value, size: int, low: float | None = None,
                  high: float | None = None, *, why: str = "") -> np.ndarray:
    """``value`` as a float64 array of ``size`` finite entries each in ``[low, high]``; ``why``
    (e.g. where a bound comes from) is added to the message."""
    message = f"{name}: expected {size} finite numbers, each in {_range(low, high)}{why}, got {value!r}"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    ok = arr.shape == (size,) and bool(np.isfinite(arr).all())
    ok = ok and (low is None or bool((arr >= low).all())) and (high is None or bool((arr <= high).all()))
    if not ok:
        raise ValueError(message)
    return arr


def int_in(name: str, value, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``; floats, bools and values outside raise ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral) or not low <= int(value) <= high:
        raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
    return int(value)
