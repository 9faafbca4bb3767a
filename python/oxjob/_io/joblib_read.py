"""Reading joblib's file formats, without importing joblib.

Since joblib 0.10 a joblib file is one pickle stream in which every numpy array
is replaced by a ``joblib.numpy_pickle.NumpyArrayWrapper`` record, the array's
bytes following that record's ``BUILD`` opcode directly in the file (after a
padding byte and padding to 16 bytes since joblib 1.2; an object array is a
nested pickle stream instead). The pure-Python unpickler is needed because the
C one cannot hand over the file between two opcodes; joblib does the same.

Older joblib (< 0.10) wrote the pickle beside one ``.npy`` file per array
(``NDArrayWrapper``) or, compressed, a ``ZF`` file beside one per array
(``ZNDArrayWrapper``); both are read here too.
"""

from __future__ import annotations

import io
import os
import pickle
import warnings
import zlib
from typing import Any

from ..exceptions import CorruptFileError
from .old_paths import current

_DEFLATE_MAX_RATIO = 1032
_PY2_MESSAGE = (
    "You may be trying to read with python 3 a joblib pickle generated with python 2. "
    "This feature is not supported by joblib nor by oxjob."
)


def compat_warning(filename: str) -> None:
    warnings.warn(
        f"The file '{filename}' has been generated with a joblib version less than 0.10. "
        "Please regenerate this pickle file.",
        DeprecationWarning,
        stacklevel=4,
    )


def readinto_exact(fileobj: Any, view: memoryview, what: str = "array data") -> None:
    """Fill ``view`` from ``fileobj``; a short stream is an error, never a short array."""
    filled, size = 0, len(view)
    readinto = getattr(fileobj, "readinto", None)
    while filled < size:
        if readinto is not None:
            got = readinto(view[filled:])
        else:
            data = fileobj.read(size - filled)
            got = len(data)
            view[filled : filled + got] = data
        if not got:
            raise CorruptFileError(
                f"EOF: reading {what}, expected {size} bytes got {filled}: the file is truncated"
            )
        filled += got


def native(array: Any) -> Any:
    """``array`` in native byte order (a converted copy only when it is not)."""
    wanted = array.dtype.newbyteorder("=")
    return array if array.dtype == wanted else array.astype(wanted)


class NumpyArrayWrapper:
    """Stands for ``joblib.numpy_pickle.NumpyArrayWrapper``; its state comes from the file."""

    # Set from the file by BUILD (so: checked before use, never trusted by type); the
    # optional ones are read with getattr.
    shape: Any
    dtype: Any
    order: Any
    subclass: Any
    allow_mmap: Any
    numpy_array_alignment_bytes: Any

    def read(self, unpickler: Any) -> Any:
        """The array; ``unpickler`` is a :class:`JoblibUnpickler` or safe_joblib's
        stand-in with the same attributes."""
        import numpy as np

        shape, dtype, order = tuple(self.shape), self.dtype, self.order
        if not isinstance(dtype, np.dtype) or order not in ("C", "F"):
            raise CorruptFileError(f"{unpickler.what}: invalid joblib array record")
        if dtype.hasobject:
            inner = unpickler.nested(unpickler.file_handle)
            array = inner.load()
        else:
            # joblib <= 1.1 wrote no padding (and no attribute for it).
            unpickler._unaligned_record = getattr(self, "numpy_array_alignment_bytes", None) is None
            if not unpickler._unaligned_record:
                pad = unpickler.file_handle.read(1)
                if len(pad) != 1:
                    raise CorruptFileError(f"{unpickler.what}: truncated before array data")
                if pad[0]:
                    skipped = unpickler.file_handle.read(pad[0])
                    if len(skipped) != pad[0]:
                        raise CorruptFileError(f"{unpickler.what}: truncated in padding")
            if unpickler.mmap is not None and getattr(self, "allow_mmap", False):
                return self._mapped(unpickler, np, shape, dtype, order)
            array = np.empty(shape, dtype=dtype, order=order)
            if array.nbytes:
                flat = array.ravel(order="K").view(np.uint8)
                readinto_exact(unpickler.file_handle, flat.data)
        if unpickler.native and not dtype.hasobject:
            array = native(array)
        subclass = getattr(self, "subclass", np.ndarray)
        if subclass not in (np.ndarray, np.memmap) and isinstance(subclass, type):
            if issubclass(subclass, np.ndarray):
                array = array.view(subclass)
        return array

    @staticmethod
    def _mapped(unpickler: Any, np: Any, shape: tuple, dtype: Any, order: str) -> Any:
        handle = unpickler.file_handle
        offset = handle.tell()
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        mapping = unpickler.mmap
        if offset + nbytes > len(mapping):
            raise CorruptFileError(f"{unpickler.what}: array data runs past the end of the file")
        array = np.ndarray.__new__(
            np.memmap, shape, dtype=dtype, buffer=mapping, offset=offset, order=order
        )
        array._mmap, array.filename = mapping, unpickler.filename
        array.offset, array.mode = offset, unpickler.mmap_mode
        handle.seek(offset + nbytes)
        if getattr(unpickler, "_unaligned_record", False) and offset % 16:
            warnings.warn(
                f"The memmapped array {array} loaded from the file {unpickler.filename} is "
                "not byte aligned. This may cause segmentation faults if this memmapped "
                "array is used in some libraries like BLAS or PyTorch. To get rid of this "
                "warning, regenerate your pickle file with joblib >= 1.2.0 (or write it with "
                "oxjob). See https://github.com/joblib/joblib/issues/563 for more details",
                stacklevel=2,
            )
        return array


