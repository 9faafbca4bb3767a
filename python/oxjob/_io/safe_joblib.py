"""joblib's array records in a safe load: read as data, never as objects the file shapes.

A joblib file names ``joblib.numpy_pickle.NumpyArrayWrapper`` (or, before joblib
0.10, ``NDArrayWrapper``/``ZNDArrayWrapper``) and gives it a state dict; the
array's bytes follow in the file. Here the state dict is only *read*: its known
keys are checked (shape, dtype made by the dtype rule, order, the array subclass
among ndarray/memmap/matrix) and anything else is refused, so a file cannot set
``read`` or any other attribute of the reader.
"""

from __future__ import annotations

import os
import types
from typing import Any

from ..exceptions import CorruptFileError
from .joblib_read import NDArrayWrapper, NumpyArrayWrapper, ZNDArrayWrapper
from .safe import refuse
from .safe_numpy import _reconstruct, array_state, check_dtype, check_shape, reconstruct_func
from .safe_rules import LoadState

_KEYS: dict[type, set[str]] = {
    NumpyArrayWrapper: {
        "subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes",
    },
    NDArrayWrapper: {"filename", "subclass", "allow_mmap"},
    ZNDArrayWrapper: {"filename", "state", "init_args"},
}  # fmt: skip


class Record:
    """A joblib array record waiting for its state dict."""

    __slots__ = ("kind",)

    def __init__(self, kind: type) -> None:
        self.kind = kind


class JoblibContext:
    """Where a joblib stream's records read from (set by the caller of the loader)."""

    def __init__(self, filename: str | None, mmap: Any = None, mmap_mode: Any = None) -> None:
        self.joblib = True
        self.filename = filename
        self.dirname = os.path.dirname(filename) if filename else ""
        self.mmap, self.mmap_mode = mmap, mmap_mode
        self.native = True
        self.records = 0
        self.aligned = False
        self.compat = False


def joblib_new(state: LoadState, cls: Any, args: tuple, kwargs: dict) -> Any:
    if args or kwargs:
        raise CorruptFileError(f"{state.u.what}: invalid joblib array record")
    return state.add_fresh(Record(cls), _record_build)


def _subclass(state: LoadState, value: Any) -> Any:
    np = __import__("numpy")
    if any(value is c for c in (np.ndarray, np.memmap, np.matrix)):
        return value
    raise refuse(f"{state.u.what}: refusing a joblib array of subclass {value!r}")


def _record_build(state: LoadState, record: Record, st: Any) -> Any:
    u = state.u
    if type(st) is not dict or not all(type(k) is str for k in st):
        raise CorruptFileError(f"{u.what}: invalid joblib array record state")
    unknown = set(st) - _KEYS[record.kind]
    if unknown:
        raise refuse(f"{u.what}: refusing joblib array record keys {sorted(unknown)}")
    if record.kind is NumpyArrayWrapper:
        return _numpy_record(state, st)
    u.context.compat = True
    if record.kind is NDArrayWrapper:
        return _npy_record(state, st)
    return _zfile_record(state, st)


def _numpy_record(state: LoadState, st: dict) -> Any:
    u, ctx = state.u, state.u.context
    wrapper = NumpyArrayWrapper.__new__(NumpyArrayWrapper)
    shape, count = check_shape(state, st.get("shape"))
    dtype = check_dtype(state, st.get("dtype"))
    order = st.get("order")
    align = st.get("numpy_array_alignment_bytes", None)
    if order not in ("C", "F") or type(st.get("allow_mmap", False)) is not bool:
        raise CorruptFileError(f"{u.what}: invalid joblib array record")
    if align is not None and type(align) is not int:
        raise CorruptFileError(f"{u.what}: invalid joblib array record")
    wrapper.shape, wrapper.dtype, wrapper.order = shape, dtype, order
    wrapper.subclass = _subclass(state, st.get("subclass", __import__("numpy").ndarray))
    wrapper.allow_mmap = st.get("allow_mmap", False)
    if "numpy_array_alignment_bytes" in st:
        wrapper.numpy_array_alignment_bytes = align
    ctx.records += 1
    ctx.aligned = ctx.aligned or bool(align)
    if dtype.hasobject:
        array = _nested(state).load()
        np = __import__("numpy")
        if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype:
            raise CorruptFileError(f"{u.what}: joblib object array does not match its record")
        return array
    if u.record:
        return _skip(state, "numpy_array_alignment_bytes" in st, count * dtype.itemsize)
    if not (ctx.mmap is not None and wrapper.allow_mmap):
        u.charge(count * dtype.itemsize, "array data")
    reader = types.SimpleNamespace(
        file_handle=u.file, what=u.what, mmap=ctx.mmap, mmap_mode=ctx.mmap_mode,
        filename=ctx.filename, native=ctx.native, policy=u.policy, nested=None,
    )  # fmt: skip
    return wrapper.read(reader)


