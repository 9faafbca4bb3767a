"""Functions and objects the pool tests send to workers (importable there by name)."""

import os
import pickle
import sys


def _exit():
    sys.exit(1)


def _raise_unpickling_error():
    raise pickle.UnpicklingError("cannot rebuild this object")


class ExitAtUnpickle:
    """Raises SystemExit wherever it is unpickled."""

    def __reduce__(self):
        return _exit, ()


class ErrorAtUnpickle:
    """Raises UnpicklingError wherever it is unpickled."""

    def __reduce__(self):
        return _raise_unpickling_error, ()


class RefusesPickling:
    """Raises RuntimeError when pickled (its own exception, not a PicklingError)."""

    def __reduce__(self):
        raise RuntimeError("cannot pickle this object")


def identity(x):
    return x


def return_instance(cls):
    return cls()


def return_unpicklable(_=None):
    return RefusesPickling()


def add(x, y):
    return x + y


def pid(_=None):
    return os.getpid()


def put_in_queue(queue, value):
    queue.put(value)
    return value


SHARED = {}


def keep_shared(**objects):
    SHARED.update(objects)


def use_shared(value):
    """Uses what the initializer was given: a queue, a lock, an event, a value."""
    with SHARED["lock"]:
        SHARED["counter"].value += value
    SHARED["queue"].put(value)
    return SHARED["event"].is_set()


class Model:
    """A bound method of a large object: a new object at every lookup."""

    def __init__(self, nbytes):
        self.weights = bytes(nbytes)

    def predict(self, x):
        return x + len(self.weights)


def sleep_then_print(seconds, text):
    import time

    time.sleep(seconds)
    print(text, flush=True)


def array_of(n, nbytes=4 << 20):
    import numpy as np

    return np.full(nbytes // 8, n, dtype=np.int64)


def rss_mb(pid=None):
    """Resident memory of a process, in MB (Linux); 0 for one that has exited (a
    worker forked ahead for a next pool goes away by itself)."""
    try:
        with open(f"/proc/{pid or os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def put_from_init(value):
    with SHARED["lock"]:
        SHARED["queue"].put(value)
    return value


class Raiser:
    @classmethod
    def fail(cls):
        raise RuntimeError(123)  # the line the remote traceback shows


def exit_abruptly(code=3):
    os._exit(code)


def fail_to_initialize():
    raise ValueError("this initializer fails")


def log_then_fail(log_queue):
    """An initializer that sends the worker's ``concurrent.futures`` log records to
    ``log_queue``, then fails."""
    import logging
    from logging.handlers import QueueHandler

    logger = logging.getLogger("concurrent.futures")
    logger.addHandler(QueueHandler(log_queue))
    logger.propagate = False
    raise ValueError("this initializer fails")
