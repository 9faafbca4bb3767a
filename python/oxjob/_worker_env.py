"""The environment a worker process starts with: the caller writes it
(:func:`worker_environment`), the worker reads it (:func:`read_worker_environment`,
:func:`inherited_nesting_level`). The variables' names live here only.

The caller's script and authkey travel beside these (``OXJOB_MAIN``,
``OXJOB_AUTHKEY``: written and read in _workers/mainscript.py).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Mapping

from ._units import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_NBYTES

PARENT_PID = "OXJOB_PARENT_PID"
SYS_PATH = "OXJOB_SYS_PATH"
MMAP_MODE = "OXJOB_MMAP_MODE"
MAX_NBYTES = "OXJOB_MAX_NBYTES"
IDLE_TIMEOUT = "OXJOB_IDLE_TIMEOUT"
NESTING_LEVEL = "OXJOB_NESTING_LEVEL"


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker is told at its start."""

    parent_pid: int
    sys_path: list
    mmap_mode: str = "c"
    max_nbytes: int = DEFAULT_MAX_NBYTES
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    nesting_level: int = 1


def worker_environment(
    mmap_mode: str, max_nbytes: int, idle_timeout: float, nesting_level: int
) -> dict[str, str]:
    """The variables for a worker started by this process now."""
    return {
        PARENT_PID: str(os.getpid()),
        SYS_PATH: json.dumps([p for p in sys.path if isinstance(p, str)]),
        MMAP_MODE: mmap_mode,
        MAX_NBYTES: str(max_nbytes),
        IDLE_TIMEOUT: str(idle_timeout),
        NESTING_LEVEL: str(nesting_level),
    }


def read_worker_environment(environ: Mapping[str, str] = os.environ) -> WorkerSettings:
    """The settings :func:`worker_environment` wrote (in the worker)."""
    return WorkerSettings(
        parent_pid=int(environ[PARENT_PID]),
        sys_path=json.loads(environ.get(SYS_PATH, "[]")),
        mmap_mode=environ.get(MMAP_MODE, "c"),
        max_nbytes=int(environ.get(MAX_NBYTES, DEFAULT_MAX_NBYTES)),
        idle_timeout=float(environ.get(IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT)),
        nesting_level=int(environ.get(NESTING_LEVEL, "1")),
    )


def inherited_nesting_level() -> int:
    """The nesting level this process was started at (0: not a worker)."""
    return int(os.environ.get(NESTING_LEVEL, "0"))
