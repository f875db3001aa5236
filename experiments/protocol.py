"""The evaluation protocol every headline experiment follows.

Three named seed sets, recorded in every result JSON:

- **training seeds** (at least 3 for a headline): each seeds one model's initialisation and
  minibatch order; a number is reported per training seed and as a mean with a 95 % interval;
- **tuning seeds**: the episodes, start states or sequences on which settings (a horizon, a
  recipe) are chosen;
- **evaluation seeds**: held out; the reported numbers come from them alone.

Tuning and evaluation seeds must be disjoint. A seed set names its *namespace* (the stream
its seeds index: ``"Pendulum-v0 reset seed"``, ``"bouncing_ball/test sequence"``); seeds of two
different namespaces never coincide (e.g. two dataset splits are generated from different
streams), seeds of the same namespace must not overlap.

Run folders record a hash of the configuration that trained them (``config_hash.txt``); reusing
a folder trained under another configuration is an error unless the caller asks to retrain.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldmodels.atomic_io import atomic_write_json, atomic_write_text

MIN_TRAINING_SEEDS = 3
CONFIG_HASH_FILE = "config_hash.txt"
CONFIG_FILE = "run_config.json"

# two-sided 95 % Student-t quantiles t_{0.975, df}, used when scipy is missing
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000, 120: 1.980}


@dataclass(frozen=True)
class SeedSet:
    """A named set of integer seeds within one namespace.

    Attributes:
        namespace: what the integers index (``"Pendulum-v0 reset seed"``,
            ``"bouncing_ball/test sequence"``); seeds of different namespaces are disjoint.
        seeds: the integers, in the order they are used.
    """

    namespace: str
    seeds: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("namespace: expected a non-empty string")
        seeds = tuple(int(s) for s in self.seeds)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds: expected distinct integers, got duplicates in {list(seeds)[:20]}")
        object.__setattr__(self, "seeds", seeds)

    @classmethod
    def span(cls, namespace: str, start: int, count: int) -> SeedSet:
        """``count`` consecutive seeds ``start, start + 1, ...`` of ``namespace``."""
        return cls(namespace, tuple(range(start, start + count)))

    def to_json(self) -> dict[str, Any]:
        """``{"namespace", "count", "ranges": [[start, stop), ...]}`` (compact for long spans)."""
        return {"namespace": self.namespace, "count": len(self.seeds), "ranges": seed_ranges(self.seeds)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SeedSet:
        seeds = [s for a, b in d["ranges"] for s in range(a, b)]
        return cls(d["namespace"], tuple(seeds))


def seed_ranges(seeds: Iterable[int]) -> list[list[int]]:
    """Runs of consecutive integers as half-open ``[start, stop)`` pairs, in the given order."""
    out: list[list[int]] = []
    for s in seeds:
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return out


def check_disjoint(a: SeedSet, b: SeedSet) -> None:
    """Raise ``ValueError`` when ``a`` and ``b`` share a seed of the same namespace."""
    if a.namespace != b.namespace:
        return
    common = sorted(set(a.seeds) & set(b.seeds))
    if common:
        raise ValueError(f"tuning and evaluation seeds of {a.namespace!r} overlap: {common[:10]}"
                         f"{' ...' if len(common) > 10 else ''}")


@dataclass(frozen=True)
class Protocol:
    """Training, tuning and evaluation seeds of one experiment (see the module docstring).

    ``tuning`` may be ``None`` for an experiment that selects nothing; it is then recorded as such.
    """

    training_seeds: tuple[int, ...]
    evaluation: SeedSet
    tuning: SeedSet | None = None
    notes: str = ""
    min_training_seeds: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        seeds = tuple(int(s) for s in self.training_seeds)
        if len(seeds) < self.min_training_seeds:
            raise ValueError(f"training_seeds: expected at least {self.min_training_seeds}, got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"training_seeds: expected distinct seeds, got {list(seeds)}")
        object.__setattr__(self, "training_seeds", seeds)
        if self.tuning is not None:
            check_disjoint(self.tuning, self.evaluation)

    @property
    def is_headline(self) -> bool:
        """At least `MIN_TRAINING_SEEDS` training seeds."""
        return len(self.training_seeds) >= MIN_TRAINING_SEEDS

    def to_json(self) -> dict[str, Any]:
        return {"training_seeds": list(self.training_seeds),
                "tuning": None if self.tuning is None else self.tuning.to_json(),
                "evaluation": self.evaluation.to_json(),
                "disjoint": True, "notes": self.notes}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Protocol:
        """Rebuild (and so re-check) a recorded protocol; raises ``ValueError`` if it is invalid."""
        return cls(tuple(d["training_seeds"]), SeedSet.from_json(d["evaluation"]),
                   None if d.get("tuning") is None else SeedSet.from_json(d["tuning"]), d.get("notes", ""))


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile ``t_{(1 + level) / 2, df}`` (scipy, else a 95 % table)."""
    if df < 1:
        raise ValueError(f"df: expected >= 1, got {df}")
    try:
        from scipy.stats import t

        return float(t.ppf(0.5 + level / 2, df))
    except ImportError:
        if level != 0.95:
            raise ValueError("level: only 0.95 is available without scipy") from None
        keys = sorted(_T975)
        below = max(k for k in keys if k <= df)
        return _T975[below]  # conservative: the quantile of the nearest tabulated df below


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean and t-interval over training seeds.

    Returns ``{"values", "n", "mean", "std", "half_width", "low", "high", "level"}``; with a single
    value the interval is undefined (``None``).
    """
    xs = [float(v) for v in values]
    if not xs:
        raise ValueError("values: expected at least one value")
    n = len(xs)
    mean = xs[0] if all(x == xs[0] for x in xs) else sum(xs) / n  # equal values: no rounding spread
    if n < 2:
        return {"values": xs, "n": n, "mean": mean, "std": None, "half_width": None, "low": None,
                "high": None, "level": level}
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return {"values": xs, "n": n, "mean": mean, "std": std, "half_width": half, "low": mean - half,
            "high": mean + half, "level": level}


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (first 16 hex digits) of the canonical JSON of ``config``."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ConfigMismatchError(RuntimeError):
    """A run folder holds a run trained under another configuration."""


def prepare_run_dir(run_dir: str | Path, config: Mapping[str, Any], retrain: bool = False) -> Path:
    """Make ``run_dir`` the home of a run trained under ``config`` and return it.

    A new or empty folder gets ``config_hash.txt`` and ``run_config.json``. A folder with the same
    hash is reused (training resumes there). A folder with another hash, or with files but no
    hash, raises `ConfigMismatchError`, unless ``retrain`` is set: then the folder is emptied first.
    """
    run_dir = Path(run_dir)
    want = config_hash(config)
    hash_file = run_dir / CONFIG_HASH_FILE
    if run_dir.is_dir() and any(run_dir.iterdir()):
        have = hash_file.read_text().strip() if hash_file.is_file() else None
        if have != want:
            if not retrain:
                what = f"configuration {have}" if have else "an unrecorded configuration"
                raise ConfigMismatchError(
                    f"{run_dir} holds a run trained under {what}, not this one ({want}); pass --retrain "
                    f"to delete it and train again, or choose another --run-dir")
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not hash_file.is_file():
        atomic_write_json(run_dir / CONFIG_FILE, dict(config))
        atomic_write_text(hash_file, want + "\n")
    return run_dir


def summarize(per_seed: Sequence[float]) -> dict[str, Any]:
    """`mean_ci` of one number measured once per training seed (alias kept for readability)."""
    return mean_ci(per_seed)


def summarize_curves(per_seed: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, dict[str, list]]:
    """Pointwise mean and 95 % interval of curves measured once per training seed.

    ``per_seed[i][name]`` is seed i's curve ``name`` (same length for every seed). Returns
    ``{name: {"mean": [...], "low": [...], "high": [...]}}`` for the names every seed has.
    """
    names = [k for k in per_seed[0] if all(k in d for d in per_seed)]
    out: dict[str, dict[str, list]] = {}
    for name in names:
        stats = [mean_ci([d[name][j] for d in per_seed]) for j in range(len(per_seed[0][name]))]
        out[name] = {k: [s[k] for s in stats] for k in ("mean", "low", "high")}
    return out


def paired_claim(statement: str, smaller: Sequence[float], larger: Sequence[float]) -> dict[str, Any]:
    """Test "``smaller`` < ``larger``" on paired per-seed values.

    The claim holds when the 95 % interval of the per-seed differences ``smaller - larger`` lies
    below 0; it does not hold when the interval lies above 0; otherwise it is ``"undecided"``.
    """
    if len(smaller) != len(larger):
        raise ValueError(f"smaller/larger: expected as many values, got {len(smaller)} and {len(larger)}")
    diff = mean_ci([a - b for a, b in zip(smaller, larger, strict=True)])
    if diff["high"] is None:
        verdict = "single run"
    elif diff["high"] < 0:
        verdict = "holds"
    elif diff["low"] > 0:
        verdict = "does not hold"
    else:
        verdict = "undecided"
    return {"statement": statement, "difference": diff, "verdict": verdict}


def budget_record(updates: int, batch_size: int, paper_updates: int | None, paper_batch_size: int | None,
                  baselines: str) -> dict[str, Any]:
    """Training budget and its scale relative to the paper's (sequences seen = updates x batch).

    ``baselines`` says how the baselines were trained (``"same updates as the KVAE"``,
    ``"to convergence on the valid split"``, ...).
    """
    scale = None
    if paper_updates and paper_batch_size:
        scale = updates * batch_size / (paper_updates * paper_batch_size)
    return {"updates": updates, "batch_size": batch_size, "paper_updates": paper_updates,
            "paper_batch_size": paper_batch_size, "scale_vs_paper": scale, "baselines": baselines}


def run_cli(main: Callable[[], int | None]) -> int:
    """Run a script's ``main()``; a `ConfigMismatchError` becomes a one-line error and exit status 2."""
    try:
        return main() or 0
    except ConfigMismatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
