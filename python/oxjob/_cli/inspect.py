"""``python -m oxjob inspect FILE``: a file's format and the types it needs, run nothing.

The file is read by the safe loader's opcode interpreter in record mode
(:mod:`oxjob._io.safe_unpickle`): only the reviewed default rules make anything
(containers, numpy data), every other global is recorded and replaced by an inert
stand-in without being imported, and joblib's array data is skipped, not read.
"""

from __future__ import annotations

import io
import os
from typing import Any

from .. import _engine
from .._io import streams
from .._io.container import MAGIC, read_container_stream
from .._io.joblib_read import read_zfile
from .._io.load import _head_of, bad_pickle
from .._io.safe import Policy
from .._io.safe_joblib import JoblibContext
from .._io.safe_unpickle import load_stream


def _record(
    source: object,
    path: str,
    *,
    stored: int | None = None,
    codec: str | None = None,
    buffers: Any = None,
    context: Any = None,
) -> dict[str, bool]:
    return load_stream(
        source,
        Policy(()),
        path,
        stored=stored,
        codec=codec,
        buffers=buffers,
        context=context,
        record=True,
    ).seen


def describe(path: str) -> tuple[list[str], dict[str, bool]]:
    """Lines describing the file's format, and ``{global: safe}`` for what it needs."""
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
        seen = _record(io.BytesIO(parts[0]), path, buffers=parts[1:], stored=size)
        return lines, seen
    context = JoblibContext(path)  # joblib < 0.10's files are beside this one
    if head.startswith(streams.ZFILE_PREFIX):
        with open(path, "rb") as f:
            content = read_zfile(f, limit=1 << 30)
        seen = _record(io.BytesIO(content), path, context=context, stored=len(content))
        lines = [f"{path}: joblib < 0.10 file (zlib 'ZF' file, arrays in files beside it)"]
        return lines, seen
    name = streams.detect(head)
    with open(path, "rb") as f:
        source = streams.open_reader(name, f) if name else f
        inner_head, source = _head_of(source)
        wrapping = f"in a {name} stream" if name else "uncompressed"
        if inner_head.startswith(MAGIC):
            parts, data = read_container_stream(source, path)
            seen = _record(io.BytesIO(parts[0]), path, buffers=parts[1:], stored=len(data))
            lines = [f"{path}: oxjob container ({len(data)} bytes) {wrapping}, {size} bytes"]
            return lines, seen
        with bad_pickle(path):
            seen = _record(source, path, context=context, stored=size, codec=name)
    protocol = inner_head[1] if inner_head[:1] == b"\x80" else 0
    if context.compat:
        kind = "joblib < 0.10 file (arrays in .npy files beside it)"
    elif context.records:
        aligned = "joblib >= 1.2" if context.aligned else "joblib 0.10 to 1.1"
        kind = f"joblib file ({aligned} format, {context.records} arrays)"
    else:
        kind = "pickle file (no joblib arrays)"
    lines = [f"{path}: {kind}, {wrapping}, pickle protocol {protocol}, {size} bytes"]
    return lines, seen


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
        lines.append(
            "nothing beyond the always-allowed types: oxjob.load(path, trusted=[]) loads it"
        )
    return lines
