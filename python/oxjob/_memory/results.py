"""Results of cached calls (``MemorizedResult``, ``NotMemorizedResult``), the functions
``Memory(location=None)`` returns, and ``expires_after``; re-exported by ``oxjob.memory``.
"""

from __future__ import annotations

import datetime
import pprint
import time
from typing import Any, Callable

from ..store import store_backend_factory

__all__ = [
    "AsyncNotMemorizedFunc",
    "MemorizedResult",
    "NotMemorizedFunc",
    "NotMemorizedResult",
    "expires_after",
]


def expires_after(
    days: float = 0,
    seconds: float = 0,
    microseconds: float = 0,
    milliseconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
    weeks: float = 0,
) -> Callable[[dict], bool]:
    """A ``cache_validation_callback`` that expires results after a delay.

    Parameters
    ----------
    days, seconds, microseconds, milliseconds, minutes, hours, weeks : float
        The delay, as for :class:`datetime.timedelta`.

    Returns
    -------
    callable
        ``callback(metadata) -> bool``: True while the result is younger than the delay.

    Examples
    --------
    >>> memory = Memory("/tmp/cache", verbose=0)
    >>> @memory.cache(cache_validation_callback=expires_after(minutes=5))
    ... def fetch(url):
    ...     return len(url)
    """
    delta = datetime.timedelta(
        days=days,
        seconds=seconds,
        microseconds=microseconds,
        milliseconds=milliseconds,
        minutes=minutes,
        hours=hours,
        weeks=weeks,
    ).total_seconds()

    def cache_validation_callback(metadata: dict) -> bool:
        return time.time() - metadata["time"] < delta

    return cache_validation_callback


class NotMemorizedResult:
    """The result of ``call_and_shelve`` when caching is off: holds the value."""

    __slots__ = ("value", "valid")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.valid = True

    def get(self) -> Any:
        """The value; ``KeyError`` after :meth:`clear`."""
        if self.valid:
            return self.value
        raise KeyError("No value stored.")

    def clear(self) -> None:
        """Forget the value."""
        self.valid = False
        self.value = None

    def __repr__(self) -> str:
        if self.valid:
            return f"{type(self).__name__}({pprint.pformat(self.value)})"
        return f"{type(self).__name__} with no value"

    def __getstate__(self) -> dict:
        return {"valid": self.valid, "value": self.value}

    def __setstate__(self, state: dict) -> None:
        self.valid = state["valid"]
        self.value = state["value"]


class NotMemorizedFunc:
    """What ``Memory(location=None).cache`` returns: calls the function, stores nothing.

    Parameters
    ----------
    func : callable
        The function.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> NotMemorizedResult:
        """Call and wrap the result in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(self.func(*args, **kwargs))

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        """Call; returns ``(output, {})``."""
        return self.func(*args, **kwargs), {}

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """Always False: nothing is cached."""
        return False

    def clear(self, warn: bool = True) -> None:
        """Nothing to clear."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(func={self.func})"


class AsyncNotMemorizedFunc(NotMemorizedFunc):
    """What ``Memory(location=None).cache`` returns for an ``async def`` function.

    Calling it returns the coroutine; :meth:`call_and_shelve` is awaited.
    """

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> NotMemorizedResult:  # type: ignore[override]
        """Await the call and wrap the result in a :class:`NotMemorizedResult`."""
        return NotMemorizedResult(await self.func(*args, **kwargs))


class MemorizedResult:
    """A handle on a cached result, from ``call_and_shelve``: small and picklable.

    Parameters
    ----------
    location : str or StoreBackendBase
        The store holding the result.
    call_id : tuple of str
        ``(func_id, args_id)``.
    backend : str, default='local'
        Store backend name, when ``location`` is a path.
    mmap_mode : {None, 'r', 'r+', 'c'}, optional
        How :meth:`get` maps arrays.
    verbose : int, default=0
    timestamp : float, optional
    metadata : dict, optional
    """

    def __init__(
        self,
        location: Any,
        call_id: tuple[str, str],
        backend: str = "local",
        mmap_mode: str | None = None,
        verbose: int = 0,
        timestamp: float | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.store_backend = store_backend_factory(
            backend, location, verbose=verbose, backend_options={"mmap_mode": mmap_mode}
        )
        self.mmap_mode = mmap_mode
        self.func, self.args_id = call_id
        self._call_id = tuple(call_id)
        self.verbose = verbose
        self.timestamp = time.time() if timestamp is None else timestamp
        self.metadata = metadata if metadata is not None else {}

    @property
    def func_id(self) -> str:
        """Where the function's entries live: ``module/.../name`` (as joblib's)."""
        return self._call_id[0]

    @property
    def argument_hash(self) -> str:
        """The hash of the call's arguments and the function's code (``args_id``)."""
        return self.args_id

    def get(self) -> Any:
        """Load the result; ``KeyError`` if it was cleared."""
        try:
            return self.store_backend.load_item(self._call_id, mmap_mode=self.mmap_mode)
        except KeyError as exc:
            raise KeyError(
                f"Non-existing item (may have been cleared).\nItem {self._call_id} does not exist"
            ) from exc

    def clear(self) -> None:
        """Remove the result from the store."""
        self.store_backend.clear_item(self._call_id)

    def __repr__(self) -> str:
        return '{}(location="{}", func="{}", args_id="{}")'.format(
            type(self).__name__, self.store_backend.location, *self._call_id
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["timestamp"] = None
        return state
