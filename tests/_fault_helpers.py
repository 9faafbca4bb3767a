"""Task functions for the fault suite (tests/test_engine_faults.py); importable by workers."""

import os
import time


def square_after(x, seconds=0.0):
    if seconds:
        time.sleep(seconds)
    return x * x


def fail_at(x, bad):
    if x == bad:
        raise ValueError(f"task {x} failed on purpose")
    return x * x


def exit_now(x):
    os._exit(7)


def wait_for_file(path, limit):
    """Block until ``path`` exists; -1 if it never appears within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return -1
        time.sleep(0.01)
    return 1000


def big_array(n, value):
    import numpy as np

    return np.full(n, value, dtype=np.float64)


def limit_address_space(headroom):
    """Pool initializer: leave this worker ``headroom`` bytes of address space."""
    import resource

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.RLIM_INFINITY))


def first_value(array):
    return float(array[0])


def sleep_or_len(x):
    """Sleep ``x`` seconds if ``x`` is a float, else return ``len(x)``."""
    if isinstance(x, float):
        time.sleep(x)
        return 0
    return len(x)
