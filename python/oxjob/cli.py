"""The ``python -m oxjob`` command line.

``demo``
    Runs oxjob's main job on this machine and prints the timings.
``inspect FILE``
    Tells a file's format (oxjob, joblib, pickle, compression) and lists the types
    it needs, without running any of its code.
``cache info|ls|prune|clear LOCATION``
    Sizes and counts per function, every entry, eviction by bytes/items/age, or
    removal of everything, for the cache of ``Memory(LOCATION)``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

from . import dump, hash, load

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


def _sum_of_squares(chunk: Any) -> int:
    return int((chunk.astype("int64") ** 2).sum())


def demo_parallel() -> None:
    """Sum of squares over chunks on two worker processes, with joblib's messages."""
    import numpy as np

    from .parallel import Parallel, delayed

    numbers = np.arange(2_000_000)  # the sum of squares fits in int64
    chunks = np.array_split(numbers, 8)  # 2 MB each: above max_nbytes, so in shared memory
    print(f"\nParallel: sum of squares of {numbers.size:,} integers in {len(chunks)} chunks")
    sys.stdout.flush()
    start = time.perf_counter()
    total = sum(Parallel(n_jobs=2, verbose=1)(delayed(_sum_of_squares)(c) for c in chunks))
    elapsed = time.perf_counter() - start
    assert total == _sum_of_squares(numbers)
    print(f"  total {total:,} in {elapsed * 1e3:.1f} ms, worker start-up included")


def inspect(path: str) -> None:
    """Print a file's format (oxjob, joblib, pickle; compression) and the types it needs.

    Nothing of the file's code runs: see ``oxjob._inspect``.
    """
    from ._inspect import report

    for line in report(path):
        print(line)


_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _parse_age(text: str) -> float:
    """Seconds from ``'90'``, ``'30m'``, ``'12h'``, ``'7d'`` or ``'2w'``."""
    unit = text[-1:].lower()
    number = text[:-1] if unit in _AGE_UNITS else text
    try:
        value = float(number) * _AGE_UNITS.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use seconds or a number with s, m, h, d or w"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid age {text!r}: must not be negative")
    return value


def _human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def cache_command(args: argparse.Namespace) -> int:
    """Run ``cache info|ls|prune|clear`` on the cache of ``Memory(args.location)``."""
    from .store import LocalStoreBackend

    root = os.path.join(args.location, "oxjob")
    if not os.path.isdir(root):
        if os.path.basename(os.path.normpath(args.location)) == "oxjob":
            root = args.location
        else:
            print(f"error: no oxjob cache in {args.location}")
            return 1
    store = LocalStoreBackend()
    store.configure(root)
    entries = store.entries()
    if args.action == "info":
        per_func: dict[str, list] = {}
        for func_id, _, size, last_access, _ in entries:
            stats = per_func.setdefault(func_id, [0, 0, 0.0])
            stats[0] += 1
            stats[1] += size
            stats[2] = max(stats[2], last_access)
        total = sum(e[2] for e in entries)
        print(f"{root}: {len(entries)} entries, {_human(total)}")
        for func_id, (count, size, last) in sorted(per_func.items()):
            print(f"  {func_id}: {count} entries, {_human(size)}, last used {_when(last)}")
    elif args.action == "ls":
        for func_id, key, size, last_access, created in sorted(entries, key=lambda e: e[3]):
            print(
                f"{func_id}/{key}  {_human(size):>9}  created {_when(created)}  "
                f"last used {_when(last_access)}"
            )
    elif args.action == "prune":
        if args.bytes_limit is None and args.items_limit is None and args.age_limit is None:
            print("error: prune needs --bytes-limit, --items-limit or --age-limit")
            return 2
        removed = store.reduce_size(args.bytes_limit, args.items_limit, args.age_limit)
        freed = sum(item.size for item in removed)
        print(f"removed {len(removed)} entries, freed {_human(freed)}")
    else:
        store.clear()
        print(f"removed {len(entries)} entries")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m oxjob", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="run the main job and print timings")
    run_demo.add_argument("--size-mb", type=int, default=256, help="array size (default 256)")
    run_inspect = commands.add_parser(
        "inspect", help="tell a file's format and the types it needs (runs none of its code)"
    )
    run_inspect.add_argument("file")
    run_cache = commands.add_parser("cache", help="inspect, prune or clear a Memory cache")
    run_cache.add_argument("action", choices=["info", "ls", "prune", "clear"])
    run_cache.add_argument("location", help="the location given to oxjob.Memory")
    run_cache.add_argument("--bytes-limit", help="prune: keep at most this size ('1G', '500M')")
    run_cache.add_argument("--items-limit", type=int, help="prune: keep at most N entries")
    run_cache.add_argument(
        "--age-limit", type=_parse_age, help="prune: drop entries unused for longer ('7d', '12h')"
    )
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.size_mb)
        demo_parallel()
    elif args.command == "cache":
        try:
            return cache_command(args)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 1
    else:
        try:
            inspect(args.file)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 1
    return 0
