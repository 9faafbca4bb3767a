"""Reviewed default rules for numpy: dtypes, arrays, scalars, masked arrays, oxjob's records.

numpy's own ``__setstate__`` methods trust their input: a dtype's takes its flags
from the file (flags 0 on a dtype with an object field turns file bytes into object
pointers), and its field offsets are not checked against the item size. So a dtype
is never given the file's state: it is *made* here from a validated description
(no object fields, every field inside the item, flags computed by numpy). Arrays
get a state whose shape, dtype and byte count are checked before numpy sees it.
"""

from __future__ import annotations

import pickle
import re
from typing import Any

from ..exceptions import CorruptFileError, LoadLimitError
from .safe import refuse
from .safe_rules import LoadState, Pending, Rule

_TYPESTR = re.compile(r"[?bBhHiIlLqQpPefdgFDGSUVOMmc]\d{0,10}|[biufcSUVOMm]\d{1,10}")
_BUFFERS = (bytes, bytearray, memoryview, pickle.PickleBuffer)
_MAX_DIMS = 64
_DATETIME_UNITS = {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "μs", "ns", "ps", "fs", "as"}


def _np() -> Any:
    import numpy

    return numpy


def _corrupt(state: LoadState, what: str) -> CorruptFileError:
    return CorruptFileError(f"{state.u.what}: invalid {what} in the pickle stream")


def check_dtype(state: LoadState, dtype: Any, objects: bool = True) -> Any:
    """``dtype`` if it is a dtype the loader made (object fields never get that far)."""
    if not isinstance(dtype, _np().dtype):
        raise _corrupt(state, f"dtype (got a {type(dtype).__name__})")
    if dtype.hasobject and (not objects or dtype != _np().dtype("O")):
        raise refuse(f"{state.u.what}: refusing a dtype with object fields ({dtype})")
    return dtype


def check_shape(state: LoadState, shape: Any) -> tuple[tuple, int]:
    """A shape of non-negative ints and its element count, bounded by ``max_bytes``."""
    if type(shape) is list:
        shape = tuple(shape)
    if type(shape) is not tuple or len(shape) > _MAX_DIMS:
        raise _corrupt(state, "array shape")
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0:
            raise _corrupt(state, "array shape")
        count *= dim
        if count > state.u.max_bytes:
            raise LoadLimitError(
                f"{state.u.what}: an array of shape {shape} is over max_bytes="
                f"{state.u.max_bytes}; pass a larger max_bytes= to load() if you expect it"
            )
    return shape, count


def _nbytes(view: Any) -> int:
    with memoryview(view) as m:
        return m.nbytes


# -- dtypes ------------------------------------------------------------------------
def _dtype_call(state: LoadState, func: Any, args: tuple) -> Any:
    if not 1 <= len(args) <= 3 or type(args[0]) is not str or not _TYPESTR.fullmatch(args[0]):
        raise _corrupt(state, f"dtype description {args[:1]!r}")
    if any(type(a) not in (bool, int) for a in args[1:]):
        raise _corrupt(state, "dtype arguments")
    base = _np().dtype(args[0])
    pending = Pending(base)
    return state.add_fresh(pending, _dtype_build)


def _dtype_build(state: LoadState, pending: Pending, st: Any) -> Any:
    np = _np()
    base = pending.args
    if type(st) is not tuple or len(st) not in (8, 9):
        raise _corrupt(state, "dtype state")
    endian, subarray, names, fields, elsize = st[1:6]
    if endian not in ("<", ">", "|", "=") or type(elsize) is not int:
        raise _corrupt(state, "dtype state")
    kind = base.kind
    if names is not None:
        dtype = _structured(state, names, fields, elsize, kind)
    elif subarray is not None:
        if type(subarray) is not tuple or len(subarray) != 2:
            raise _corrupt(state, "dtype subarray")
        inner = check_dtype(state, subarray[0], objects=False)
        shape, count = check_shape(state, subarray[1])
        if count * inner.itemsize != elsize:
            raise _corrupt(state, "dtype subarray size")
        dtype = np.dtype((inner, shape))
    elif kind in "SV" and elsize >= 0:
        dtype = np.dtype(f"{kind}{elsize}")
    elif kind == "U" and elsize >= 0 and elsize % 4 == 0:
        dtype = np.dtype(f"U{elsize // 4}")
    elif kind in "Mm":
        dtype = np.dtype(_datetime_str(state, kind, st))
    elif elsize in (-1, base.itemsize):
        dtype = base
    else:
        raise _corrupt(state, f"dtype item size {elsize} for {base}")
    if endian in "<>" and dtype.byteorder != "|" and names is None:
        dtype = dtype.newbyteorder(endian)
    return state.settle(pending, dtype)


