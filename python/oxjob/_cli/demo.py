"""``python -m oxjob demo``: oxjob's main jobs on this machine, timed beside joblib.

Needs nothing beyond oxjob itself: with numpy installed the data is a float64 array
(the job oxjob is built for), without it a ``bytearray`` of the same size. When joblib
is installed, each step is also run with joblib and its time printed beside ours.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import types
from typing import Any, Callable

from .. import dump, hash, load

__all__ = ["run"]


def _median_times(
    ours: Callable[[], Any], theirs: Callable[[], Any] | None, written: list, repeat: int = 5
) -> tuple[float, float | None]:
    """Medians of ``repeat`` timed calls of ``ours`` and ``theirs``, after one untimed
    warm-up call of each, interleaved with the order swapped every round: whoever runs
    first would otherwise always pay for fresh page-cache pages and the other's dirty
    pages being written back, a bias of the same size as the difference measured.

    ``written`` holds each side's output file (or None); it is removed, untimed, before
    each call, so every dump writes a new file as a user's dump usually does. Replacing
    a file costs oxjob more than joblib: oxjob renames a finished file over it (a reader
    never sees half a file), and ext4 flushes a file renamed over another (its
    ``auto_da_alloc``), where joblib truncates and rewrites in place; on an existing
    268 MB file that flush tripled oxjob's time here (benchmarks/README.md).
    """
    calls = [ours] if theirs is None else [ours, theirs]
    times: list[list[float]] = [[] for _ in calls]
    for round_ in range(repeat + 1):
        order = range(len(calls)) if round_ % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            if written[i] is not None and os.path.exists(written[i]):
                os.unlink(written[i])
            start = time.perf_counter()
            calls[i]()
            if round_ > 0:  # round 0 is the warm-up
                times[i].append(time.perf_counter() - start)
    medians = [statistics.median(t) for t in times]
    return medians[0], (medians[1] if theirs is not None else None)


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _make_data(size_mb: int, np: Any) -> tuple[Any, str]:
    if np is not None:
        # Rounded measurements: realistic data that compresses a few times over.
        rng = np.random.default_rng(0)
        data = np.round(np.cumsum(rng.standard_normal(size_mb * (1 << 20) // 8)), 2)
        return data, f"one float64 array of {data.nbytes / 1e6:.0f} MB"
    # Without numpy: rounded numbers as text, which compresses about as well.
    line = "".join(f"{i * 0.37 % 1000:.2f}," for i in range(4096)).encode()
    size = size_mb << 20
    data = bytearray((line * (size // len(line) + 1))[:size])
    return data, f"a bytearray of {len(data) / 1e6:.0f} MB (install numpy for the array demo)"


def _cell(seconds: float | None, nbytes: int, o1: bool) -> str:
    if seconds is None:
        return f"{'':>21}"
    rate = "O(1)" if o1 else f"{nbytes / 1e9 / seconds:5.2f} GB/s"
    return f"{seconds * 1e3:9.1f} ms {rate:>10}"


def _steps(oxjob_module: Any, data: Any, tmp: str, prefix: str, np: Any) -> list:
    """``(name, timed call, file written or None, O(1) step)`` for one library."""
    lib_dump, lib_load, lib_hash = oxjob_module.dump, oxjob_module.load, oxjob_module.hash
    # No compression extension: each library's own default codec for compress=3
    # (a ".z" name would select zlib for both).
    raw, packed = os.path.join(tmp, f"{prefix}.raw"), os.path.join(tmp, f"{prefix}.packed")
    steps = [
        ("hash", lambda: lib_hash(data), None, False),
        ("dump, uncompressed", lambda: lib_dump(data, raw), raw, False),
        ("load, uncompressed", lambda: lib_load(raw), None, False),
    ]
    if np is not None:
        # A memory map only maps the file: its time does not grow with the data.
        steps.append(("load, mmap_mode='r'", lambda: lib_load(raw, mmap_mode="r"), None, True))
    steps += [
        ("dump, compress=3", lambda: lib_dump(data, packed, compress=3), packed, False),
        ("load, compressed", lambda: lib_load(packed), None, False),
    ]
    return steps


def _persistence(size_mb: int, np: Any, joblib: Any) -> None:
    data, described = _make_data(size_mb, np)
    nbytes = data.nbytes if np is not None else len(data)
    from ..compressors import DEFAULT_CODEC

    beside = f", joblib {joblib.__version__} beside" if joblib is not None else ""
    print(f"oxjob demo: {described}, medians of 5 runs{beside}")
    order = (
        "after a warm-up, oxjob and joblib alternate, first in turn, each dump into a new file; "
        if joblib
        else ""
    )
    codecs = f"oxjob's default {DEFAULT_CODEC}" + (", joblib's zlib" if joblib else "")
    print(
        f"  on {os.cpu_count()} cores (oxjob compresses on all of them); {order}"
        f"compress=3 uses {codecs}"
    )
    header = f"  {'':<22} {'oxjob':>21}"
    if joblib is not None:
        header += f"   {'joblib':>21}"
    print(header)
    ours_api = types.SimpleNamespace(dump=dump, load=load, hash=hash)
    with tempfile.TemporaryDirectory() as tmp:
        ours = _steps(ours_api, data, tmp, "oxjob", np)
        theirs = _steps(joblib, data, tmp, "joblib", np) if joblib is not None else None
        for i, (name, call, path, o1) in enumerate(ours):
            written = [path] + ([theirs[i][2]] if theirs is not None else [])
            seconds, other = _median_times(
                call, theirs[i][1] if theirs is not None else None, written
            )
            line = f"  {name:<22} {_cell(seconds, nbytes, o1)}"
            if theirs is not None and other is not None:
                ratio = "" if o1 else f"  {other / seconds:5.1f}x"
                line += f"   {_cell(other, nbytes, o1)}{ratio}"
            if path:
                line += f"   file {os.path.getsize(path) / 1e6:.1f} MB"
                if theirs is not None:
                    line += f" (joblib {os.path.getsize(theirs[i][2]) / 1e6:.1f} MB)"
            print(line)
        restored = load(os.path.join(tmp, "oxjob.packed"))
        assert (restored == data).all() if np is not None else restored == data
        assert hash(restored) == hash(data)


def _sum_of_squares(chunk: Any) -> int:
    return sum(int(v) * int(v) for v in chunk)


def _parallel(joblib: Any) -> None:
    from ..parallel import Parallel, delayed

    numbers = range(400_000)
    chunks = [numbers[i::8] for i in range(8)]
    expected = sum(v * v for v in numbers)
    print(f"\nParallel: sum of squares of {len(numbers):,} integers in {len(chunks)} chunks")
    sys.stdout.flush()
    start = time.perf_counter()
    total = sum(Parallel(n_jobs=2, verbose=1)(delayed(_sum_of_squares)(c) for c in chunks))
    elapsed = time.perf_counter() - start
    assert total == expected
    line = f"  oxjob  {elapsed * 1e3:8.1f} ms, worker start-up included"
    if joblib is not None:
        start = time.perf_counter()
        total = sum(joblib.Parallel(n_jobs=2)(joblib.delayed(_sum_of_squares)(c) for c in chunks))
        other = time.perf_counter() - start
        assert total == expected
        line += f"; joblib {other * 1e3:8.1f} ms"
    print(line)


def run(size_mb: int = 256) -> None:
    """Time hash, dump and load of ``size_mb`` MB and a small ``Parallel`` job, and print
    the figures (joblib's beside them when joblib is installed).

    Parameters
    ----------
    size_mb : int, default=256
        Size of the data the persistence steps work on.
    """
    if size_mb <= 0:
        raise ValueError(f"size_mb must be a positive number of megabytes, got {size_mb}")
    np, joblib = _optional("numpy"), _optional("joblib")
    _persistence(size_mb, np, joblib)
    _parallel(joblib)
