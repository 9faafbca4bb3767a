"""Cache store backends: the interface :class:`oxjob.Memory` talks to, and the local one.

The local backend keeps its entries in oxjob's container format through the Rust
store (``crates/oxjob-core/src/store``): atomic writes, lock-free reads, bounds
enforced least recently used first. Other backends implement
:class:`StoreBackendBase` and are made available by :func:`register_store_backend`.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import json
import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any, Literal, cast

from . import _engine
from ._io.atomic import make_dirs, remove_dirs, write_atomically
from ._io.container import INBAND_COMPRESSED, INBAND_RAW, LoadContext, pickle_parts, unpickle
from ._units import parse_size
from .compressors import resolve
from .exceptions import CacheWarning
from .persistence import load

__all__ = [
    "CacheItemInfo",
    "LocalStoreBackend",
    "StoreBackendBase",
    "is_cache",
    "register_store_backend",
]

#: One cache entry: its directory, its size in bytes, and when it was last used.
CacheItemInfo = collections.namedtuple("CacheItemInfo", "path size last_access")

_STORE_BACKENDS: dict[str, type] = {}
_UMASK_LOCK = threading.Lock()
#: Group and other write: a cache entry is unpickled when read, so whoever can
#: write it can run code in every process that reads the cache.
_NO_SHARED_WRITE = 0o022


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Create files and directories without group or other write, whatever the umask.

    The umask is the only way to give the files the Rust store creates their mode
    at creation (a later ``chmod`` would leave a window). It is process-wide: while
    held, files created by other threads get at most the same restriction.
    """
    with _UMASK_LOCK:
        old = os.umask(0o077)
        os.umask(old | _NO_SHARED_WRITE)
        try:
            yield
        finally:
            os.umask(old)


def _write_gitignore(location: str) -> None:
    """joblib's ``.gitignore`` in the cache directory, so the cache is never committed."""
    parent, base = os.path.split(os.path.normpath(location))
    directory = parent if parent and base == "oxjob" else location
    gitignore = os.path.join(directory, ".gitignore")
    if os.path.lexists(gitignore):
        return
    try:
        write_atomically(gitignore, lambda f: f.write(b"# Created by oxjob automatically.\n*\n"))
    except OSError as exc:
        warnings.warn(f"Unable to write {gitignore}. Exception: {exc}.", stacklevel=3)


#: Marks a directory as an oxjob cache (the Cache Directory Tagging Specification's
#: tag, so backup tools skip it too); ``python -m oxjob cache`` refuses folders
#: without it or any entry.
CACHE_TAG = "CACHEDIR.TAG"
_TAG_TEXT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by oxjob (oxjob.Memory).\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def _write_tag(location: str) -> None:
    tag = os.path.join(location, CACHE_TAG)
    if not os.path.exists(tag):
        write_atomically(tag, lambda f: f.write(_TAG_TEXT.encode()))


def is_cache(root: str) -> bool:
    """Whether ``root`` is an oxjob cache: it has oxjob's tag, or holds entries or
    function sources (caches written before the tag) and nothing the store does not
    recognise at its top (a checkout or a user's folder is refused)."""
    try:
        with open(os.path.join(root, CACHE_TAG), encoding="utf-8", errors="replace") as f:
            if "oxjob" in f.read(512):
                return True
    except OSError:
        pass
    try:
        listing = list(os.scandir(root))
    except OSError:
        return False
    if any(not item.is_dir(follow_symlinks=False) for item in listing if item.name != CACHE_TAG):
        return False
    return any(_holds_cache_files(item.path, depth=0) for item in listing)


def _holds_cache_files(directory: str, depth: int) -> bool:
    if depth > 32:
        return False
    try:
        listing = list(os.scandir(directory))
    except OSError:
        return False
    for item in listing:
        if item.name == "func_code.py" and item.is_file(follow_symlinks=False):
            return True
        if item.name == "output.oxjob" and item.is_file(follow_symlinks=False):
            return True
        if item.is_dir(follow_symlinks=False) and not item.name.startswith("."):
            if _holds_cache_files(item.path, depth + 1):
                return True
    return False


