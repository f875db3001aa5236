"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every writer goes to a temp file in the target's folder, is flushed and fsynced, given the
mode a new file gets under the process's umask and renamed over the target; on any error the
temp file is removed and the target is untouched. Temp files are named
``.<target>.wmtmp-<pid>-<random><suffix>``, so those left by a killed process can be found and
removed (`remove_stale_temps`). A full disk or an unwritable folder raises `WriteError` naming
the file. Dataset shards and manifests (`worldmodels.envs`) are written with it too; this module
imports nothing beyond the standard library.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


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


class WriteError(OSError):
    """A file could not be written: the disk is full or the folder is not writable.

    The previous version of the file, if any, is left as it was.
    """


_TEMP = re.compile(r"^\..+\.wmtmp-(\d+)-")
_NO_SPACE = ("unexpected pos", "PytorchStreamWriter failed", "No space left")


def _new_file_mode() -> int:
    """The permission bits ``open()`` gives a new file under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temp files that writers killed mid-write left in ``folder``; returns them.

    A temp file is stale when the process that created it is gone. Missing or unreadable
    folders are skipped.
    """
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP.match(p.name)
        if m and p.is_file() and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def _as_write_error(e: BaseException, path: Path) -> WriteError | None:
    """A `WriteError` for a full disk or an unwritable folder, or None for other errors."""
    if isinstance(e, WriteError):
        return e
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return WriteError(e.errno, f"disk full while writing {path}; the previous file is kept")
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return WriteError(e.errno, f"cannot write {path}: the folder is read-only or not writable")
    if isinstance(e, RuntimeError) and any(k in str(e) for k in _NO_SPACE):  # torch.save's zip writer
        return WriteError(errno.ENOSPC, f"disk full while writing {path}; the previous file is kept")
    return None


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path next to ``path`` for writers that want a file name (savefig, ffmpeg);
    it replaces ``path`` when the block ends without error. ``suffix`` defaults to ``path``'s
    (some writers pick the format from it)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.wmtmp-{os.getpid()}-",
                                   suffix=path.suffix if suffix is None else suffix)
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, RuntimeError) as e:
        err = _as_write_error(e, path)
        if err is None:
            raise
        raise err from e
    finally:
        if tmp is not None and os.path.exists(tmp):
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