def _structured(state: LoadState, names: Any, fields: Any, elsize: int, kind: str) -> Any:
    if kind != "V" or type(names) is not tuple or type(fields) is not dict or elsize < 0:
        raise _corrupt(state, "structured dtype")
    formats, offsets, titles = [], [], []
    for name in names:
        entry = fields.get(name) if type(name) is str else None
        if type(entry) is not tuple or len(entry) not in (2, 3):
            raise _corrupt(state, "structured dtype field")
        field, offset = check_dtype(state, entry[0], objects=False), entry[1]
        if type(offset) is not int or offset < 0 or offset + field.itemsize > elsize:
            raise refuse(
                f"{state.u.what}: refusing a dtype whose field {name!r} lies outside its "
                f"{elsize}-byte item"
            )
        title = entry[2] if len(entry) == 3 else None
        if title is not None and type(title) is not str:
            raise _corrupt(state, "structured dtype title")
        formats.append(field)
        offsets.append(offset)
        titles.append(title)
    spec: dict[str, Any] = {"names": list(names), "formats": formats, "offsets": offsets}
    spec["itemsize"] = elsize
    if any(t is not None for t in titles):
        spec["titles"] = titles
    return _np().dtype(spec)


def _datetime_str(state: LoadState, kind: str, st: tuple) -> str:
    meta = st[8] if len(st) == 9 else None
    if meta is None:
        return f"{kind}8"
    if type(meta) is not tuple or len(meta) != 2 or type(meta[1]) is not tuple:
        raise _corrupt(state, "datetime dtype metadata")
    unit, num = meta[1][0], meta[1][1]
    unit = unit.decode("ascii", "replace") if type(unit) is bytes else unit
    if unit == "generic":
        return f"{kind}8"
    if unit not in _DATETIME_UNITS or type(num) is not int or not 0 < num < 1 << 31:
        raise _corrupt(state, "datetime dtype unit")
    return f"{kind}8[{num}{unit}]"


# -- arrays ----------------------------------------------------------------------------
def reconstruct_func() -> Any:
    np = _np()
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


def _reconstruct(state: LoadState, func: Any, args: tuple) -> Any:
    np = _np()
    if len(args) != 3 or not any(args[0] is c for c in (np.ndarray, np.matrix)):
        raise refuse(f"{state.u.what}: refusing _reconstruct of anything but ndarray/matrix")
    if args[1] != (0,) or args[2] not in (b"b", "b"):
        raise _corrupt(state, "_reconstruct arguments")
    value = func(*args)
    return state.add_fresh(value, _array_build)


def array_state(state: LoadState, st: Any, extra: int = 0) -> tuple:
    """Validate ``(version, shape, dtype, fortran, data, ...)``; ``extra`` trailing items."""
    if type(st) is not tuple or len(st) not in (4 + extra, 5 + extra):
        raise _corrupt(state, "array state")
    if len(st) == 5 + extra:
        if st[0] != 1:
            raise _corrupt(state, "array state version")
        st = st[1:]
    shape, count = check_shape(state, st[0])
    dtype = check_dtype(state, st[1])
    fortran, data = st[2], st[3]
    if type(fortran) not in (bool, int):
        raise _corrupt(state, "array order flag")
    if dtype.hasobject:
        if type(data) is not list or len(data) != count:
            raise _corrupt(state, "object array data")
    else:
        if type(data) not in (bytes, bytearray) or len(data) != count * dtype.itemsize:
            raise _corrupt(state, f"array data ({count} items of {dtype})")
        state.u.charge(len(data), "array data")
    return (shape, dtype, bool(fortran), data, *st[4:])


def _array_build(state: LoadState, array: Any, st: Any) -> Any:
    _np().ndarray.__setstate__(array, array_state(state, st))
    return array


def _scalar(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) == 2:
        dtype = check_dtype(state, args[0])
        if dtype.hasobject:
            return args[1]  # numpy returns the object itself
        if type(args[1]) is bytes and len(args[1]) == dtype.itemsize:
            return func(dtype, args[1])
    elif len(args) == 1:
        dtype = check_dtype(state, args[0], objects=False)
        return func(dtype)
    raise _corrupt(state, "numpy scalar")


def _frombuffer(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) == 4 and type(args[0]) in _BUFFERS and args[3] in ("C", "F", "A", "K"):
        dtype = check_dtype(state, args[1], objects=False)
        shape, count = check_shape(state, args[2])
        if _nbytes(args[0]) == count * dtype.itemsize:
            return func(args[0], dtype, shape, args[3])
    raise _corrupt(state, "array buffer")


def _mareconstruct(state: LoadState, func: Any, args: tuple) -> Any:
    np = _np()
    if len(args) != 4 or args[0] is not np.ma.MaskedArray or args[1] is not np.ndarray:
        raise refuse(f"{state.u.what}: refusing _mareconstruct of anything but MaskedArray")
    if args[2] != (0,) or args[3] not in (b"b", "b"):
        raise _corrupt(state, "_mareconstruct arguments")
    return state.add_fresh(func(*args), _masked_build)


