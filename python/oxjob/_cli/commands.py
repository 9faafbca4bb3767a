"""oxjob's command line: a timed demo, file inspection and cache maintenance.

The commands behind :mod:`oxjob.cli` (its documentation lists them) and ``python -m
oxjob``: the argument parser, ``cache``'s actions, and the entry points of ``demo``
and ``inspect``, whose modules are imported only when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

__all__ = ["main"]


def demo(size_mb: int = 256) -> None:
    """Time oxjob's main jobs here (joblib's beside them when installed); see ``demo``."""
    from .demo import run

    run(size_mb)


def inspect(path: str) -> None:
    """Print a file's format (oxjob, joblib, pickle; compression) and the types it needs.

    Nothing of the file's code runs: see ``inspect``.
    """
    from .inspect import report

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


#: The program name in usage lines and messages.
PROG = "python -m oxjob"


def _error(message: object) -> int:
    """Print an error as argparse does (on stderr, prefixed by the program); status 1."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1


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
    from ..store import LocalStoreBackend, is_cache

    root = os.path.join(args.location, "oxjob")
    if not os.path.isdir(root) and os.path.basename(os.path.normpath(args.location)) == "oxjob":
        root = args.location
    if not is_cache(root):
        # Never prune or clear a folder that is not a cache (a checkout named oxjob,
        # a typo): only what the store recognises as its own is ever removed anyway.
        return _error(
            f"no oxjob cache in {args.location} ({root} has neither oxjob's "
            "CACHEDIR.TAG nor cache entries); nothing was changed"
        )
    store = LocalStoreBackend()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a read-only cache can still be listed
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
            # A usage error: argparse's status and stream.
            print(
                f"{PROG} cache: error: prune needs --bytes-limit, --items-limit or --age-limit",
                file=sys.stderr,
            )
            return 2
        removed = store.reduce_size(args.bytes_limit, args.items_limit, args.age_limit)
        freed = sum(item.size for item in removed)
        print(f"removed {len(removed)} entries, freed {_human(freed)}")
    else:
        print(f"removed {store.clear()} entries")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n")[0],
        epilog="Run 'python -m oxjob COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"oxjob {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="one of the commands below"
    )
    run_demo = commands.add_parser(
        "demo",
        help="time hash, dump and load of a large object and a small Parallel job, joblib beside",
        description="Time oxjob's main jobs on this machine (hash, dump and load of one large "
        "object, a small Parallel job) and print the figures, joblib's beside them when "
        "joblib is installed. Needs no numpy.",
    )
    run_demo.add_argument(
        "--size-mb",
        type=_positive_int,
        default=256,
        metavar="MB",
        help="size of the data dumped, loaded and hashed, in MB (default 256)",
    )
    run_inspect = commands.add_parser(
        "inspect",
        help="tell a file's format and the types it needs (runs none of its code)",
        description="Tell a file's format (oxjob, joblib, pickle; compression) and list the "
        "types it needs to load, without running any of its code.",
    )
    run_inspect.add_argument("file", help="a file written by oxjob.dump, joblib.dump or pickle")
    run_cache = commands.add_parser(
        "cache",
        help="inspect, prune or clear a Memory cache",
        description="Inspect, prune or clear the cache of oxjob.Memory(LOCATION).",
    )
    run_cache.add_argument(
        "action",
        choices=["info", "ls", "prune", "clear"],
        help="info: sizes and counts per function; ls: every entry; prune: drop entries "
        "beyond the limits given; clear: remove every entry",
    )
    run_cache.add_argument("location", help="the location given to oxjob.Memory")
    run_cache.add_argument(
        "--bytes-limit", metavar="SIZE", help="prune: keep at most this size ('1G', '500M')"
    )
    run_cache.add_argument(
        "--items-limit", type=int, metavar="N", help="prune: keep at most N entries"
    )
    run_cache.add_argument(
        "--age-limit",
        type=_parse_age,
        metavar="AGE",
        help="prune: drop entries unused for longer ('7d', '12h', '30m', seconds)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Usage errors exit with status 2 (argparse's), failures of a command with 1; both
    are reported on stderr.
    """
    args = _parser().parse_args(argv)
    if args.command == "demo":
        demo(args.size_mb)
    elif args.command == "cache":
        try:
            return cache_command(args)
        except (OSError, ValueError) as exc:
            return _error(exc)
    else:
        from ..exceptions import UnsafeLoadError

        try:
            inspect(args.file)
        except UnsafeLoadError as exc:  # a hostile file: nothing of it ran
            return _error(f"{exc} (inspect ran none of the file's code)")
        except (OSError, ValueError) as exc:
            return _error(exc)
    return 0
