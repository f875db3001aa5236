"""The models a checkpoint or a config may name: a registry, never an import path.

A checkpoint records its model's registered name (``"kvae"``) and class path; a config names
``model.name``. Both are looked up here. Nothing read from a file, a config or the command line
is ever imported or called: a name that is not registered is an error.

The package's own models are registered on first use. Register your own model once, in your own
code, before training or loading it::

    from worldmodels import register_model
    register_model("my_model", MyModel)   # MyModel(config) with MyModel.config_class
"""

from __future__ import annotations

import importlib
import re
from typing import Any

#: the package's own models: registered name -> (module, class name), imported only from here
_BUILTIN: dict[str, tuple[str, str]] = {
    "vae_rnn": ("worldmodels.vae_rnn", "VAERNN"),
    "kvae": ("worldmodels.kvae", "KVAE"),
    "gtmsm": ("worldmodels.gtmsm", "GTMSM"),
    "dkf": ("worldmodels.baselines.dkf", "DKF"),
    "dvbf": ("worldmodels.baselines.dvbf", "DVBF"),
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_registry: dict[str, type] = {}


class UnknownModelError(ValueError):
    """A model name or checkpoint class that is not registered."""


def class_path(obj_or_cls: Any) -> str:
    """``"module:QualName"`` of a class or of an instance's class (recorded, never imported)."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}:{cls.__qualname__}"


def _load_builtins() -> None:
    for name, (module, attr) in _BUILTIN.items():
        if name not in _registry:
            _registry[name] = getattr(importlib.import_module(module), attr)


def register_model(name: str, cls: type, *, replace: bool = False) -> type:
    """Make ``cls`` buildable by ``name`` (in configs) and loadable from its checkpoints.

    ``cls`` must be a class taking one config dataclass (``cls.config_class``) or none.
    Re-registering a name for another class needs ``replace=True``. Returns ``cls`` (so it can be
    used as ``register_model("x", X)`` after the class statement).
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name: expected an identifier-like string of at most 64 characters, got {name!r}")
    if not isinstance(cls, type):
        raise TypeError(f"cls: expected a class, got {type(cls).__name__}")
    _load_builtins()
    old = _registry.get(name)
    if old is not None and old is not cls and not replace:
        raise ValueError(f"model name {name!r} is already registered for {class_path(old)}; "
                         "pass replace=True to rebind it")
    _registry[name] = cls
    return cls


def registered_models() -> dict[str, type]:
    """A copy of the registry: name -> class."""
    _load_builtins()
    return dict(_registry)


def get_model_class(name: str) -> type:
    """The class registered as ``name``; `UnknownModelError` naming the known ones otherwise."""
    _load_builtins()
    if isinstance(name, str) and name in _registry:
        return _registry[name]
    raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_registry))} "
                            "(register others with worldmodels.register_model(name, cls))")


def model_name_of(obj_or_cls: Any) -> str | None:
    """The registered name of a model (instance or class), or None if it is not registered."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    _load_builtins()
    for name, registered in _registry.items():
        if registered is cls:
            return name
    return None


def resolve_checkpoint_class(model_name: Any, model_class: Any) -> type:
    """The class to rebuild a checkpoint with, from its recorded name and class path.

    The name is looked up in the registry; a checkpoint without a name (older format) is matched
    by comparing its class path with those of the registered classes. Nothing is imported.
    """
    _load_builtins()
    if model_name is not None:
        cls = get_model_class(model_name)
        if model_class is not None and class_path(cls) != model_class:
            raise UnknownModelError(f"checkpoint names model {model_name!r} of class {model_class!r}, but "
                                    f"{model_name!r} is registered as {class_path(cls)}")
        return cls
    for cls in _registry.values():
        if class_path(cls) == model_class:
            return cls
    raise UnknownModelError(f"checkpoint model class {model_class!r} is not a registered model; known models: "
                            f"{', '.join(sorted(_registry))} (register it with worldmodels.register_model(name, cls))")
