"""Worker processes: one set of them per task engine.

Workers are fresh interpreters (``python -m oxjob._workers.worker``) started by the Rust
supervisor (``oxjob._engine.Supervisor``); :class:`ProcessPool` is one set of them. The
task engine (:mod:`oxjob._workers.engine`) owns dispatch and routing.
"""

from __future__ import annotations

import signal
import sys

from .. import _engine
from .._worker_env import worker_environment


def describe_exit(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"SIG{sig}"
        return f"{name}(-{sig})"
    return f"EXIT({code})"


class ProcessPool:
    """Worker processes kept for reuse across calls."""

    def __init__(self, n_workers: int, mmap_mode: str, max_nbytes: int, idle_timeout: float):
        from ..backends import nesting_level

        self.n_workers = n_workers
        self.key = self.key_for(n_workers, mmap_mode, max_nbytes, idle_timeout)
        # The caller's script, authkey and thread limits (fixed when workers start).
        self.extra_env = dict(self.key[-1])
        env = dict(self.extra_env)
        env.update(worker_environment(mmap_mode, max_nbytes, idle_timeout, nesting_level() + 1))
        self.max_nbytes = max_nbytes
        from .._worker_env import SYS_PATH
        from .mainscript import WORKER_MODULE
        from .template import template_for

        # Forked from the warm template where one can serve (see template.py).
        self.template = template_for(dict(self.extra_env, **{SYS_PATH: env[SYS_PATH]}))
        template = self.template
        self.supervisor = _engine.Supervisor(
            sys.executable,
            ["-m", WORKER_MODULE],
            sorted(env.items()),
            n_workers,
            template=template,
        )
        self.generations = [self.supervisor.generation(w) for w in range(n_workers)]
        self.dead: set[int] = set()

    @staticmethod
    def key_for(n_workers: int, mmap_mode: str, max_nbytes: int, idle_timeout: float) -> tuple:
        """What workers started now would be set up with: running ones are reused only
        for the same key (thread limits, for one, are fixed at start)."""
        from .mainscript import worker_env

        extra = tuple(sorted(worker_env(n_workers).items()))
        return (n_workers, mmap_mode, max_nbytes, idle_timeout, extra)

    def respawn(self, worker: int) -> None:
        self.generations[worker] = self.supervisor.spawn(worker)
        self.dead.discard(worker)

    def pids(self) -> list[int | None]:
        """Process ids of the current workers (``None`` for a slot without a process)."""
        return [self.supervisor.pid(w) for w in range(self.n_workers)]

    def shutdown(self, grace: float = 1.0) -> None:
        from .template import teach_sent

        teach_sent(self.template)  # before the supervisor forks the next pool's workers
        self.supervisor.shutdown(grace)
