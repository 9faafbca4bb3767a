"""``Memory``: joblib's disk cache for function results, on oxjob's store.

A cached call is keyed by :func:`oxjob.hash` of its bound arguments (defaults
filled in, ``ignore`` honoured), so ``f(1)`` and ``f(x=1)`` share an entry. Entries
live under ``<location>/oxjob/<module>/<function>/<args-hash>/`` in oxjob's
container format; see ``docs/memory.md``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import pprint
import time
import traceback
import warnings
from typing import Any, Callable, Generic, Literal, ParamSpec, TypeVar, overload

from ._memory.func_inspect import (
    FIRST_LINE_TEXT,
    CodeInfo,
    bind_arguments,
    call_signature,
    code_info,
    extract_first_line,
    func_id,
    func_name,
    warn_collision,
)
from ._memory.results import (
    AsyncNotMemorizedFunc,
    MemorizedResult,
    NotMemorizedFunc,
    NotMemorizedResult,
    expires_after,
)
from .exceptions import CacheWarning, JobLibCollisionWarning
from .hashing import hash as _hash
from .store import StoreBackendBase, register_store_backend, store_backend_factory

__all__ = [
    "Memory",
    "MemorizedFunc",
    "AsyncMemorizedFunc",
    "NotMemorizedFunc",
    "AsyncNotMemorizedFunc",
    "MemorizedResult",
    "NotMemorizedResult",
    "JobLibCollisionWarning",
    "expires_after",
    "register_store_backend",
]

_logger = logging.getLogger("oxjob")
_STORE_DIRNAME = "oxjob"

# (store, func_id) -> the source this process last found or wrote in the func_code.py
# beside those entries: a call whose function has that source skips reading the file.
# Another function of the same name (a second lambda, an exec'd function) has other
# source, so it reads the file again, as joblib does.
_VERIFIED_CODE: dict[tuple[Any, str], str] = {}
_UNSET = object()


def _store_key(store: Any) -> Any:
    location = getattr(store, "location", None)
    return location if isinstance(location, str) else id(store)


_MMAP_MODES = (None, "r+", "r", "w+", "c")


def _check_mmap_mode(mmap_mode: Any) -> None:
    """joblib fails on a bad ``mmap_mode`` at the first load (numpy's ValueError);
    here it fails at once, naming the parameter."""
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {list(_MMAP_MODES)}, got {mmap_mode!r}")


def _format_arg(arg: Any) -> str:
    formatted = pprint.pformat(arg, indent=2)
    return f"{formatted[:700]}..." if len(formatted) > 1500 else formatted


def _signature_text(func: Callable, args: tuple, kwargs: dict) -> str:
    """``name(arg, ..., key=value)`` as joblib's messages show a call."""
    pieces, previous = [], 0
    for arg in args:
        formatted = _format_arg(arg)
        if previous > 80:
            formatted = "\n" + formatted
        previous = len(formatted)
        pieces.append(formatted)
    pieces.extend(f"{k}={_format_arg(v)}" for k, v in kwargs.items())
    return f"{func_name(func)}({', '.join(pieces)})"  # joblib's: the name, not the path


def _format_call(func: Callable, args: tuple, kwargs: dict) -> str:
    """joblib's ``[Memory] Calling ...`` banner."""
    dotted = func_id(func).replace("/", ".")
    return f"{80 * '_'}\n[Memory] Calling {dotted}...\n{_signature_text(func, args, kwargs)}"


def _format_time(seconds: float) -> str:
    return f"{seconds:.1f}s, {seconds / 60:.1f}min"


#: The decorated function's parameters and result: ``Memory.cache`` keeps its signature
#: for type checkers.
P = ParamSpec("P")
R = TypeVar("R")
MmapMode = Literal["r+", "r", "w+", "c"]


class MemorizedFunc(Generic[P, R]):
    """A function whose results are cached on disk; made by :meth:`Memory.cache`.

    Calling it returns the cached result when the same arguments were seen before
    and the function's code has not changed; otherwise it runs the function and
    stores the result.

    Parameters
    ----------
    func : callable
        The function to cache.
    location : str or StoreBackendBase
        The store directory (or a configured store).
    backend : str, default='local'
    ignore : list of str, optional
        Argument names left out of the key.
    mmap_mode : {None, 'r', 'r+', 'c'}, optional
        Load cached numpy arrays memory-mapped.
    compress : bool, int, str or tuple, default=False
        As ``oxjob.dump``'s ``compress``.
    verbose : int, default=1
    timestamp : float, optional
    cache_validation_callback : callable, optional
        ``callback(metadata) -> bool``; a False return recomputes the result.
    """

    def __init__(
        self,
        func: Callable,
        location: Any,
        backend: str = "local",
        ignore: list[str] | None = None,
        mmap_mode: str | None = None,
        compress: Any = False,
        verbose: int = 1,
        timestamp: float | None = None,
        cache_validation_callback: Callable[[dict], bool] | None = None,
    ) -> None:
        _check_mmap_mode(mmap_mode)
        self.func = func
        self.mmap_mode = mmap_mode
        self.compress = compress
        self._verbose = verbose
        self.cache_validation_callback = cache_validation_callback
        self.timestamp = time.time() if timestamp is None else timestamp
        if ignore is None:
            ignore = []
        if not isinstance(ignore, list):
            raise ValueError(
                f"ignore must be a list of parameters to ignore {ignore} "
                f"(type {type(ignore)}) was given"
            )
        self.ignore = ignore
        self.store_backend = store_backend_factory(
            backend, location, verbose=verbose, backend_options={"compress": compress}
        )
        self.func_id = func_id(func)
        self._code_info: CodeInfo | None = None
        self._code_object: Any = _UNSET
        signature = self._signature()
        unknown = [name for name in ignore if name not in signature.parameters]
        if unknown:
            raise ValueError(
                f"Ignore list: argument '{unknown[0]}' is not defined for function "
                f"{self.func_id.replace('/', '.')}{signature}"
            )
        functools.update_wrapper(self, func)

    # ---- keys --------------------------------------------------------------------------

    def _signature(self) -> inspect.Signature:
        signature = self.__dict__.get("_signature_cache")
        if signature is None:
            signature = call_signature(self.func)
            self.__dict__["_signature_cache"] = signature
        return signature

    def _arguments(self, args: tuple, kwargs: dict) -> dict:
        arguments = bind_arguments(self._signature(), self.func, args, kwargs)
        for name in self.ignore:
            arguments.pop(name, None)
        owner = getattr(self.func, "__self__", None)
        if owner is not None and not inspect.ismodule(owner):
            arguments["__self__"] = owner  # bound methods: the instance is part of the key
        return arguments

    def _call_id(self, args: tuple, kwargs: dict) -> tuple[str, str]:
        # The code's identity is hashed with the arguments: an entry written by other
        # code under the same name (another lambda, an exec'd function, an older
        # __code__) has another key, whatever func_code.py says.
        key = (self.func_code_info.token, self._arguments(args, kwargs))
        return self.func_id, _hash(key, coerce_mmap=self.mmap_mode is not None)

    # ---- code-change detection ----------------------------------------------------------

    @property
    def func_code_info(self) -> CodeInfo:
        """The function's :class:`~oxjob._memory.func_inspect.CodeInfo`, read again when
        ``func.__code__`` is replaced."""
        code = getattr(self.func, "__code__", None)
        if self._code_info is not None:
            if code is self._code_object:
                return self._code_info
            if self._code_object is _UNSET:
                # Unpickled in another process, where the source may not be found:
                # the introspection done where the function was defined holds.
                self._code_object = code
                return self._code_info
        self._code_info = code_info(self.func)
        self._code_object = code
        return self._code_info

    def _write_func_code(self, info: CodeInfo) -> None:
        try:
            self.store_backend.store_cached_func_code(
                self.func_id, f"{FIRST_LINE_TEXT} {info.first_line}\n{info.source}"
            )
        except OSError as exc:
            # A cache that cannot be written (full, read-only, a name too long) still
            # returns results: the store of the result will fail and say so too.
            warnings.warn(f"Unable to cache to disk: {exc}.", CacheWarning, stacklevel=5)
            return
        _VERIFIED_CODE[(_store_key(self.store_backend), self.func_id)] = info.source

    def _check_previous_func_code(self, stacklevel: int = 2) -> bool:
        """True when the stored code matches; otherwise clears the function's entries.

        joblib's rules and warnings: a differing source means the function changed (or
        another function of the same name was cached), and its entries are removed.
        """
        info = self.func_code_info
        if _VERIFIED_CODE.get((_store_key(self.store_backend), self.func_id)) == info.source:
            return True
        try:
            stored = self.store_backend.get_cached_func_code(self.func_id)
        except (OSError, KeyError):
            self._write_func_code(info)
            return False
        old_source, old_first_line = extract_first_line(stored)
        if old_source == info.source:
            _VERIFIED_CODE[(_store_key(self.store_backend), self.func_id)] = info.source
            return True
        warn_collision(self.func, info, old_source, old_first_line, stacklevel + 1)
        if self._verbose > 10:
            self.warn(
                f"Function {func_name(self.func)} (identified by {self.func_id}) has changed."
            )
        try:
            self.clear(warn=True)
        except OSError as exc:
            warnings.warn(f"Unable to clear the cache: {exc}.", CacheWarning, stacklevel=4)
        return False

    def clear(self, warn: bool = True) -> None:
        """Remove every cached result of this function."""
        if self._verbose > 0 and warn:
            self.warn(f"Clearing function cache identified by {self.func_id}")
        self.store_backend.clear_path(self.func_id)
        self._write_func_code(self.func_code_info)

    def warn(self, msg: str) -> None:
        """Log ``msg`` as joblib does (logger ``oxjob``, level WARNING)."""
        _logger.warning("[%s]: %s", self, msg)

    # ---- calls --------------------------------------------------------------------------

    def _is_in_cache_and_valid(self, call_id: tuple[str, str]) -> bool:
        if not self._check_previous_func_code(stacklevel=4):
            return False
        if not self.store_backend.contains_item(call_id):
            return False
        if self.cache_validation_callback is not None:
            metadata = self.store_backend.get_metadata(call_id)
            if not self.cache_validation_callback(metadata):
                self.store_backend.clear_item(call_id)
                return False
        return True

    def _cached_call(self, args: tuple, kwargs: dict, shelving: bool = False) -> Any:
        call_id = self._call_id(args, kwargs)
        if self._verbose >= 20:
            self._log_query(call_id, args, kwargs)
        code_ok = self._check_previous_func_code(stacklevel=4)
        if code_ok and self.cache_validation_callback is not None:
            code_ok = self._is_in_cache_and_valid(call_id)
        if code_ok:
            if shelving:
                if self.store_backend.contains_item(call_id):
                    return self._memorized_result(call_id), {}
            else:
                start = time.time()
                try:
                    output = self.store_backend.load_item(call_id, mmap_mode=self.mmap_mode)
                except KeyError:
                    pass  # not cached
                except MemoryError:
                    raise  # the entry is intact: the memory to load it is what is missing
                except Exception:  # noqa: BLE001 - any unreadable entry is recomputed, as joblib's
                    warnings.warn(
                        f"Exception while loading results for {self.func_id}; the entry is "
                        f"recomputed and replaced.\n{traceback.format_exc()}",
                        CacheWarning,
                        stacklevel=3,
                    )
                    try:
                        self.store_backend.clear_item(call_id)
                    except OSError:
                        pass  # storing the recomputed result will report the problem
                else:
                    if self._verbose > 4:
                        self._print_duration(time.time() - start, context="cache loaded ")
                    return output, {}
        if self._verbose > 10:
            self.warn(
                f"Computing func {func_name(self.func)}, argument hash {call_id[1]} "
                f"in location {self._location()}"
            )
        return self._call(call_id, args, kwargs, shelving)

    def _location(self) -> str:
        return os.path.join(str(self.store_backend.location), self.func_id)

    def _log_query(self, call_id: tuple[str, str], args: tuple, kwargs: dict) -> None:
        """joblib's "Querying ..." message, logged at INFO level from verbose=20."""
        logging.basicConfig(level=logging.INFO)  # as joblib: the message is seen unconfigured
        _logger.info(
            "[%s]: %s",
            self,
            f"\nQuerying {func_name(self.func)} with signature\n"
            f"{_signature_text(self.func, args, kwargs)}.\n\n"
            f"(argument hash {call_id[1]})\n\n"
            f"The store location is {self._location()}.\n",
        )

    def _memorized_result(self, call_id: tuple[str, str], metadata: dict | None = None) -> Any:
        return MemorizedResult(
            self.store_backend,
            call_id,
            mmap_mode=self.mmap_mode,
            verbose=self._verbose - 1,
            timestamp=self.timestamp,
            metadata=metadata,
        )

    def _before_call(self, args: tuple, kwargs: dict) -> float:
        if self._verbose > 0:
            print(_format_call(self.func, args, kwargs))
        return time.time()

    def _call(self, call_id: tuple[str, str], args: tuple, kwargs: dict, shelving: bool) -> Any:
        start = self._before_call(args, kwargs)
        output = self.func(*args, **kwargs)
        return self._after_call(call_id, args, kwargs, shelving, output, start)

    def _after_call(
        self,
        call_id: tuple[str, str],
        args: tuple,
        kwargs: dict,
        shelving: bool,
        output: Any,
        start: float,
    ) -> tuple[Any, dict]:
        duration = time.time() - start
        arguments = self._arguments(args, kwargs)
        metadata = {
            "duration": duration,
            "input_args": {k: repr(v) for k, v in arguments.items()},
            "time": start,
        }
        stored = self._store(call_id, output, metadata)
        if self._verbose > 0:
            self._print_duration(duration)
        if shelving:
            if stored:
                return self._memorized_result(call_id, metadata), metadata
            return NotMemorizedResult(output), metadata
        if stored and self.mmap_mode is not None:
            # As joblib: the first call returns what later calls will, the stored
            # result memory-mapped, not the arrays just computed.
            try:
                output = self.store_backend.load_item(call_id, mmap_mode=self.mmap_mode)
            except Exception:  # noqa: BLE001 - the computed value is returned either way
                pass  # the computed value is right too; the next call reads the entry
        return output, metadata

    def _store(self, call_id: tuple[str, str], output: Any, metadata: dict) -> bool:
        """Store a result; on failure warn and leave nothing behind."""
        try:
            self.store_backend.dump_item(call_id, output, metadata)
            return True
        except OSError as exc:
            warnings.warn(f"Unable to cache to disk: {exc}.", CacheWarning, stacklevel=4)
        except Exception as exc:  # noqa: BLE001 - pickling the output can raise anything
            warnings.warn(
                f"Unable to cache to disk: failed to pickle output. Exception: {exc!r}.",
                CacheWarning,
                stacklevel=4,
            )
        return False

    def _print_duration(self, duration: float, context: str = "") -> None:
        name = func_name(self.func)  # joblib prints the name, not the path
        msg = f"{name} {context}- {_format_time(duration)}"
        print(max(0, 80 - len(msg)) * "_" + msg)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._cached_call(args, kwargs)[0]

    def call(self, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        """Run the function whatever the cache holds, store and return ``(output, metadata)``."""
        call_id = self._call_id(args, kwargs)
        self._check_previous_func_code(stacklevel=3)
        return self._call(call_id, args, kwargs, shelving=False)

    def call_and_shelve(self, *args: Any, **kwargs: Any) -> Any:
        """Like calling, but return a :class:`MemorizedResult` handle instead of the value."""
        return self._cached_call(args, kwargs, shelving=True)[0]

    def check_call_in_cache(self, *args: Any, **kwargs: Any) -> bool:
        """Whether a valid result for these arguments is cached (nothing is computed)."""
        return self._is_in_cache_and_valid(self._call_id(args, kwargs))

    def __getstate__(self) -> dict:
        _ = self.func_code_info  # introspect here: the source may not be found where it goes
        state = self.__dict__.copy()
        state.pop("_signature_cache", None)
        state["timestamp"] = None
        state["_code_object"] = _UNSET
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._code_object = _UNSET

    def __repr__(self) -> str:
        return f"{type(self).__name__}(func={self.func}, location={self.store_backend.location})"


class AsyncMemorizedFunc(MemorizedFunc):
    """:class:`MemorizedFunc` for ``async def`` functions: calls return awaitables."""

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        out = self._cached_call(args, kwargs)
        out = await out if asyncio.iscoroutine(out) else out
        return out[0]

    async def call_and_shelve(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        out = self._cached_call(args, kwargs, shelving=True)
        out = await out if asyncio.iscoroutine(out) else out
        return out[0]

    async def call(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        call_id = self._call_id(args, kwargs)
        self._check_previous_func_code(stacklevel=3)
        return await self._call(call_id, args, kwargs, shelving=False)

    async def _call(  # type: ignore[override]
        self, call_id: tuple[str, str], args: tuple, kwargs: dict, shelving: bool
    ) -> Any:
        start = self._before_call(args, kwargs)
        output = await self.func(*args, **kwargs)
        return self._after_call(call_id, args, kwargs, shelving, output, start)


class Memory:
    """Cache function results on disk, as ``joblib.Memory`` does, with size bounds.

    Parameters
    ----------
    location : str, pathlib.Path or None
        Directory of the cache (entries go under ``<location>/oxjob``). None turns
        caching off: cached functions are then plain calls.
    backend : str, default='local'
        Store backend, see :func:`oxjob.register_store_backend`.
    mmap_mode : {None, 'r+', 'r', 'w+', 'c'}, optional
        Load cached numpy arrays memory-mapped (uncompressed caches only).
    compress : bool, int, str or tuple, default=False
        Compression of stored results, as ``oxjob.dump``'s.
    verbose : int, default=1
        joblib's verbosity: 1 prints each computed call and its duration.
    backend_options : dict, optional
        Extra options for the store backend.
    bytes_limit : int or str, optional
        Keep the cache under this size (``'1G'``, ``'500M'`` or bytes), evicting the
        least recently used entries after every write.
    items_limit : int, optional
        Keep at most this many entries.
    age_limit : datetime.timedelta or float, optional
        Remove entries unused for longer than this (seconds when a number).

    Examples
    --------
    >>> import oxjob
    >>> memory = oxjob.Memory("/tmp/oxjob-cache", verbose=0, bytes_limit="1G")
    >>> @memory.cache
    ... def square(x):
    ...     return x * x
    >>> square(4), square(4)  # the second call is read from disk
    (16, 16)
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | StoreBackendBase | None = None,
        backend: str = "local",
        mmap_mode: MmapMode | None = None,
        compress: bool | int | str | tuple[str, int] = False,
        verbose: int = 1,
        backend_options: dict | None = None,
        bytes_limit: Any = None,
        items_limit: int | None = None,
        age_limit: Any = None,
    ) -> None:
        _check_mmap_mode(mmap_mode)
        self._verbose = verbose
        self.mmap_mode = mmap_mode
        self.timestamp = time.time()
        self.backend = backend
        self.compress = compress
        self.bytes_limit = bytes_limit
        self.items_limit = items_limit
        self.age_limit = age_limit
        self.backend_options = dict(backend_options or {})
        if compress and mmap_mode is not None:
            warnings.warn("Compressed results cannot be memmapped", stacklevel=2)
        self.location = location
        if isinstance(location, os.PathLike):
            location = os.fspath(location)
        if isinstance(location, str):
            location = os.path.join(location, _STORE_DIRNAME)
        options = {
            "compress": compress,
            "mmap_mode": mmap_mode,
            "bytes_limit": bytes_limit,
            "items_limit": items_limit,
            "age_limit": age_limit,
            **self.backend_options,
        }
        self.store_backend: StoreBackendBase | None = store_backend_factory(
            backend, location, verbose=self._verbose, backend_options=options
        )

    @overload
    def cache(
        self,
        func: Callable[P, R],
        ignore: list[str] | None = None,
        verbose: int | None = None,
        mmap_mode: MmapMode | Literal[False] | None = False,
        cache_validation_callback: Callable[[dict], bool] | None = None,
    ) -> MemorizedFunc[P, R]: ...

    @overload
    def cache(
        self,
        func: None = None,
        ignore: list[str] | None = None,
        verbose: int | None = None,
        mmap_mode: MmapMode | Literal[False] | None = False,
        cache_validation_callback: Callable[[dict], bool] | None = None,
    ) -> Callable[[Callable[P, R]], MemorizedFunc[P, R]]: ...

    def cache(
        self,
        func: Callable | None = None,
        ignore: list[str] | None = None,
        verbose: int | None = None,
        mmap_mode: MmapMode | Literal[False] | None = False,
        cache_validation_callback: Callable[[dict], bool] | None = None,
    ) -> Any:
        """Decorate ``func`` so that its results are cached.

        Usable as ``@memory.cache`` or ``@memory.cache(ignore=[...], ...)``.

        Parameters
        ----------
        func : callable, optional
            The function (sync or ``async``).
        ignore : list of str, optional
            Argument names that do not take part in the key (e.g. ``verbose``).
        verbose : int, optional
            Defaults to the Memory's.
        mmap_mode : {None, 'r+', 'r', 'w+', 'c'}, optional
            Defaults to the Memory's.
        cache_validation_callback : callable, optional
            ``callback(metadata) -> bool`` deciding whether a cached result is still
            valid, e.g. :func:`expires_after`.

        Returns
        -------
        MemorizedFunc, AsyncMemorizedFunc or NotMemorizedFunc
        """
        if cache_validation_callback is not None and not callable(cache_validation_callback):
            raise ValueError(
                f"cache_validation_callback needs to be callable. Got {cache_validation_callback}."
            )
        if func is None:
            return functools.partial(
                self.cache,
                ignore=ignore,
                verbose=verbose,
                mmap_mode=mmap_mode,
                cache_validation_callback=cache_validation_callback,
            )
        if self.store_backend is None:
            if inspect.iscoroutinefunction(func):
                return AsyncNotMemorizedFunc(func)
            return NotMemorizedFunc(func)
        if verbose is None:
            verbose = self._verbose
        if mmap_mode is False:
            mmap_mode = self.mmap_mode
        if isinstance(func, MemorizedFunc):
            func = func.func
        cls = AsyncMemorizedFunc if inspect.iscoroutinefunction(func) else MemorizedFunc
        return cls(
            func,
            location=self.store_backend,
            backend=self.backend,
            ignore=ignore,
            mmap_mode=mmap_mode,
            compress=self.compress,
            verbose=verbose,
            timestamp=self.timestamp,
            cache_validation_callback=cache_validation_callback,
        )

    def clear(self, warn: bool = True) -> None:
        """Remove every entry of the cache."""
        if warn:
            self.warn("Flushing completely the cache")
        if self.store_backend is not None:
            self.store_backend.clear()
            # func_code.py files are gone with the entries: check them again.
            key = _store_key(self.store_backend)
            for verified in [k for k in _VERIFIED_CODE if k[0] == key]:
                del _VERIFIED_CODE[verified]

    def reduce_size(
        self, bytes_limit: Any = None, items_limit: Any = None, age_limit: Any = None
    ) -> None:
        """Evict entries, least recently used first, until within the limits.

        Limits not given default to the Memory's own; with none at all, nothing is
        removed.
        """
        if self.store_backend is None:
            return
        limits = (
            self.bytes_limit if bytes_limit is None else bytes_limit,
            self.items_limit if items_limit is None else items_limit,
            self.age_limit if age_limit is None else age_limit,
        )
        if all(limit is None for limit in limits):
            return
        self.store_backend.reduce_size(*limits)

    def eval(self, func: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call ``func(*args, **kwargs)`` through the cache (no decoration kept)."""
        if self.store_backend is None:
            return func(*args, **kwargs)
        return self.cache(func)(*args, **kwargs)

    def warn(self, msg: str) -> None:
        """Log ``msg`` as joblib does (logger ``oxjob``, level WARNING)."""
        _logger.warning("[%s]: %s", self, msg)

    def __repr__(self) -> str:
        location = None if self.store_backend is None else self.store_backend.location
        return f"{type(self).__name__}(location={location})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["timestamp"] = None
        return state
