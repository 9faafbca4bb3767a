"""The ``python -m oxjob`` command line.

``demo``
    Runs oxjob's main job on this machine and prints the timings.
``inspect FILE``
    Shows the sections of a file written by ``oxjob.dump``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any, Callable

from . import _engine, dump, hash, load

__all__ = ["main"]


def _time(func: Callable[[], Any], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def demo(size_mb: int = 256) -> None:
    """Dump, load and hash a large array, and print how long each step takes."""
    import numpy as np

    n = size_mb * (1 << 20) // 8
    # Rounded measurements: realistic data that compresses a few times over.
    rng = np.random.default_rng(0)
    data = np.round(np.cumsum(rng.standard_normal(n)), 2)
    gb = data.nbytes / 1e9
    print(f"oxjob demo: one float64 array of {data.nbytes / 1e6:.0f} MB, medians of 3 runs")
    with tempfile.TemporaryDirectory() as tmp:
        raw, packed = os.path.join(tmp, "raw.oxjob"), os.path.join(tmp, "packed.oxjob")
        rows = [
            ("hash (xxh3-128)", _time(lambda: hash(data)), None),
            ("dump, uncompressed", _time(lambda: dump(data, raw)), raw),
            ("load, uncompressed", _time(lambda: load(raw)), None),
            ("load, mmap_mode='r'", _time(lambda: load(raw, mmap_mode="r")), None),
            ("dump, compress=3 (zstd)", _time(lambda: dump(data, packed, compress=3)), packed),
            ("load, compressed", _time(lambda: load(packed)), None),
        ]
        assert np.array_equal(load(packed), data)
        for name, seconds, path in rows:
            size = f"  file {os.path.getsize(path) / 1e6:7.1f} MB" if path else ""
            print(f"  {name:<26} {seconds * 1e3:8.1f} ms  {gb / seconds:7.2f} GB/s{size}")


def inspect(path: str) -> None:
    """Print the layout of an oxjob file."""
    stream, buffers, end = _engine.layout_file(path)
    print(f"{path}: oxjob container, {end} bytes, checksums of the structure OK")
    print(f"  pickle stream: {len(stream)} bytes")
    for i, (codec, offset, length) in enumerate(buffers):
        print(f"  buffer {i}: {length} bytes, codec {codec}, data at offset {offset}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oxjob", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run the main job and print timings")
    run_demo.add_argument("--size-mb", type=int, default=256, help="array size (default 256)")
    run_inspect = commands.add_parser("inspect", help="show the layout of a dump file")
    run_inspect.add_argument("file")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.size_mb)
    else:
        try:
            inspect(args.file)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 1
    return 0
