"""Functions run by the tests of memmap arguments and progress hooks (importable, so
workers load them by name)."""

import os


def write_mean(data, sl, output, idx):
    """joblib's gallery pattern (parallel_memmap.py): write a result into a memmap."""
    output[idx] = data[sl].mean()


def describe(array):
    """What a worker received: its type, file, mode, and whether it may write."""
    return type(array).__name__, getattr(array, "filename", None), getattr(array, "mode", None)


def writeable(array):
    return bool(array.flags.writeable)


def fill_view(view, value):
    view[...] = value
    return os.getpid()
