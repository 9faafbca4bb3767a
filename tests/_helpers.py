"""Functions used by the Parallel tests: importable, so workers can load them by name."""

import ctypes
import os
import signal
import time


def square(x):
    return x * x


def add(x, y=0):
    return x + y


def fail_on(x, bad=3):
    if x == bad:
        raise ValueError(f"bad value {x}")
    return x


def sleep_then(x, seconds):
    time.sleep(seconds)
    return x


def exit_worker(code):
    os._exit(code)


def kill_self(x):
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(x):
    ctypes.string_at(0)


def env(name):
    return os.environ.get(name)


def pid(_):
    return os.getpid()


def nested_backend(_):
    from oxjob import Parallel

    inner = Parallel(n_jobs=2)
    return type(inner._backend).__name__, inner([__import__("oxjob").delayed(abs)(-1)])


def set_global(value):
    global GLOBAL
    GLOBAL = value


GLOBAL = None


def read_global(_):
    return GLOBAL


def identity(x):
    return x


def write_first(array, value):
    array.flat[0] = value
    return array.flat[0]


def shared_info(array):
    from oxjob import shared

    return shared.is_shared(array), array.flags.writeable


def fill_slice(out, start, stop, value):
    out[start:stop] = value


def big_result(n, value):
    import numpy as np

    return np.full(n, value, dtype=np.float64)


def record_pid(x):
    return os.getpid()


def init_global(value):
    global GLOBAL
    GLOBAL = value


def slow_square(x, seconds=0.5):
    time.sleep(seconds)
    return x * x


_kept: list = []


def keep(array):
    """Hold on to the input array in the worker, as a cache would."""
    _kept.append(array)
    return float(array.sum())


def kept_sums():
    return [float(a.sum()) for a in _kept]


def scribble_on_kept_then_read(array):
    """Write into every array kept earlier, then read this task's own input."""
    for old in _kept:
        old.flat[0] = -1.0
    seen = float(array.flat[0])
    _kept.clear()
    return seen


def read_then_write(array, value):
    """The first element as this task received it; then overwrite it."""
    seen = float(array.flat[0])
    array.flat[0] = value
    return seen


_kept_with_sums: list = []


def sum_keeping_some(array, keep):
    """Sum ``array``; keep it if asked. None if an array kept earlier has changed."""
    if any(float(a.sum()) != expected for a, expected in _kept_with_sums):
        return None
    total = float(array.sum())
    if keep:
        _kept_with_sums.append((array, total))
    return total


def apply(func, *args):
    return func(*args)


def maps_memfd_of(nbytes):
    """Whether this process maps one of oxjob's memfds of exactly ``nbytes`` bytes."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "/memfd:oxjob" not in line:
                continue
            start, end = (int(bound, 16) for bound in line.split()[0].split("-"))
            if end - start == nbytes:
                return True
    return False


def total(array):
    return float(array.sum())


def worker_children():
    """Live (non-zombie) oxjob worker processes started by this process."""
    from oxjob._workers import template
    from oxjob._workers.mainscript import TEMPLATE_MODULE, WORKER_MODULE

    me = str(os.getpid())
    templates = {t.proc.pid for t in template._current}
    worker_arg, template_arg = (f"\0{m}\0".encode() for m in (WORKER_MODULE, TEMPLATE_MODULE))
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        # A worker forked from the warm template keeps the template's command line.
        is_worker = worker_arg in cmdline or (
            template_arg in cmdline and int(entry) not in templates
        )
        if fields[1] == me and fields[0] != "Z" and is_worker:
            found.append(int(entry))
    return found
