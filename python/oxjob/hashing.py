"""``hash``: a fast, deterministic hash of any picklable Python object.

The object is pickled into a canonical stream (dict and set order normalised,
no memo so shared references do not matter) and the stream is hashed. numpy
arrays never enter the stream: their bytes are hashed in Rust, without copies
and without the GIL, and only a digest token (dtype, shape, order, digest) is
pickled in their place.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import types
from typing import Any

from . import _engine

__all__ = ["hash"]

_HASH_NAMES = ("xxh3", "md5", "sha1")
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None), type(Ellipsis)})
_TOTALLY_ORDERED = frozenset({int, float, str, bytes})
# Bytes of a non-contiguous array hashed per step: bounds the temporary copy.
_STRIDED_STEP = 1 << 22


def _new_hasher(hash_name: str) -> Any:
    if hash_name == "xxh3":
        return _engine.StreamHasher()
    return hashlib.new(hash_name)


class _SortedSet(tuple):
    """Stands for a set or frozenset in the canonical stream (elements sorted)."""

    __slots__ = ()

    def __reduce__(self) -> Any:
        return (type(self), (tuple(self),))


class _FrozenSortedSet(_SortedSet):
    __slots__ = ()


def _array_token(*fields: Any) -> None:
    """Named in the stream in place of a hashed numpy array; never called."""


class _Canonicaliser:
    """Rewrites containers so that equal objects give equal pickle streams."""

    def __init__(self, hash_name: str) -> None:
        self.hash_name = hash_name
        self.active: set[int] = set()
        self.cyclic = False

    def sort_key_fallback(self, item: Any) -> bytes:
        return _digest(item, self.hash_name)

    def ordered(self, items: list) -> list:
        # Natural order only where it is total; otherwise (NaN, Decimal('NaN'), which
        # raises, frozensets ordered by inclusion, mixed types) equal sets could come
        # out in different orders, so elements are ordered by their own digest.
        kinds = {type(item) for item in items}
        if len(kinds) == 1 and kinds <= _TOTALLY_ORDERED:
            if float not in kinds or all(item == item for item in items):
                return sorted(items)
        return sorted(items, key=self.sort_key_fallback)

    def __call__(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in _ATOMS:
            return obj
        if kind not in (dict, list, tuple, set, frozenset):
            return obj
        key = id(obj)
        if key in self.active:
            self.cyclic = True
            return obj
        self.active.add(key)
        try:
            if kind is dict:
                keys = self.ordered(list(obj))
                return {k: self(obj[k]) for k in keys}
            if kind is list:
                return [self(item) for item in obj]
            if kind is tuple:
                return tuple(self(item) for item in obj)
            ordered = self.ordered([self(item) for item in obj])
            return (_SortedSet if kind is set else _FrozenSortedSet)(ordered)
        finally:
            self.active.discard(key)


def _importable(func: Any) -> bool:
    module = sys.modules.get(getattr(func, "__module__", None) or "")
    target: Any = module
    for part in getattr(func, "__qualname__", "").split("."):
        target = getattr(target, part, None)
    return target is func


class _HashPickler(pickle.Pickler):
    def __init__(self, file: Any, hash_name: str, coerce_mmap: bool) -> None:
        super().__init__(file, protocol=4)
        self.fast = True  # no memo: identity of shared sub-objects must not matter
        self.hash_name = hash_name
        self.coerce_mmap = coerce_mmap
        self.canonical = _Canonicaliser(hash_name)

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, (type, types.FunctionType)):
            if _importable(obj):
                return NotImplemented
            # As joblib: what pickle cannot name is refused. Hashing a local function by
            # its code would give closures over different values one hash, and a cached
            # call could then return another closure's result.
            raise pickle.PicklingError(
                f"Can't pickle {obj!r}: it's not found as "
                f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', None)}"
            )
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            return self.reduce_array(np, obj)
        if isinstance(obj, (types.BuiltinFunctionType, types.ModuleType)):
            return NotImplemented
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception:  # noqa: BLE001 - a user's __reduce_ex__ can raise anything
            return NotImplemented
        if isinstance(reduced, str) or not isinstance(reduced, tuple):
            return NotImplemented
        # Canonicalise the state (usually the instance __dict__) and arguments.
        canonical = self.canonical
        return tuple(canonical(part) if i in (1, 2) else part for i, part in enumerate(reduced))

    def reduce_array(self, np: Any, array: Any) -> Any:
        kind = type(array)
        if kind is np.memmap and self.coerce_mmap:
            kind = np.ndarray
        class_name = f"{kind.__module__}.{kind.__qualname__}"
        descr = array.dtype.descr if array.dtype.fields else array.dtype.str
        if array.dtype.hasobject:
            items = [self.canonical(item) for item in array.ravel(order="C").tolist()]
            return _array_token, (class_name, descr, array.shape, "O", items)
        hasher = _new_hasher(self.hash_name)
        order: str | tuple[str, Any]
        if array.flags.c_contiguous or array.flags.f_contiguous:
            order = "C" if array.flags.c_contiguous else "F"
            if array.size:
                hasher.update(array.ravel(order="K").view(np.uint8))
        else:
            # joblib's rule: a non-contiguous view does not hash like its copies, so
            # its strides are part of the hash; the data is read in C order.
            order = ("strided", array.strides)
            rows = max(1, _STRIDED_STEP // max(1, array.itemsize))
            flat = array.reshape(-1) if array.ndim == 1 else None
            if flat is not None:
                for start in range(0, flat.shape[0], rows):
                    hasher.update(np.ascontiguousarray(flat[start : start + rows]).view(np.uint8))
            else:
                for block in _c_order_blocks(np, array, rows):
                    hasher.update(block.view(np.uint8))
        return _array_token, (class_name, descr, array.shape, order, hasher.digest())


def _c_order_blocks(np: Any, array: Any, max_items: int) -> Any:
    """Yield contiguous copies of consecutive slices of ``array`` in C order."""
    if array.ndim == 0 or array.size == 0:
        return
    per_row = array[0].size if array.ndim > 1 else 1
    if per_row <= max_items:
        step = max(1, max_items // max(1, per_row))
        for start in range(0, array.shape[0], step):
            yield np.ascontiguousarray(array[start : start + step]).reshape(-1)
    else:
        for row in array:
            yield from _c_order_blocks(np, row, max_items)


def _stream(obj: Any, hash_name: str, coerce_mmap: bool) -> bytes:
    buffer = io.BytesIO()
    pickler = _HashPickler(buffer, hash_name, coerce_mmap)
    canonical = pickler.canonical(obj)
    if pickler.canonical.cyclic:
        pickler.fast = False  # cycles need the memo to terminate
    try:
        pickler.dump(canonical)
    except (RecursionError, ValueError) as exc:
        # A cycle through instance state (an object holding a bound method of itself,
        # a node pointing at its parent) is only seen while pickling: fast mode refuses
        # it or the recursion runs out. Pickled again with the memo, it terminates.
        if not pickler.fast or not (isinstance(exc, RecursionError) or "cyclic" in str(exc)):
            raise
        buffer = io.BytesIO()
        pickler = _HashPickler(buffer, hash_name, coerce_mmap)
        pickler.fast = False
        pickler.dump(pickler.canonical(obj))
    return buffer.getvalue()


def _digest(obj: Any, hash_name: str, coerce_mmap: bool = False) -> bytes:
    hasher = _new_hasher(hash_name)
    hasher.update(_stream(obj, hash_name, coerce_mmap))
    return hasher.digest()


def hash(obj: Any, hash_name: str = "xxh3", coerce_mmap: bool = False) -> str:
    """Return a hex digest of ``obj`` that is stable across processes and runs.

    Same signature as :func:`joblib.hash`, with the faster ``'xxh3'`` (128-bit
    XXH3) as default. Equal dicts and sets hash equally whatever their order;
    numpy arrays hash by class, dtype, shape, memory order and data, with the data
    read in Rust without copies (non-contiguous arrays are read in C order, in
    bounded steps, and their strides are hashed too, as joblib does).

    The values differ from joblib's, so cache keys are not shared with joblib.

    Parameters
    ----------
    obj : any picklable object
        The object to hash.
    hash_name : {'xxh3', 'md5', 'sha1'}, default='xxh3'
        The algorithm; ``'md5'`` and ``'sha1'`` are accepted for compatibility
        and are much slower.
    coerce_mmap : bool, default=False
        Hash :class:`numpy.memmap` instances like plain arrays.

    Returns
    -------
    str
        The hex digest (32 characters for xxh3 and md5, 40 for sha1).

    Raises
    ------
    ValueError
        If ``hash_name`` is not one of the accepted names.
    pickle.PicklingError
        If ``obj`` holds a function or class that pickle cannot refer to by name
        (a lambda, a local function or class), as joblib does.

    Examples
    --------
    >>> import oxjob
    >>> oxjob.hash({"a": 1, "b": [1, 2]}) == oxjob.hash({"b": [1, 2], "a": 1})
    True
    """
    if hash_name not in _HASH_NAMES:
        raise ValueError(
            f"Valid options for 'hash_name' are {_HASH_NAMES}. Got hash_name={hash_name!r} instead."
        )
    try:
        stream = _stream(obj, hash_name, coerce_mmap)
    except pickle.PicklingError as exc:
        raise pickle.PicklingError(f"PicklingError while hashing {obj!r}: {exc}") from exc
    hasher = _new_hasher(hash_name)
    hasher.update(stream)
    return hasher.hexdigest()