def _inside(location: str, path: str) -> str:
    """``location/path`` for a ``/``-separated relative ``path``; ``ValueError`` when a
    part would leave ``location`` (``..``, an absolute path, an empty part)."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") or os.sep in p or "\0" in p for p in parts):
        raise ValueError(f"cache path {path!r} must be relative and stay inside the store")
    return os.path.join(location, *parts)


def parse_bytes_limit(limit: Any) -> int | None:
    """Bytes from an int or a string such as ``'1G'``/``'500M'`` (joblib's units)."""
    return None if limit is None else parse_size(limit, "bytes_limit")


def parse_items_limit(limit: Any) -> int | None:
    """A non-negative number of entries, or None."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"items_limit must be a non-negative int, got {limit!r}")
    return limit


def parse_age_limit(limit: Any) -> float | None:
    """Seconds from a :class:`datetime.timedelta` or a number of seconds."""
    if limit is None:
        return None
    seconds = limit.total_seconds() if isinstance(limit, datetime.timedelta) else limit
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(
            f"age_limit must be a non-negative datetime.timedelta or seconds, got {limit!r}"
        )
    return float(seconds)


class StoreBackendBase(ABC):
    """Interface of a cache store used by :class:`oxjob.Memory`.

    An item is addressed by a ``call_id``: ``(func_id, args_id)``, where ``func_id``
    is a ``/``-separated path naming the function and ``args_id`` the hash of its
    arguments. Implementations must make :meth:`dump_item` atomic: a reader sees a
    whole item or none.

    Examples
    --------
    >>> class DictStore(StoreBackendBase):  # a minimal in-memory store
    ...     def configure(self, location, verbose=0, backend_options=None):
    ...         self.location, self.items, self.code = location, {}, {}
    ...     def load_item(self, call_id, mmap_mode=None):
    ...         return self.items[tuple(call_id)][0]
    ...     def dump_item(self, call_id, item, metadata):
    ...         self.items[tuple(call_id)] = (item, metadata)
    ...     def contains_item(self, call_id):
    ...         return tuple(call_id) in self.items
    ...     def get_metadata(self, call_id):
    ...         return self.items.get(tuple(call_id), (None, {}))[1]
    ...     def clear_item(self, call_id):
    ...         self.items.pop(tuple(call_id), None)
    ...     def clear_path(self, path):
    ...         self.items = {k: v for k, v in self.items.items() if k[0] != path}
    ...     def store_cached_func_code(self, path, func_code):
    ...         self.code[path] = func_code
    ...     def get_cached_func_code(self, path):
    ...         return self.code[path]
    ...     def get_items(self):
    ...         return []
    ...     def reduce_size(self, bytes_limit=None, items_limit=None, age_limit=None):
    ...         return []
    ...     def clear(self):
    ...         self.items.clear()
    >>> register_store_backend("dict", DictStore)
    """

    location: Any = None

    @abstractmethod
    def configure(self, location: Any, verbose: int = 0, backend_options: Any = None) -> None:
        """Prepare the store at ``location``; ``backend_options`` come from ``Memory``."""

    @abstractmethod
    def load_item(self, call_id: Any, mmap_mode: str | None = None) -> Any:
        """Return the stored value; raise ``KeyError`` when absent."""

    @abstractmethod
    def dump_item(self, call_id: Any, item: Any, metadata: dict) -> Any:
        """Store ``item`` and its ``metadata`` atomically."""

    @abstractmethod
    def contains_item(self, call_id: Any) -> bool:
        """Whether an item is stored."""

    @abstractmethod
    def get_metadata(self, call_id: Any) -> dict:
        """The metadata stored with an item (``{}`` if none)."""

    @abstractmethod
    def clear_item(self, call_id: Any) -> None:
        """Remove one item."""

    @abstractmethod
    def clear_path(self, path: str) -> int | None:
        """Remove every item of one function (``path`` is its ``func_id``); a store may
        return how many it removed."""

    @abstractmethod
    def store_cached_func_code(self, path: str, func_code: str) -> None:
        """Remember the source of a function, to detect when it changes."""

    @abstractmethod
    def get_cached_func_code(self, path: str) -> str:
        """The remembered source; raise ``OSError`` or ``KeyError`` when there is none."""

    @abstractmethod
    def get_items(self) -> list:
        """Every item as a :data:`CacheItemInfo`."""

    @abstractmethod
    def reduce_size(
        self, bytes_limit: Any = None, items_limit: Any = None, age_limit: Any = None
    ) -> list:
        """Remove items, least recently used first, until within the limits."""

    @abstractmethod
    def clear(self) -> int | None:
        """Remove everything; a store may return how many items it removed."""


def register_store_backend(backend_name: str, backend: type) -> None:
    """Make a store backend available as ``Memory(..., backend=backend_name)``.

    Parameters
    ----------
    backend_name : str
        The name given to ``Memory``'s ``backend`` argument.
    backend : type
        A subclass of :class:`StoreBackendBase`.

    Raises
    ------
    ValueError
        If the name is not a string or ``backend`` is not such a subclass.
    """
    if not isinstance(backend_name, str):
        raise ValueError(f"Store backend name should be a string, '{backend_name}' given.")
    if not (isinstance(backend, type) and issubclass(backend, StoreBackendBase)):
        raise ValueError(f"Store backend should inherit StoreBackendBase, '{backend}' given.")
    _STORE_BACKENDS[backend_name] = backend


class LocalStoreBackend(StoreBackendBase):
    """The default store: entries in oxjob's container format under a local directory.

    ``backend_options`` understood: ``compress`` (as ``dump``'s), ``mmap_mode``, and
    the bounds ``bytes_limit``, ``items_limit``, ``age_limit``, enforced after every
    write.
    """

    def configure(self, location: Any, verbose: int = 0, backend_options: Any = None) -> None:
        options = dict(backend_options or {})
        self.location = os.fspath(location)
        self.verbose = verbose
        self.compress = options.get("compress", False)
        self.mmap_mode = options.get("mmap_mode")
        _, self.codec, self.level = resolve(None, self.compress, container_only=True)
        self.limits = (
            parse_bytes_limit(options.get("bytes_limit")),
            parse_items_limit(options.get("items_limit")),
            parse_age_limit(options.get("age_limit")),
        )
        self._options = options
        self._store = _engine.Store(self.location)
        try:
            with private_files():
                os.makedirs(self.location, exist_ok=True)
                _write_tag(self.location)
                _write_gitignore(self.location)
        except OSError as exc:
            # A location that cannot be written (read-only, full, a name too long)
            # still caches nothing and computes everything: each store warns.
            warnings.warn(
                f"Unable to create the cache in {self.location}: {exc}. Results are "
                "computed but not stored.",
                CacheWarning,
                stacklevel=4,
            )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_store"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._store = _engine.Store(self.location)

    def _output_path(self, call_id: Any) -> str:
        return os.path.join(self._store.entry_dir(*call_id), "output.oxjob")

    def load_item(self, call_id: Any, mmap_mode: str | None = None) -> Any:
        func_id, args_id = call_id
        if mmap_mode is not None and self.codec == "raw":
            try:
                # load() checks the mode (the base class types it as any str).
                mode = cast(Literal["r+", "r", "w+", "c"], mmap_mode)
                value = load(self._output_path(call_id), mmap_mode=mode)
            except FileNotFoundError:
                raise KeyError(call_id) from None
            try:
                with private_files():
                    self._store.touch(func_id, args_id)
            except OSError:
                pass  # a read-only store still serves hits
            return value
        with private_files():
            parts = self._store.get(func_id, args_id)
        if parts is None:
            raise KeyError(call_id)
        return unpickle(parts[0], parts[1:], LoadContext(native=True), f"{func_id}/{args_id}", None)

    def dump_item(self, call_id: Any, item: Any, metadata: dict) -> bool:
        inband = INBAND_RAW if self.codec == "raw" else INBAND_COMPRESSED
        parts = pickle_parts(item, None, inband)
        func_id, args_id = call_id
        with private_files():
            nbytes = self._store.put(
                func_id, args_id, parts, self.codec, self.level, json.dumps(metadata).encode()
            )
        if any(limit is not None for limit in self.limits):
            # Amortised O(1): the store walks its entries only when a bound may have
            # been crossed (see crates/oxjob-core/src/store/entries.rs).
            self._store.after_put(nbytes, *self.limits)
        return True

    def contains_item(self, call_id: Any) -> bool:
        return self._store.contains(*call_id)

    def get_metadata(self, call_id: Any) -> dict:
        try:
            with open(os.path.join(self._store.entry_dir(*call_id), "metadata.json"), "rb") as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    def clear_item(self, call_id: Any) -> None:
        self._store.remove(*call_id)

    def clear_path(self, path: str) -> int:
        """Remove one function's entries and source; returns how many entries."""
        return self._store.clear(path)

    def store_cached_func_code(self, path: str, func_code: str) -> None:
        directory = _inside(self.location, path)
        data = func_code.encode("utf-8", "surrogatepass")
        with private_files():
            made = make_dirs(directory)
            try:
                write_atomically(os.path.join(directory, "func_code.py"), lambda f: f.write(data))
            except BaseException:
                remove_dirs(made)  # leave nothing behind
                raise

    def get_cached_func_code(self, path: str) -> str:
        with open(os.path.join(_inside(self.location, path), "func_code.py"), "rb") as f:
            return f.read().decode("utf-8", "surrogatepass")

    def get_items(self) -> list:
        return [
            CacheItemInfo(
                path=os.path.join(self.location, func_id, args_id),
                size=size,
                last_access=datetime.datetime.fromtimestamp(last_access),
            )
            for func_id, args_id, size, last_access, _ in self._store.entries()
        ]

    def entries(self) -> list[tuple[str, str, int, float, float]]:
        """``(func_id, args_id, bytes, last_access, created)`` of every entry."""
        return self._store.entries()

    def reduce_size(
        self, bytes_limit: Any = None, items_limit: Any = None, age_limit: Any = None
    ) -> list:
        removed = self._store.reduce(
            parse_bytes_limit(bytes_limit),
            parse_items_limit(items_limit),
            parse_age_limit(age_limit),
        )
        return [
            CacheItemInfo(
                os.path.join(self.location, f, a), size, datetime.datetime.fromtimestamp(t)
            )
            for f, a, size, t, _ in removed
        ]

    def clear(self) -> int:
        """Remove every entry and function source (nothing else); returns how many
        entries."""
        return self._store.clear(None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(location={self.location!r})"


register_store_backend("local", LocalStoreBackend)


def store_backend_factory(
    backend: str, location: Any, verbose: int = 0, backend_options: Any = None
) -> StoreBackendBase | None:
    """The configured store for ``Memory(location, backend=...)``, or None for no caching."""
    if isinstance(location, StoreBackendBase):
        return location
    if isinstance(location, os.PathLike):
        location = os.fspath(location)
    if isinstance(location, str):
        cls = _STORE_BACKENDS.get(backend)
        if cls is None:
            raise TypeError(f"Unknown location {location} or backend {backend}")
        store = cls()
        store.configure(
            os.path.expanduser(location), verbose=verbose, backend_options=backend_options
        )
        return store
    if location is not None:
        import warnings

        warnings.warn(
            f"Instantiating a backend using a {type(location).__name__} as a location is not "
            "supported by oxjob. Returning None instead.",
            UserWarning,
            stacklevel=3,
        )
    return None
