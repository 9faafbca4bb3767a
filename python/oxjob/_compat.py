"""Small names from joblib's ``__all__`` kept for drop-in compatibility."""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any

__all__ = ["Logger", "PrintTime", "wrap_non_picklable_objects"]


def wrap_non_picklable_objects(obj: Any, keep_wrapper: bool = True) -> Any:
    """Return ``obj`` unchanged: oxjob already sends lambdas, closures and functions
    from ``__main__`` with cloudpickle. Kept so that joblib code runs as is.

    Parameters
    ----------
    obj : callable or class
    keep_wrapper : bool, default=True
        Ignored.

    Returns
    -------
    object
        ``obj``.
    """
    return obj


class Logger:
    """joblib's base logger: ``warn``, ``info``, ``debug`` with the object's repr."""

    def __init__(self, depth: int = 3, name: str | None = None) -> None:
        self.depth = depth
        self._name = name or "oxjob"

    def warn(self, msg: str) -> None:
        """Log a warning prefixed with the object's repr."""
        import logging

        logging.getLogger(self._name).warning("[%s]: %s", self, msg)

    def info(self, msg: str) -> None:
        """Log at INFO level."""
        import logging

        logging.info("[%s]: %s", self, msg)

    def debug(self, msg: str) -> None:
        """Log at DEBUG level."""
        import logging

        logging.getLogger(self._name).debug("[%s]: %s", self, msg)


class PrintTime:
    """Print the time elapsed between calls on stderr, as joblib's ``PrintTime``.

    Parameters
    ----------
    logfile : str, optional
        Also append the messages to this file. An existing file is kept as
        ``logfile.1`` (older ones shift up to ``.9``), as joblib rotates them.
    logdir : str, optional
        Log to ``logdir/joblib.log`` instead; not together with ``logfile``.

    Examples
    --------
    >>> timer = PrintTime()
    >>> timer("loaded")  # doctest: +SKIP
    loaded: 0.0s, 0.0min
    """

    def __init__(self, logfile: str | None = None, logdir: str | None = None) -> None:
        if logfile is not None and logdir is not None:
            raise ValueError("Cannot specify both logfile and logdir")
        self.last_time = self.start_time = time.time()
        if logdir is not None:
            logfile = os.path.join(logdir, "joblib.log")
        self.logfile = logfile
        if logfile is not None:
            self._start_log(logfile)

    def _start_log(self, logfile: str) -> None:
        # Logging must never stop the computation it times (joblib's rule): I/O errors
        # while rotating or writing are ignored.
        try:
            os.makedirs(os.path.dirname(os.path.abspath(logfile)), exist_ok=True)
            if os.path.exists(logfile):
                for i in range(8, 0, -1):
                    if os.path.exists(f"{logfile}.{i}"):
                        os.replace(f"{logfile}.{i}", f"{logfile}.{i + 1}")
                # A copy, not a move: a process following the file keeps its handle.
                shutil.copy(logfile, f"{logfile}.1")
            with open(logfile, "w") as f:
                f.write(f"\nLogging joblib python script\n\n---{time.ctime(self.last_time)}---\n")
        except OSError:
            pass

    def __call__(self, msg: str = "", total: bool = False) -> None:
        """Print ``msg`` and the time since the last call (since creation if ``total``)."""
        now = time.time()
        if total:
            elapsed = now - self.start_time
            line = f"{msg}: {elapsed:.2f}s, {elapsed / 60:.1f} min"
        else:
            elapsed = now - self.last_time
            line = f"{msg}: {_format_time(elapsed)}"
        print(line, file=sys.stderr)
        if self.logfile is not None:
            try:
                with open(self.logfile, "a") as f:
                    print(line, file=f)
            except OSError:
                pass
        self.last_time = time.time()


def _format_time(seconds: float) -> str:
    """joblib's ``format_time``: ``'1.2s, 0.0min'``."""
    return f"{seconds:.1f}s, {seconds / 60:.1f}min"
