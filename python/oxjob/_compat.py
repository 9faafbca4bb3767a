"""Small names from joblib's ``__all__`` kept for drop-in compatibility."""

from __future__ import annotations

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
    """Print elapsed time since creation (joblib's ``PrintTime``).

    Parameters
    ----------
    logfile : str, optional
        Also append the messages to this file.
    """

    def __init__(self, logfile: str | None = None, logdir: str | None = None) -> None:
        self.last_time = self.start_time = time.time()
        self.logfile = logfile

    def __call__(self, msg: str = "", total: bool = False) -> None:
        now = time.time()
        elapsed = now - (self.start_time if total else self.last_time)
        line = f"{msg}: {elapsed:.1f}s, {elapsed / 60:.1f}min"
        print(line)
        if self.logfile:
            with open(self.logfile, "a") as f:
                f.write(line + "\n")
        self.last_time = now
