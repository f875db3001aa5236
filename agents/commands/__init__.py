"""Subcommands of the ``worldmodels`` console script and the config machinery they share.

Each module here has ``add_parser(subparsers)`` and ``run(args) -> int``. A run config is a YAML
mapping (or a preset name from ``configs/``) with sections::

    data:  {preset: bouncing_ball_small, root: runs/data/bouncing_ball_small}
    model: {name: vae_rnn, config: {latent_dim: 8, ...}}    # a registered model: vae_rnn | kvae | gtmsm | dkf | dvbf
    train: {...TrainConfig fields...}
    eval:  {...EvalConfig fields...}
    run_dir: runs/my_run                                     # default: runs/<name>-<time>

``--set section.key=value`` overrides any entry (values parsed as YAML: ``--set train.lr=3e-3``,
``--set model.config.mlp_hidden=[64,64]``).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any

import yaml

from worldmodels.atomic_io import atomic_open

from .validation import UsageError, check_dataclass_values

#: where the preset configs live (repository root / configs)
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"



class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-3`` (no dot) as a float, unlike YAML 1.1."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """Parse YAML text (safe; ``1e-3`` is a float)."""
    return yaml.load(text, Loader=_Loader)


def list_presets() -> list[str]:
    """Names of the YAML presets in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")) if CONFIG_DIR.is_dir() else []


def load_config(name_or_path: str | os.PathLike | None) -> dict[str, Any]:
    """A run config from a YAML file path or a preset name (``configs/<name>.yaml``).

    An unknown name, a file that is not YAML or not a mapping raises `UsageError` naming it.
    """
    if name_or_path is None:
        return {}
    p = Path(name_or_path)
    if not p.is_file():
        cand = CONFIG_DIR / f"{name_or_path}.yaml"
        if not cand.is_file():
            raise UsageError(f"--config {name_or_path}: expected a YAML file or a preset name "
                             f"({', '.join(list_presets())}), got neither")
        p = cand
    try:
        cfg = yaml_load(p.read_text()) or {}
    except UnicodeDecodeError as e:
        raise UsageError(f"--config {p}: expected a YAML text file, got undecodable bytes") from e
    except yaml.YAMLError as e:
        raise UsageError(f"--config {p}: expected YAML, got a syntax error ({_yaml_problem(e)})") from e
    if not isinstance(cfg, dict):
        raise UsageError(f"--config {p}: expected a YAML mapping, got {type(cfg).__name__}")
    cfg.setdefault("name", p.stem)
    return cfg


def _yaml_problem(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(e, 'problem', None) or type(e).__name__}{where}"


def apply_overrides(cfg: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a copy of ``cfg``.

    A malformed item (no ``=``, an empty key, a value that is not YAML) raises `UsageError`.
    """
    out = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected key=value (e.g. train.lr=1e-3)")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        if not key.strip() or not all(parts):
            raise UsageError(f"--set {item!r}: expected a dotted key before '=' (e.g. train.lr=1e-3)")
        try:
            value = yaml_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise UsageError(f"--set {key.strip()}: expected a YAML value, got {raw!r} ({_yaml_problem(e)})") from e
        node = out
        for k in parts[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``extra`` wins)."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def dataclass_from(cls: type, values: dict[str, Any] | None, where: str) -> Any:
    """``cls(**values)`` after checking the keys and scalar types (`UsageError` naming
    ``<where>.<key>``); the dataclass's own checks are reported under ``where``."""
    from worldmodels.training import config_from_dict

    values = check_dataclass_values(cls, dict(values or {}), where)
    try:
        return config_from_dict(cls, values)
    except (TypeError, ValueError) as e:
        message = str(e).replace(f"{cls.__name__}.", f"{where}.")
        raise UsageError(message if message.startswith(f"{where}.") else f"{where}: {message}") from e


def ensure_dataset(data_cfg: dict[str, Any], progress: bool = True) -> Path:
    """The dataset folder of ``data_cfg``, generated from ``data_cfg['preset']`` if it has no manifest."""
    preset = data_cfg.get("preset")
    root = Path(data_cfg.get("root") or f"runs/data/{preset}")
    if (root / "manifest.json").is_file() and not data_cfg.get("regenerate", False):
        return root
    if not preset:
        raise FileNotFoundError(f"data.root {root} has no manifest.json and no data.preset is given to generate it")
    from worldmodels.envs.generate import generate_dataset

    generate_dataset(preset, root, num_workers=data_cfg.get("num_workers", 1), resume=True, progress=progress)
    return root


def build_model(model_cfg: dict[str, Any], obs_shape: tuple[int, ...], action_dim: int):
    """A world model from ``{name, config}``; ``obs_shape``/``action_dim`` come from the data
    unless the config sets them."""
    from worldmodels.registry import UnknownModelError, get_model_class

    name = model_cfg.get("name", "vae_rnn")
    try:
        cls = get_model_class(name)
    except UnknownModelError as e:
        raise ValueError(f"model.name: {e}") from e
    values = dict(model_cfg.get("config") or {})
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    if "obs_shape" in fields:
        values.setdefault("obs_shape", list(obs_shape))
    if "action_dim" in fields:
        values.setdefault("action_dim", int(action_dim))
    return cls(dataclass_from(cls.config_class, values, "model.config"))


def default_run_dir(cfg: dict[str, Any], kind: str = "train") -> Path:
    if cfg.get("run_dir"):
        return Path(cfg["run_dir"])
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.get('name', kind)}-{stamp}"


def save_yaml(cfg: dict[str, Any], path: Path) -> Path:
    """Write the resolved run config (atomically)."""
    with atomic_open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    return path


def add_config_args(p) -> None:
    """``--config`` and ``--set`` shared by train and demo."""
    p.add_argument("--config", "-c", default=None,
                   help=f"YAML file or preset name ({', '.join(list_presets()) or 'see configs/'})")
    p.add_argument("--set", "-s", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set train.lr=1e-3 --set model.config.latent_dim=4 "
                        "(repeatable)")
