"""Writing files in joblib's format, that ``joblib.load`` reads, without importing joblib.

This is ``dump(..., format="joblib")``: for rollback and for deployments where
joblib and oxjob read the same files. The layout is joblib's (see
``joblib_read``): each array as a ``joblib.numpy_pickle.NumpyArrayWrapper``
record followed by its bytes, 16-byte aligned when the file can tell its position.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
from typing import Any

_ALIGN = 16


class _Record:
    """Pickled as a ``joblib.numpy_pickle.NumpyArrayWrapper`` with joblib's attributes."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __reduce_ex__(self, protocol: Any) -> Any:
        # (typeshed omits copyreg.__newobj__, which pickle itself writes as NEWOBJ.)
        return copyreg.__newobj__, (_Record,), self.state  # type: ignore[attr-defined]


def _position(fileobj: Any) -> int | None:
    try:
        return fileobj.tell()
    except (io.UnsupportedOperation, OSError, AttributeError):
        return None


#: The pure-Python pickler. Its internals that joblib's layout is written with (save,
#: save_global, write, memoize, proto, framer) are not in typeshed's ``_Pickler``.
_PurePickler: Any = pickle._Pickler


class JoblibPickler(_PurePickler):
    """joblib's ``NumpyPickler`` layout, written by the pure-Python pickler as joblib does."""

    def __init__(self, fileobj: Any, protocol: int | None, compressed: bool) -> None:
        protocol = pickle.DEFAULT_PROTOCOL if protocol is None else protocol
        super().__init__(fileobj, protocol=protocol)
        self.file_handle = fileobj
        self.compressed = compressed

    def save_global(self, obj: Any, name: Any = None) -> None:
        if obj is not _Record:
            super().save_global(obj, name)
            return
        module, name = "joblib.numpy_pickle", "NumpyArrayWrapper"
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)

    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        np = sys.modules.get("numpy")
        if np is None or type(obj) not in (np.ndarray, np.matrix, np.memmap):
            super().save(obj, save_persistent_id)
            return
        subclass = np.ndarray if type(obj) is np.memmap else type(obj)
        array = np.asarray(obj)
        order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        position = _position(self.file_handle)
        record = _Record(
            {
                "subclass": subclass,
                "shape": array.shape,
                "order": order,
                "dtype": array.dtype,
                "allow_mmap": not self.compressed and not array.dtype.hasobject,
                "numpy_array_alignment_bytes": None if position is None else _ALIGN,
            }
        )
        super().save(record)
        if self.proto >= 4:
            # The record must be in the file before the array's bytes (pickle framing).
            self.framer.commit_frame(force=True)
        if array.dtype.hasobject:
            pickle.dump(array, self.file_handle, protocol=5)
            return
        if position is not None:
            padding = _ALIGN - (self.file_handle.tell() + 1) % _ALIGN
            self.file_handle.write(bytes([padding]) + b"\xff" * padding)
        if array.size:
            self.file_handle.write(array.ravel(order=order).view(np.uint8).data)


def dump_joblib(value: Any, fileobj: Any, protocol: int | None, compressed: bool) -> None:
    """Write ``value`` to ``fileobj`` as ``joblib.dump`` does."""
    JoblibPickler(fileobj, protocol, compressed).dump(value)
