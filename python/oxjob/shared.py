"""``oxjob.shared``: numpy arrays in shared memory that workers read and write in place.

An array made here lives in an anonymous shared-memory segment (a memfd). Passing
it, or any slice or view of it, to ``Parallel`` tasks sends a handle (the segment's
descriptor, offset, shape and strides), never a copy, whatever ``mmap_mode`` says,
and the workers map the same pages: what they write, the caller sees. This is
joblib's "np.memmap in w+ mode" pattern, without files to clean up. As with threads,
concurrent writes to overlapping parts are the caller's to avoid.

Examples
--------
>>> import numpy as np
>>> from oxjob import Parallel, delayed, shared
>>> out = shared.zeros(8)
>>> def fill(out, i):
...     out[i] = i * i
>>> _ = Parallel(n_jobs=2)(delayed(fill)(out, i) for i in range(8))
>>> out
array([ 0.,  1.,  4.,  9., 16., 25., 36., 49.])
"""

from __future__ import annotations

import math
import sys
from typing import Any, Literal, cast

from ._engine import Segment
from ._workers.protocol import segment_of

__all__ = ["as_shared", "empty", "empty_like", "full", "is_shared", "zeros", "zeros_like"]

#: Memory layouts, as numpy.empty takes them (and ``empty_like``, which also keeps the
#: prototype's: ``'A'``, ``'K'``).
_Order = Literal["C", "F"]
_LikeOrder = Literal["C", "F", "A", "K"]


def _plain_order(order: Any) -> _Order:
    """``'C'`` or ``'F'``, from what ``numpy.empty`` would take (``'c'``, ``None``...)."""
    import numpy as np

    np.empty(0, order=order)  # numpy's own error for an order it refuses ('A', 'K'...)
    return "F" if isinstance(order, str) and order.upper() == "F" else "C"


def _shape(shape: Any) -> tuple:
    return (int(shape),) if isinstance(shape, int) else tuple(int(n) for n in shape)


def empty(shape: Any, dtype: Any = float, order: _Order = "C") -> Any:
    """A new shared array of zeros (shared memory always starts zeroed).

    Parameters
    ----------
    shape : int or tuple of int
    dtype : data-type, default=float
    order : {'C', 'F'}, default='C'
        Row-major (C) or column-major (Fortran) layout; any other value raises
        numpy's own ``ValueError``.

    Returns
    -------
    numpy.ndarray
        An array whose memory is a shared segment.
    """
    import numpy as np

    layout = _plain_order(order)
    dtype = np.dtype(dtype)
    if dtype.hasobject:
        raise ValueError("shared arrays cannot hold Python objects (dtype=object)")
    shape = _shape(shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"negative dimensions are not allowed: shape={shape}")
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no silent overflow
    if nbytes > sys.maxsize:
        raise ValueError(
            f"array is too big: shape={shape} of {dtype} needs {nbytes} bytes, more than "
            "the maximum possible size"
        )
    try:
        segment = Segment.create(nbytes)
    except (OSError, OverflowError) as exc:
        raise MemoryError(
            f"Unable to allocate a shared array of shape={shape} and {dtype} "
            f"({nbytes} bytes): {exc}"
        ) from exc
    # numpy's stub lists concrete buffer classes; a Segment exports the buffer protocol and
    # stays the array's base (segment_of finds it there), so it is passed as it is.
    buffer = cast(Any, segment)  # older numpy stubs accept no plain buffer-protocol object
    return np.ndarray(shape, dtype=dtype, buffer=buffer, order=layout)


def zeros(shape: Any, dtype: Any = float, order: _Order = "C") -> Any:
    """A new shared array filled with zeros; see :func:`empty`."""
    return empty(shape, dtype, order)


def full(shape: Any, fill_value: Any, dtype: Any = None, order: _Order = "C") -> Any:
    """A new shared array filled with ``fill_value``."""
    import numpy as np

    if dtype is None:
        dtype = np.array(fill_value).dtype
    out = empty(shape, dtype, order)
    out.fill(fill_value)
    return out


def empty_like(
    prototype: Any, dtype: Any = None, order: _LikeOrder | None = "K", shape: Any = None
) -> Any:
    """A new shared array with the shape and dtype of ``prototype``.

    Parameters
    ----------
    prototype : array_like
    dtype : data-type, optional
        Overrides the prototype's.
    order : {'K', 'A', 'C', 'F'}, default='K'
        As :func:`numpy.empty_like`: ``'K'`` lays the new array out as ``prototype``
        is (its axes in the same order in memory), ``'A'`` is ``'F'`` for a
        Fortran-contiguous prototype and ``'C'`` otherwise.
    shape : int or tuple of int, optional
        Overrides the prototype's; with another number of dimensions, ``'K'`` is ``'C'``.

    Returns
    -------
    numpy.ndarray
        An array whose memory is a shared segment (a transposed view of one for a
        prototype laid out neither as C nor as Fortran).
    """
    import numpy as np

    np.empty_like(np.empty(0), order=order)  # numpy's own error for an order it refuses
    prototype = np.asanyarray(prototype)  # as numpy's, any array-like
    kind = "K" if order is None else str(order).upper()
    dtype = prototype.dtype if dtype is None else dtype
    new_shape = prototype.shape if shape is None else _shape(shape)
    if kind == "A":
        kind = "F" if prototype.flags.f_contiguous and not prototype.flags.c_contiguous else "C"
    elif kind == "K":
        if len(new_shape) != prototype.ndim or prototype.flags.c_contiguous:
            kind = "C"
        elif prototype.flags.f_contiguous:
            kind = "F"
        else:
            # numpy's order: axes by decreasing absolute stride, ties as they come
            # (sorted() is stable), each new stride positive.
            axes = sorted(range(prototype.ndim), key=lambda axis: -abs(prototype.strides[axis]))
            out = empty([new_shape[axis] for axis in axes], dtype)
            return out.transpose(np.argsort(axes))
    return empty(new_shape, dtype, cast(_Order, kind))


def zeros_like(
    prototype: Any, dtype: Any = None, order: _LikeOrder | None = "K", shape: Any = None
) -> Any:
    """A new shared array of zeros with the shape and dtype of ``prototype``; see
    :func:`empty_like`."""
    return empty_like(prototype, dtype, order, shape)


def as_shared(array: Any) -> Any:
    """``array`` itself if it is already shared, else a shared copy of it."""
    import numpy as np

    array = np.asanyarray(array)
    if is_shared(array):
        return array
    out = empty(array.shape, array.dtype, "F" if array.flags.f_contiguous else "C")
    np.copyto(out, array)
    return out


def is_shared(array: Any) -> bool:
    """Whether ``array``'s memory is a shared segment (made by this module)."""
    return getattr(array, "base", None) is not None and segment_of(array) is not None