_FILL = (type(None), bool, int, float, complex, str, bytes)


def _masked_build(state: LoadState, array: Any, st: Any) -> Any:
    np = _np()
    shape, dtype, fortran, data, mask, fill = array_state(state, st, extra=2)
    _, count = check_shape(state, shape)
    if dtype.hasobject:
        raise refuse(f"{state.u.what}: refusing a masked array of objects")
    mask_dtype = np.ma.make_mask_descr(dtype)
    if type(mask) is not bytes or len(mask) != count * mask_dtype.itemsize:
        raise _corrupt(state, "masked array mask")
    zero_d = isinstance(fill, np.ndarray) and fill.ndim == 0 and not fill.dtype.hasobject
    if not (type(fill) in _FILL or isinstance(fill, np.generic) or zero_d):
        raise _corrupt(state, "masked array fill value")
    np.ma.MaskedArray.__setstate__(array, (1, shape, dtype, fortran, data, mask, fill))
    return array


# -- oxjob's own array records ----------------------------------------------------------------
def _buffer(state: LoadState, buffer: Any) -> Any:
    if type(buffer) in _BUFFERS or any(buffer is b for b in state.u.given_buffers):
        return buffer
    raise _corrupt(state, "array buffer")


def _record_args(state: LoadState, buffer: Any, offset: Any, dtype: Any, shape: Any, order: Any):
    dtype = check_dtype(state, dtype, objects=False)
    shape, count = check_shape(state, shape)
    if order not in ("C", "F") or type(offset) is not int or offset < 0:
        raise _corrupt(state, "array record")
    if buffer is not None and offset + count * dtype.itemsize > _nbytes(_buffer(state, buffer)):
        raise _corrupt(state, "array record: the data runs past its buffer")
    return dtype, shape


def _rebuild_array(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) not in (4, 5):
        raise _corrupt(state, "array record")
    buffer, dtype, shape, order = args[:4]
    offset = args[4] if len(args) == 5 else 0
    dtype, shape = _record_args(state, buffer, offset, dtype, shape, order)
    return func(buffer, dtype, shape, order, offset)


def _rebuild_small(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) != 5:
        raise _corrupt(state, "array record")
    buffer, offset, dtype, shape, order = args
    dtype, shape = _record_args(state, buffer, offset, dtype, shape, order)
    return func(buffer, offset, dtype, shape, order)


def _rebuild_indexed(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) != 5 or type(args[0]) is not int:
        raise _corrupt(state, "array record")
    index, offset, dtype, shape, order = args
    dtype, shape = _record_args(state, None, offset, dtype, shape, order)
    sections = state.u.given_buffers
    if not 0 <= index < len(sections):
        raise CorruptFileError(f"{state.u.what}: array section {index + 1} is missing")
    _record_args(state, sections[index], offset, dtype, shape, order)
    return func(index, offset, dtype, shape, order)


def _arena(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) != 1:
        raise _corrupt(state, "arena record")
    return _buffer(state, args[0])


def _numpy_refs() -> dict[str, Rule]:
    try:
        np = _np()
    except ImportError:
        return {}
    refs = {f"numpy.{n}": Rule() for n in dir(np) if _is_scalar_type(getattr(np, n, None))}
    for n in dir(getattr(np, "dtypes", None)):
        if n.endswith("DType"):
            refs[f"numpy.dtypes.{n}"] = Rule()
    for name in ("numpy.ndarray", "numpy.matrix", "numpy.memmap", "numpy.ma.MaskedArray"):
        refs[name] = Rule()
    for module in ("numpy.core", "numpy._core"):
        refs[f"{module}.memmap.memmap"] = Rule()
        refs[f"{module}.defmatrix.matrix"] = Rule()
    refs["numpy.ma.core.MaskedArray"] = Rule()
    refs["numpy.matrixlib.defmatrix.matrix"] = Rule()
    return refs


def _is_scalar_type(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, _np().generic)


def _numpy_rules() -> dict[str, Rule]:
    rules = _numpy_refs()
    if not rules:
        return rules
    rules["numpy.dtype"] = Rule(call=_dtype_call)
    for module in ("numpy.core", "numpy._core"):
        rules[f"{module}.multiarray._reconstruct"] = Rule(call=_reconstruct)
        rules[f"{module}.multiarray.scalar"] = Rule(call=_scalar)
        rules[f"{module}.numeric._frombuffer"] = Rule(call=_frombuffer)
    rules["numpy.ma.core._mareconstruct"] = Rule(call=_mareconstruct)
    return rules


RULES: dict[str, Rule] = {
    **_numpy_rules(),
    "oxjob._io.container.rebuild_array": Rule(call=_rebuild_array),
    "oxjob._io.container.rebuild_small": Rule(call=_rebuild_small),
    "oxjob._io.container.rebuild_indexed": Rule(call=_rebuild_indexed),
    "oxjob._io.container.arena": Rule(call=_arena),
}
