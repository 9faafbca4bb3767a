"""``python -m oxjob inspect FILE``: a file's format and the types it needs, run nothing.

The file is unpickled with :class:`~oxjob._safe.Recorder`, which rebuilds only the
safe globals (containers, numpy) and stands a stub in for every other one, so no
code chosen by the file runs, not even its imports.
"""

from __future__ import annotations

import os
from typing import Any

from . import _engine, _streams
from ._joblib_read import JoblibUnpickler, load_zfile
from ._load import _head_of, bad_pickle
from ._oxjob_format import MAGIC, LoadContext, read_container_stream, unpickle
from ._safe import Recorder


def describe(path: str) -> tuple[list[str], dict[str, bool]]:
    """Lines describing the file's format, and ``{global: safe}`` for what it needs."""
    recorder = Recorder()
    with open(path, "rb") as f:
        head = f.read(len(MAGIC))
    size = os.path.getsize(path)
    if head.startswith(MAGIC):
        stream, buffers, end = _engine.layout_file(path)
        lines = [f"{path}: oxjob container, {end} bytes, checksums of the structure OK"]
        lines.append(f"  pickle stream: {len(stream)} bytes")
        for i, (codec, offset, length) in enumerate(buffers):
            lines.append(f"  buffer {i}: {length} bytes, codec {codec}, data at offset {offset}")
        parts = _engine.read_file(path)
        unpickle(parts[0], parts[1:], LoadContext(False), path, recorder)
        return lines, recorder.seen
    if head.startswith(_streams.ZFILE_PREFIX):
        load_zfile(path, what=path, native=False, policy=recorder)
        lines = [f"{path}: joblib < 0.10 file (zlib 'ZF' file, arrays in files beside it)"]
        return lines, recorder.seen
    name = _streams.detect(head)
    with open(path, "rb") as f:
        source = _streams.open_reader(name, f) if name else f
        inner_head, source = _head_of(source)
        wrapping = f"in a {name} stream" if name else "uncompressed"
        if inner_head.startswith(MAGIC):
            parts, data = read_container_stream(source, path)
            unpickle(parts[0], parts[1:], LoadContext(False), path, recorder)
            lines = [f"{path}: oxjob container ({len(data)} bytes) {wrapping}, {size} bytes"]
            return lines, recorder.seen
        unpickler = _Counting(source, what=path, native=False, policy=recorder)
        with bad_pickle(path):
            unpickler.load()
    protocol = inner_head[1] if inner_head[:1] == b"\x80" else 0
    if unpickler.records:
        aligned = "joblib >= 1.2" if unpickler.aligned else "joblib 0.10 to 1.1"
        kind = f"joblib file ({aligned} format, {unpickler.records} arrays)"
    else:
        kind = "pickle file (no joblib arrays)"
    lines = [f"{path}: {kind}, {wrapping}, pickle protocol {protocol}, {size} bytes"]
    return lines, recorder.seen


class _Counting(JoblibUnpickler):
    """Counts joblib's array records (and whether they were aligned, joblib >= 1.2)."""

    dispatch = JoblibUnpickler.dispatch.copy()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records = 0
        self.aligned = False

    def load_build(self) -> None:
        top = self.stack[-2] if len(self.stack) > 1 else None
        from ._joblib_read import NumpyArrayWrapper

        if isinstance(top, NumpyArrayWrapper):
            self.records += 1
            state = self.stack[-1]
            if isinstance(state, dict) and state.get("numpy_array_alignment_bytes"):
                self.aligned = True
        super().load_build()

    dispatch[b"b"[0]] = load_build


def report(path: str) -> list[str]:
    """What ``python -m oxjob inspect`` prints."""
    lines, seen = describe(path)
    untrusted = sorted(name for name, safe in seen.items() if not safe)
    lines.append(f"types and functions it needs ({len(seen)}):")
    for name in sorted(seen):
        lines.append(f"  {name}{'' if seen[name] else '   (needs trusted)'}")
    if untrusted:
        prefixes = sorted({name.split(".")[0] for name in untrusted})
        lines.append(
            f"load it safely with oxjob.load(path, trusted={prefixes!r}) if you trust "
            f"{', '.join(prefixes)}, or list the names above"
        )
    else:
        lines.append("nothing beyond containers and numpy: oxjob.load(path, trusted=[]) loads it")
    return lines