class NDArrayWrapper:
    """Stands for joblib < 0.10's record of an array stored in a ``.npy`` file beside."""

    filename: Any  # from the file, by BUILD

    def read(self, unpickler: JoblibUnpickler) -> Any:
        import numpy as np

        unpickler.compat_mode = True
        name = os.path.basename(str(self.filename))  # never outside the file's directory
        kwargs: dict[str, Any] = {
            "allow_pickle": True
        }  # plain loads only: safe ones read it in safe_joblib
        if getattr(self, "allow_mmap", True) and unpickler.mmap_mode is not None:
            kwargs["mmap_mode"] = unpickler.mmap_mode
        array = np.load(os.path.join(unpickler.dirname, name), **kwargs)
        return native(array) if kwargs.get("mmap_mode") is None else array


class ZNDArrayWrapper(NDArrayWrapper):
    """Stands for joblib < 0.10's record of an array stored in a zlib ``ZF`` file beside."""

    init_args: Any  # from the file, by BUILD
    state: Any

    def read(self, unpickler: JoblibUnpickler) -> Any:
        unpickler.compat_mode = True
        name = os.path.basename(str(self.filename))
        reconstruct = unpickler.find_class("numpy.core.multiarray", "_reconstruct")
        array = reconstruct(*self.init_args)
        with open(os.path.join(unpickler.dirname, name), "rb") as f:
            data = read_zfile(f)
        array.__setstate__((*self.state, data))
        return array


#: joblib's records by the (module, name) the pickle stream asks for.
_RECORDS = {
    ("joblib.numpy_pickle", "NumpyArrayWrapper"): NumpyArrayWrapper,
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"): NumpyArrayWrapper,
    ("joblib.numpy_pickle", "NDArrayWrapper"): NDArrayWrapper,
    ("joblib.numpy_pickle_compat", "NDArrayWrapper"): NDArrayWrapper,
    ("sklearn.externals.joblib.numpy_pickle", "NDArrayWrapper"): NDArrayWrapper,
    ("joblib.numpy_pickle", "ZNDArrayWrapper"): ZNDArrayWrapper,
    ("joblib.numpy_pickle_compat", "ZNDArrayWrapper"): ZNDArrayWrapper,
    ("sklearn.externals.joblib.numpy_pickle", "ZNDArrayWrapper"): ZNDArrayWrapper,
}


def joblib_record(module: str, name: str) -> Any:
    """Our stand-in for a joblib record class, or None."""
    return _RECORDS.get((module, name))


#: The pure-Python unpickler. Its internals that records are read with (dispatch,
#: load_build, stack) are not in typeshed's ``_Unpickler``.
_PureUnpickler: Any = pickle._Unpickler


