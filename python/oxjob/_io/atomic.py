"""Files written whole or not at all, through nothing planted in advance.

A file is written under a hidden temporary name beside its target and renamed over
it once complete (``os.replace``): a reader sees the old file or the new one. The
temporary name carries 64 random bits and is created exclusively, never following a
symlink (``O_CREAT|O_EXCL|O_NOFOLLOW``, as ``tempfile.mkstemp`` does), so nobody can
make oxjob write through a link planted at a name it would use. The Rust side does
the same (``oxjob_core::tempname``).
"""

from __future__ import annotations

import os
import secrets
from typing import Any, Callable

__all__ = ["make_dirs", "remove_dirs", "write_atomically"]

_FLAGS = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_ATTEMPTS = 16


def _create_beside(filename: str) -> tuple[int, str]:
    directory, base = os.path.split(os.path.abspath(filename))
    for _ in range(_ATTEMPTS):
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(8)}.oxjob-tmp")
        try:
            # 0o666 as open() uses: the umask decides, as for any file the user writes.
            return os.open(temp, _FLAGS, 0o666), temp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {filename}")


def write_atomically(filename: str, write: Callable[[Any], Any]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``filename``, then rename
    it over ``filename``; on any failure the temporary file is removed and the
    target is untouched."""
    fd, temp = _create_beside(filename)
    try:
        with os.fdopen(fd, "wb") as raw:
            write(raw)
        os.replace(temp, filename)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def make_dirs(directory: str) -> list[str]:
    """``os.makedirs(directory, exist_ok=True)``, returning the directories it made
    (outermost first) so that a failed write can remove exactly those."""
    missing = []
    path = os.path.abspath(directory)
    while path and not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    made: list[str] = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path):
                remove_dirs(made)
                raise
            continue  # made meanwhile by another writer: not ours to remove
        except OSError:
            remove_dirs(made)
            raise
        made.append(path)
    return made


def remove_dirs(made: list[str]) -> None:
    """Remove directories from :func:`make_dirs`, innermost first, while empty."""
    for path in reversed(made):
        try:
            os.rmdir(path)
        except OSError:
            return
