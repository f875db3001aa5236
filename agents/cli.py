"""The ``worldmodels`` console script: ``worldmodels <command> --help`` for each command.

Commands are the modules of `worldmodels.agents.commands` (``generate``, ``train``, ``evaluate``, ``plan``,
``video``, ``demo``); each provides ``add_parser(subparsers)`` and ``run(args) -> int``. A
command whose module is not installed is simply absent.

Errors are one line on stderr, ``worldmodels <command>: error: <option or file>: <what>``, with
exit status 2 for invalid options or configs and 1 for failures while working (missing, damaged
or unwritable files, a full disk, a diverged training run). ``--debug`` (before or after the
command) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
import traceback
from types import ModuleType

COMMANDS = ("generate", "train", "evaluate", "plan", "video", "demo", "train-policy")

#: exit status of an invalid option or config value
EXIT_USAGE = 2
#: exit status of a failure while working (I/O, damaged files, training divergence)
EXIT_FAILURE = 1


class _ArgumentError(Exception):
    """An argparse error, raised instead of printing usage and exiting."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors reach `main` (one line, no usage dump, no exit)."""

    def error(self, message: str):  # type: ignore[override]
        raise _ArgumentError(self.prog, message)


def available_commands() -> dict[str, ModuleType]:
    """The command modules that exist, by name."""
    found = {}
    for name in COMMANDS:
        modname = f"worldmodels.agents.commands.{name.replace('-', '_')}"
        try:
            found[name] = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:  # the module exists but one of its imports is missing: say so
                print(f"worldmodels: command {name!r} unavailable ({e})", file=sys.stderr)
    return found


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    from worldmodels import __version__

    parser = _Parser(
        prog="worldmodels",
        description="Structured latent world models (KVAE, GTM-SM) for model-based RL: generate data, "
                    "train, evaluate long-horizon prediction, plan, render videos, or run the demo.",
        epilog="Run 'worldmodels demo' for the end-to-end example; 'worldmodels COMMAND --help' for details.")
    parser.add_argument("--version", action="version", version=f"worldmodels {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = available_commands()
    for mod in modules.values():
        mod.add_parser(sub)
    for p in sub.choices.values():  # --debug also after the command
        p.add_argument("--debug", dest="debug_here", action="store_true", help="show the traceback of an error")
    return parser, modules


def _one_line(text: object) -> str:
    """``str(text)`` with its lines joined into one."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def error_message(exc: BaseException) -> tuple[str, int]:
    """``(message, exit status)`` for an exception a command raised, or ``("", 0)`` for one that is
    not an expected error (a bug: its traceback is shown)."""
    from worldmodels.agents.commands.validation import UsageError
    from worldmodels.agents.reward import RewardHeadFileError

    if isinstance(exc, UsageError):
        return _one_line(exc), EXIT_USAGE
    if isinstance(exc, OSError):
        text = _one_line(exc.strerror or exc)
        if exc.filename is None:  # the raiser's own words (atomic_io.WriteError names the file)
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT) and "disk full" not in text
            return (f"disk full: {text}" if full else text), EXIT_FAILURE
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full: {exc.filename}", EXIT_FAILURE
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            return f"cannot write {exc.filename}: read-only or permission denied", EXIT_FAILURE
        return f"{exc.filename}: {text[:1].lower()}{text[1:]}", EXIT_FAILURE
    if isinstance(exc, RewardHeadFileError):  # a damaged or foreign file, though a ValueError
        return _one_line(exc), EXIT_FAILURE
    if isinstance(exc, ValueError):
        return _one_line(exc), EXIT_USAGE
    if isinstance(exc, RuntimeError):  # damaged checkpoints and datasets, diverged training
        return _one_line(exc), EXIT_FAILURE
    return "", 0


def main(argv: list[str] | None = None) -> int:
    """Run the console script on ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, modules = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            prog = f"worldmodels {args.command}" if args.command else "worldmodels"
            raise _ArgumentError(prog, f"unrecognized arguments: {' '.join(extra)}")
    except _ArgumentError as e:
        print(f"{e.prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or getattr(args, "debug_here", False)
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - unexpected errors are re-raised below
        message, status = error_message(e)
        if not status:
            raise
        if debug:
            traceback.print_exc()
        print(f"worldmodels {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