class JoblibUnpickler(_PureUnpickler):
    """Unpickles a joblib stream, reading each array's bytes after its record."""

    dispatch = _PureUnpickler.dispatch.copy()

    def __init__(
        self,
        file_handle: Any,
        *,
        what: str,
        filename: str | None = None,
        mmap: Any = None,
        mmap_mode: str | None = None,
        native: bool = True,
    ) -> None:
        super().__init__(file_handle)
        self.file_handle = file_handle
        self.what = what
        self.filename = filename
        self.dirname = os.path.dirname(filename) if filename else ""
        self.mmap, self.mmap_mode = mmap, mmap_mode
        self.native = native
        self.compat_mode = False

    def nested(self, file_handle: Any) -> JoblibUnpickler:
        """An unpickler for a nested stream (object arrays), with the same rules."""
        return JoblibUnpickler(file_handle, what=self.what, native=self.native)

    def find_class(self, module: str, name: str) -> Any:
        record = joblib_record(module, name)
        if record is not None:
            return record
        return super().find_class(*current(module, name))

    def load(self) -> Any:
        try:
            return super().load()
        except KeyError as exc:
            # The pure-Python unpickler reports an unknown opcode as KeyError(opcode).
            tb = exc.__traceback__
            if tb is not None and tb.tb_next is not None and tb.tb_next.tb_next is None:
                key = exc.args[0] if exc.args else 0
                raise pickle.UnpicklingError(f"invalid load key, {bytes([key])!r}.") from None
            raise

    def load_build(self) -> None:
        super().load_build()
        top = self.stack[-1]
        if isinstance(top, (NumpyArrayWrapper, NDArrayWrapper)):
            self.stack[-1] = top.read(self)

    dispatch[pickle.BUILD[0]] = load_build


def unpickle_joblib(fileobj: Any, compat: bool = False, **options: Any) -> Any:
    """Load one joblib stream from ``fileobj`` (positioned at its start)."""
    if options.get("policy") is not None:
        from .load import safe_pickle

        what, native, policy = options.pop("what"), options.pop("native"), options.pop("policy")
        return safe_pickle(fileobj, what, native, policy, compat=compat, **options)
    options.pop("policy", None)
    unpickler = JoblibUnpickler(fileobj, **options)
    try:
        value = unpickler.load()
    except UnicodeDecodeError as exc:
        raise ValueError(_PY2_MESSAGE) from exc
    if unpickler.compat_mode or compat:
        compat_warning(options.get("filename") or options["what"])
    return value


def read_zfile(file_handle: Any, limit: int | None = None) -> bytes:
    """The content of a joblib < 0.10 ``ZF`` file: ``ZF``, a hex length, zlib data."""
    file_handle.seek(0)
    header_length = 2 + len(f"{2**64:#x}")
    length_field = file_handle.read(header_length)[2:]
    try:
        length = int(length_field, 16)
    except ValueError:
        raise CorruptFileError("invalid joblib < 0.10 compressed file header") from None
    if limit is not None and length > limit:
        from ..exceptions import LoadLimitError

        raise LoadLimitError(
            f"a joblib < 0.10 compressed file of {length} bytes is over what max_bytes leaves"
        )
    following = file_handle.read(1)
    if following != b" ":  # joblib <= 0.8.4 on Python 2 wrote one more space
        file_handle.seek(header_length)
    stored = file_handle.read()
    # The header's length sized the output buffer (joblib does so): it must be one
    # the stored bytes can produce, at deflate's largest ratio (1032: 258 bytes per
    # two bits), and no more than it is decoded.
    if length > len(stored) * _DEFLATE_MAX_RATIO:
        raise CorruptFileError(
            f"joblib < 0.10 compressed file: a length of {length} bytes cannot come "
            f"from {len(stored)} compressed bytes"
        )
    inflate = zlib.decompressobj(15)
    try:
        data = inflate.decompress(stored, length + 1)
    except zlib.error as exc:
        raise CorruptFileError(f"joblib < 0.10 compressed file: {exc}") from None
    if len(data) != length or not inflate.eof:
        raise CorruptFileError("joblib < 0.10 compressed file: wrong decompressed length")
    return data


def load_zfile(path: str, **options: Any) -> Any:
    """Load a joblib < 0.10 compressed file (the arrays in ``ZF`` files beside it)."""
    limit = None
    if options.get("policy") is not None:
        from .safe import budget

        limit = budget(options["policy"], os.path.getsize(path), "zlib")
    with open(path, "rb") as f:
        content = read_zfile(f, limit=limit)
    options["mmap"], options["mmap_mode"] = None, None
    return unpickle_joblib(io.BytesIO(content), compat=True, filename=path, **options)