def _nested(state: LoadState) -> Any:
    from .safe_unpickle import SafeUnpickler

    u = state.u
    inner = SafeUnpickler(
        u.file, u.policy, what=u.what, max_bytes=u.max_bytes, record=u.record, context=u.context
    )
    inner.used, inner.seen = u.used, u.seen
    return inner


def _skip(state: LoadState, padded: bool, nbytes: int) -> Any:
    u = state.u
    if padded:
        pad = u.file.read(1)
        if len(pad) != 1:
            raise CorruptFileError(f"{u.what}: truncated before array data")
        nbytes += pad[0]
    while nbytes:
        got = len(u.file.read(min(nbytes, 1 << 20)))
        if not got:
            raise CorruptFileError(f"{u.what}: the file is truncated in array data")
        nbytes -= got
    return None


def _beside(state: LoadState, name: Any) -> str:
    if type(name) is not str:
        raise CorruptFileError(f"{state.u.what}: invalid joblib < 0.10 record")
    # Only a file beside the pickle, never a path the file chooses.
    return os.path.join(state.u.context.dirname, os.path.basename(name))


def _npy_record(state: LoadState, st: dict) -> Any:
    np = __import__("numpy")
    u, ctx = state.u, state.u.context
    path = _beside(state, st.get("filename"))
    _subclass(state, st.get("subclass", np.ndarray))
    if u.record:
        return None
    with open(path, "rb") as f:
        fmt = np.lib.format
        version = fmt.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise CorruptFileError(f"{u.what}: {path}: unsupported .npy version {version}")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise refuse(
                f"{u.what}: refusing {path}: an object array in a .npy file is a plain "
                "pickle, which a safe load never runs (load with trusted=None if you trust it)"
            )
        check_dtype(state, dtype, objects=False)
        _, count = check_shape(state, shape)
        if os.fstat(f.fileno()).st_size - f.tell() < count * dtype.itemsize:
            raise CorruptFileError(f"{u.what}: {path} is shorter than its header says")
    mmap_mode = ctx.mmap_mode if st.get("allow_mmap", True) else None
    if mmap_mode is None:
        u.charge(count * dtype.itemsize, "array data")
    array = np.load(path, allow_pickle=False, mmap_mode=mmap_mode)
    from .joblib_read import native

    return native(array) if mmap_mode is None else array


def _zfile_record(state: LoadState, st: dict) -> Any:
    from .joblib_read import read_zfile

    u = state.u
    init = st.get("init_args")
    if type(init) is not tuple:
        raise CorruptFileError(f"{u.what}: invalid joblib < 0.10 record")
    path = _beside(state, st.get("filename"))
    inner = st.get("state")
    if u.record:
        return None
    array = _reconstruct(state, reconstruct_func(), init)
    state.fresh.pop(id(array), None)
    if type(inner) is not tuple:
        raise CorruptFileError(f"{u.what}: invalid joblib < 0.10 record")
    with open(path, "rb") as f:
        data = read_zfile(f, limit=u.max_bytes - u.used)
    __import__("numpy").ndarray.__setstate__(array, array_state(state, (*inner, data)))
    return array
