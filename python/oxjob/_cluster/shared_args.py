"""Large arguments of the cluster backends: sent once, found again by content.

Numpy arrays and ``bytes`` of at least ``max_nbytes`` become references to data on
the cluster (Dask futures, Ray object refs); the batch carries a
:class:`~oxjob._cluster.base.Slot` in their place.
"""

from __future__ import annotations

import collections
import sys
import threading
import weakref
from typing import Any, Callable

from .._units import parse_size
from .base import Slot


def content_key(obj: Any, max_nbytes: int) -> tuple | None:
    """A key naming ``obj``'s type, layout and bytes (xxh3-128) when it is a numpy array
    or ``bytes`` of at least ``max_nbytes``; None otherwise."""
    from .. import _engine

    if type(obj) is bytes:  # immutable: tasks may share one copy
        if len(obj) < max_nbytes:
            return None
        hasher = _engine.StreamHasher()
        hasher.update(obj)
        return ("bytes", hasher.digest())
    np = _numpy()
    if np is None or type(obj) is not np.ndarray or obj.dtype.hasobject:
        return None
    if obj.nbytes < max_nbytes:
        return None
    layout = (obj.dtype.str, obj.shape, obj.flags.c_contiguous, obj.flags.f_contiguous)
    if obj.flags.c_contiguous or obj.flags.f_contiguous:
        hasher = _engine.StreamHasher()
        hasher.update(obj.reshape(-1, order="A").view(np.uint8))
        return ("ndarray", layout, hasher.digest())
    from ..hashing import hash as oxjob_hash

    return ("ndarray", layout, oxjob_hash(obj))


#: Where a call's ``call_refs`` keeps the ids of the arguments it has seen once.
_SEEN = "seen once"


def _numpy() -> Any:
    return sys.modules.get("numpy")  # an array argument means numpy is imported already


class SharedArgs:
    """Large arguments sent to the cluster once and referenced by every task using them.

    Numpy arrays and ``bytes`` of at least ``max_nbytes`` are found by content: one
    equal in bytes to one sent earlier (in this call or an earlier one) reuses its
    reference while some object it was sent for is alive and the total stays under
    ``cache_nbytes`` (least recently used dropped first). Other objects travel with
    each batch unless :meth:`send` was asked for them.

    Parameters
    ----------
    put : callable
        Sends one object, returns its reference (``client.scatter``, ``ray.put``).
    cache_nbytes : int
        Bound of what is kept across calls; 0 keeps nothing.
    sizeof : callable, optional
        Size of any other object (``dask.sizeof``): a weak-referenceable one of at least
        ``max_nbytes`` is sent once per call too, found by identity (joblib's rule on
        Dask, for DataFrames and the like).
    """

    def __init__(
        self, put: Callable, cache_nbytes: int = 1 << 30, sizeof: Callable | None = None
    ) -> None:
        self.put = put
        self.sizeof = sizeof
        self.cache_nbytes = cache_nbytes
        self.lock = threading.Lock()
        self.by_content: collections.OrderedDict = collections.OrderedDict()
        self.nbytes = 0
        self.direct = False  # Dask: scatter straight to the workers (the backend sets it)

    def reference(
        self, obj: Any, max_nbytes: int, call_refs: dict, reuse_nbytes: int | None = None
    ) -> Any:
        """The reference standing for ``obj``, or None when it travels by value.

        With ``reuse_nbytes``, an argument of at least that size is sent too from the
        second time the call passes it (by identity): a row used by one task travels
        with its batch, an object shared by tasks is sent once.
        """
        found = call_refs.get(id(obj))
        if found is not None:
            return found[1]
        if obj is None or isinstance(obj, (int, float, complex, str, bool)):
            return None
        key = content_key(obj, max_nbytes)
        if key is not None:
            ref = self._by_content(key, obj)
        elif self._sizeable(obj, max_nbytes):
            ref = self.put(obj)
        elif reuse_nbytes is not None and self._used_again(obj, reuse_nbytes, call_refs):
            key = content_key(obj, 0)
            ref = self._by_content(key, obj) if key is not None else self.put(obj)
        else:
            return None
        call_refs[id(obj)] = (obj, ref)  # obj kept alive: its id stays unique in the call
        return ref

    def _used_again(self, obj: Any, nbytes: int, call_refs: dict) -> bool:
        np = _numpy()
        if type(obj) is bytes:
            big = len(obj) >= nbytes
        elif np is not None and type(obj) is np.ndarray:
            big = not obj.dtype.hasobject and obj.nbytes >= nbytes
        else:
            big = self._sizeable(obj, nbytes)
        if not big:
            return False
        # ids only (the objects are not kept alive): a reused id after an object's
        # death at worst sends the new object, which is still the right data.
        seen = call_refs.setdefault(_SEEN, set())
        if id(obj) in seen:
            return True
        seen.add(id(obj))
        return False

    def _sizeable(self, obj: Any, max_nbytes: int) -> bool:
        np = _numpy()
        if self.sizeof is None or (np is not None and isinstance(obj, np.ndarray)):
            return False  # arrays below max_nbytes (or of objects) travel with the batch
        return _weakrefable(obj) and self.sizeof(obj) >= max_nbytes

    def send(self, obj: Any, call_refs: dict, put: Callable | None = None) -> None:
        """Send ``obj`` now (with ``put`` if given); arguments that are ``obj`` (by
        identity) use the reference."""
        key = content_key(obj, 0)
        ref = self._by_content(key, obj, put) if key is not None else (put or self.put)(obj)
        call_refs[id(obj)] = (obj, ref)

    def _by_content(self, key: tuple, obj: Any, put: Callable | None = None) -> Any:
        with self.lock:
            entry = self.by_content.get(key)
            if entry is not None and entry.usable():
                self.by_content.move_to_end(key)
                entry.keep_for(obj, self._forget, key)
                return entry.ref
        nbytes = obj.nbytes if hasattr(obj, "nbytes") else len(obj)
        ref = (put or self.put)(obj)
        if nbytes > self.cache_nbytes:
            return ref
        entry = _Entry(ref, nbytes)
        with self.lock:
            old = self.by_content.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self.by_content[key] = entry
            self.nbytes += nbytes
            while self.nbytes > self.cache_nbytes:
                _, dropped = self.by_content.popitem(last=False)
                self.nbytes -= dropped.nbytes
        entry.keep_for(obj, self._forget, key)
        return ref

    def _forget(self, key: tuple, entry: _Entry) -> None:
        with self.lock:
            if self.by_content.get(key) is entry:
                del self.by_content[key]
                self.nbytes -= entry.nbytes

    def clear(self) -> None:
        """Drop every reference kept across calls."""
        with self.lock:
            self.by_content.clear()
            self.nbytes = 0


