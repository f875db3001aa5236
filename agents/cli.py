"""The ``worldmodels`` console script: ``worldmodels <command> --help`` for each command.

Commands are the modules of `agents.commands` (``generate``, ``train``, ``evaluate``, ``plan``,
``video``, ``demo``); each provides ``add_parser(subparsers)`` and ``run(args) -> int``. A
command whose module is not installed is simply absent.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

COMMANDS = ("generate", "train", "evaluate", "plan", "video", "demo")


def available_commands() -> dict[str, ModuleType]:
    """The command modules that exist, by name."""
    found = {}
    for name in COMMANDS:
        modname = f"agents.commands.{name}"
        try:
            found[name] = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:  # the module exists but one of its imports is missing: say so
                print(f"worldmodels: command {name!r} unavailable ({e})", file=sys.stderr)
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    from worldmodels import __version__

    parser = argparse.ArgumentParser(
        prog="worldmodels",
        description="Structured latent world models (KVAE, GTM-SM) for model-based RL: generate data, "
                    "train, evaluate long-horizon prediction, plan, render videos, or run the demo.",
        epilog="Run 'worldmodels demo' for the end-to-end example; 'worldmodels COMMAND --help' for details.")
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = available_commands()
    for mod in modules.values():
        mod.add_parser(sub)
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
