"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every writer goes to a temp file in the target's folder, is flushed and fsynced, made 0644 and
renamed over the target; on any error the temp file is removed and the target is untouched.
(`envs` keeps its own copy, ``envs.generate.atomic_write_bytes``: it may not import this package.)
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``path`` for writers that want a file name (savefig, ffmpeg);
    it replaces ``path`` when the block ends without error. ``suffix`` defaults to ``path``'s
    (some writers pick the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                               suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """``with atomic_open(p, "wb") as f: ...``: an open temp file that replaces ``p`` on success."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    with atomic_path(path, suffix=".tmp") as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(binary_file)`` into a temp file that then replaces ``path``; returns ``path``."""
    with atomic_open(path, "wb") as f:
        write(f)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, default: Callable[[Any], Any] = str) -> Path:
    """JSON with indent 2; values json cannot encode go through ``default`` (``str`` or ``float``)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=default))
