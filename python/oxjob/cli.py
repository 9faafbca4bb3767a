"""The ``python -m oxjob`` command line.

``demo``
    Runs oxjob's main jobs on this machine and prints the timings, joblib's beside
    them when joblib is installed; needs no numpy.
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
import time

__all__ = ["main"]


def demo(size_mb: int = 256) -> None:
    """Time oxjob's main jobs here (joblib's beside them when installed); see ``_demo``."""
    from ._demo import run

    run(size_mb)


def inspect(path: str) -> None:
    """Print a file's format (oxjob, joblib, pickle; compression) and the types it needs.

    Nothing of the file's code runs: see ``oxjob._inspect``.
    """
    from ._inspect import report

    for line in report(path):
        print(line)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: a positive number of MB")
    return value


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
    run_demo.add_argument(
        "--size-mb", type=_positive_int, default=256, help="data size in MB (default 256)"
    )
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
    elif args.command == "cache":
        try:
            return cache_command(args)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 1
    else:
        from .exceptions import UnsafeLoadError

        try:
            inspect(args.file)
        except UnsafeLoadError as exc:  # a hostile file: nothing of it ran
            print(f"error: {exc} (inspect ran none of the file's code)")
            return 1
        except (OSError, ValueError) as exc:
            print(f"error: {exc}")
            return 1
    return 0