class _Entry:
    """A reference kept while some object it was sent for is alive."""

    __slots__ = ("ref", "nbytes", "owners", "__weakref__")

    def __init__(self, ref: Any, nbytes: int) -> None:
        self.ref, self.nbytes = ref, nbytes
        self.owners: dict[int, weakref.ref] = {}  # id(weakref) -> weakref

    def usable(self) -> bool:
        status = getattr(self.ref, "status", "finished")  # Dask futures; Ray refs have none
        return status in ("finished", "pending")

    def keep_for(self, obj: Any, forget: Callable, key: tuple) -> None:
        if not _weakrefable(obj):
            return  # bytes: reused across calls until evicted by the bound
        me = weakref.ref(self)

        def dead(owner: weakref.ref) -> None:
            entry = me()
            if entry is not None:
                entry.owners.pop(id(owner), None)
                if not entry.owners:
                    forget(key, entry)

        owner = weakref.ref(obj, dead)  # not hashable: arrays are not
        self.owners[id(owner)] = owner


def parse_nbytes(value: Any, name: str = "cache_nbytes") -> int:
    """``'1G'``, ``'500M'`` or a number of bytes (the one parser; errors name ``name``)."""
    return parse_size(value, name)


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


def prepare(
    calls: list,
    shared: SharedArgs,
    max_nbytes: int,
    call_refs: dict,
    reuse_nbytes: int | None = None,
) -> tuple:
    """``calls`` with large arguments replaced by :class:`Slot`, and the references."""
    refs: list = []
    slots: dict[int, Slot] = {}

    def swap(value: Any) -> Any:
        ref = shared.reference(value, max_nbytes, call_refs, reuse_nbytes)
        if ref is None:
            return value
        slot = slots.get(id(ref))
        if slot is None:
            slot = slots[id(ref)] = Slot(len(refs))
            refs.append(ref)
        return slot

    out = []
    for func, args, kwargs in calls:
        out.append((func, [swap(a) for a in args], {k: swap(v) for k, v in kwargs.items()}))
    return out, refs
