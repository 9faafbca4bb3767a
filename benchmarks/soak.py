"""Soak the one task engine: random mixes of oxjob calls, errors, timeouts, worker kills,
cancelled generators and large numpy arrays, from several threads at once, for a while.

Every operation checks its own result: a wrong value, or an error of the wrong type, is
reported at once and counted. At the start (after a warm-up) and at the end (after a
settle) the caller's open file descriptors, threads and RSS are measured; the run fails
(exit status 1) if anything was wrong or the descriptor or thread count grew. An
operation that outlives ``--hang-limit`` is a hang: the stacks are dumped and the run
fails at once (exit status 2), so the soak itself can never hang. Not run in CI::

    PYTHONPATH=python python benchmarks/soak.py --seconds 300 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import faulthandler
import gc
import os
import random
import signal
import sys
import threading
import time
import traceback
from functools import partial

import numpy as np

import oxjob
from oxjob import Parallel, Pool, ProcessPoolExecutor, delayed
from oxjob._workers import shared_engine as _shared_engine  # its workers, to kill -9 one
from oxjob.exceptions import RemoteTraceback, TerminatedWorkerError
from oxjob.exceptions import TimeoutError as OxTimeoutError

# ---- tasks (they run in the workers; defined in __main__, so sent by value) ----------


def square(x, delay=0.0):
    if delay:
        time.sleep(delay)
    return x * x


def fail_at(x, bad, token):
    if x == bad:
        raise ValueError(f"soak {token}: task {x} failed on purpose")
    return x * x


def die_at(x, bad, how, delay=0.0):
    """Square ``x``; the task ``bad`` kills its own worker (``how``: an exit code or -9)."""
    if x == bad:
        if how == -9:
            os.kill(os.getpid(), signal.SIGKILL)
        os._exit(how)
    if delay:
        time.sleep(delay)
    return x * x


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def sleepy(x, seconds):
    time.sleep(seconds)
    return x


def scribble(a, k):
    """Sums of the input before and after writing into it. The input is mapped
    copy-on-write: the caller never sees the write, nor does a task of another batch
    (tasks of one batch share one unpickled argument, as in joblib: batches of one)."""
    before = int(a.sum())
    a += k
    return before, int(a.sum())


def shifted(a, k):
    return a + k  # a large result


def filled(n, value):
    return np.full(n, value, dtype=np.int64)


# ---- checking ------------------------------------------------------------------------


class Wrong(Exception):
    """A wrong value, or an error of the wrong type: the soak exists to find these."""


def expect(condition, what):
    if not condition:
        raise Wrong(what)


def raises(run, types, needle=None):
    """Run ``run()``; it must raise one of ``types`` (with ``needle`` in its message)."""
    try:
        value = run()
    except types as exc:
        expect(
            needle is None or needle in str(exc), f"{type(exc).__name__} lacks {needle!r}: {exc}"
        )
        return exc
    except BaseException as exc:
        raise Wrong(f"expected {types}, got {type(exc).__name__}: {exc}") from exc
    raise Wrong(f"expected {types}, got a value: {str(value)[:200]}")


def consume(results, return_as):
    return sorted(results) if return_as == "generator_unordered" else list(results)


def check_squares(got, xs, return_as="list"):
    want = [x * x for x in xs]
    if return_as == "generator_unordered":
        want.sort()
    if got != want:
        bad = next(i for i, (g, w) in enumerate(zip(got, want + [None] * len(got))) if g != w)
        raise Wrong(f"{len(got)} results for {len(want)}; first wrong at {bad}")


class ReadWriteLock:
    """Calls on the shared engine take it shared; a kill -9 from outside takes it alone
    (it may rightly fail whichever call was running on the victim). Writers first."""

    def __init__(self):
        self.cond = threading.Condition()
        self.readers = 0
        self.writing = False
        self.waiting = 0

    def shared(self):
        return _Held(self, False)

    def alone(self):
        return _Held(self, True)


class _Held:
    def __init__(self, lock, alone):
        self.lock, self.alone = lock, alone

    def __enter__(self):
        lock = self.lock
        with lock.cond:
            if self.alone:
                lock.waiting += 1
                lock.cond.wait_for(lambda: not lock.writing and lock.readers == 0)
                lock.waiting -= 1
                lock.writing = True
            else:
                lock.cond.wait_for(lambda: not lock.writing and lock.waiting == 0)
                lock.readers += 1

    def __exit__(self, *exc):
        lock = self.lock
        with lock.cond:
            if self.alone:
                lock.writing = False
            else:
                lock.readers -= 1
            lock.cond.notify_all()


SHARED_ENGINE = ReadWriteLock()


def under_kill(engine, rng, max_delay, run):
    """Run ``run()`` while a kill -9 from outside lands on one of ``engine``'s workers
    (chosen, with the delay, before the killer starts: the run stays reproducible). The
    call either fails with TerminatedWorkerError naming SIGKILL, or, if the victim was
    idle, returns; ``run`` checks its own result."""
    delay, index = rng.uniform(0.0, max_delay), rng.randrange(engine.n)
    victim = []

    def kill():
        time.sleep(delay)
        victim.append(engine.pids()[index])
        try:
            os.kill(victim[0], signal.SIGKILL)
        except ProcessLookupError:
            pass

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        run()
    except TerminatedWorkerError as exc:
        expect("SIGKILL(-9)" in str(exc), f"death not named: {exc}")
        outcome = "terminated"
    else:
        outcome = "right"
    killer.join(30)
    expect(not killer.is_alive(), "the killer thread hung")
    wait_noticed(engine, victim[0])
    return outcome


def wait_noticed(engine, victim, limit=20.0):
    """A worker killed while idle is noticed by its exit event; a task sent to it before
    that rightly fails, so wait until the engine has seen the death."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pids = engine.pids()
        if victim not in pids or pids.index(victim) in engine.pool.dead:
            return
        time.sleep(0.02)
    raise Wrong(f"the engine had not noticed the death of worker {victim} after {limit} s")


# ---- operations: each returns (kind, outcome, number of oxjob calls) -----------------


def op_parallel(rng, backend="loky"):
    n = rng.choice([1, 7, 100, 1000, 3000])
    return_as = rng.choice(["list", "generator", "generator_unordered"])
    batch_size = rng.choice(["auto", "auto", 1, 16])
    delay = 0.001 if n <= 100 and rng.random() < 0.5 else 0.0
    n_jobs = rng.choice([2, 3]) if backend == "threading" else 2
    base = rng.randrange(-(10**6), 10**6)
    xs = range(base, base + n)
    out = Parallel(n_jobs=n_jobs, backend=backend, return_as=return_as, batch_size=batch_size)(
        delayed(square)(x, delay) for x in xs
    )
    check_squares(consume(out, return_as), xs, return_as)
    return return_as, 1


def op_raise(rng):
    backend = rng.choice(["loky", "loky", "threading"])
    n, token = rng.randrange(2, 500), rng.getrandbits(32)
    bad = rng.randrange(n)
    return_as = rng.choice(["list", "generator", "generator_unordered"])
    exc = raises(
        lambda: consume(
            Parallel(n_jobs=2, backend=backend, return_as=return_as)(
                delayed(fail_at)(x, bad, token) for x in range(n)
            ),
            return_as,
        ),
        ValueError,
        f"soak {token}: task {bad} failed",
    )
    if backend == "loky":
        expect(isinstance(exc.__cause__, RemoteTraceback), f"no remote traceback: {exc!r}")
    return backend, 1


def op_timeout(rng):
    backend = rng.choice(["loky", "loky", "threading"])
    # A worker is killed at the timeout; a thread cannot be, so its task is kept short.
    sleep = 10.0 if backend == "loky" else 0.8
    limit = rng.uniform(0.1, 0.4)
    n = rng.randrange(1, 20)
    tasks = [delayed(square)(x) for x in range(n)]
    tasks.insert(rng.randrange(n + 1), delayed(sleepy)(0, sleep))
    start = time.monotonic()
    raises(
        lambda: Parallel(n_jobs=2, backend=backend, timeout=limit)(tasks),
        OxTimeoutError,
    )
    took = time.monotonic() - start
    # The limit counts from when the task starts, which may be after other callers'
    # tasks; ten seconds is far beyond that wait, and the task's end.
    expect(backend == "threading" or took < sleep, f"timeout={limit:.2f} s took {took:.1f} s")
    return backend, 1


def op_self_kill(rng):
    how = rng.choice([-9, rng.randrange(1, 120)])
    n = rng.choice([1, 5, 60, 400])
    bad = rng.randrange(n)
    delay = rng.choice([0.0, 0.002])
    batch_size = rng.choice(["auto", 1])
    return_as = rng.choice(["list", "generator", "generator_unordered"])
    needle = "SIGKILL(-9)" if how == -9 else f"EXIT({how})"
    raises(
        lambda: consume(
            Parallel(n_jobs=2, batch_size=batch_size, return_as=return_as)(
                delayed(die_at)(x, bad, how, delay) for x in range(n)
            ),
            return_as,
        ),
        TerminatedWorkerError,
        needle,
    )
    return "sigkill" if how == -9 else "exit", 1


def op_outside_kill(rng):
    """kill -9 of a shared-engine worker while a call runs (small tasks, or ones returning
    large arrays): the call fails with TerminatedWorkerError naming SIGKILL, or is right."""
    n = rng.randrange(10, 80)
    large = rng.random() < 0.4

    def run():
        if large:
            out = Parallel(n_jobs=2, batch_size=1)(delayed(filled)(2**18, x) for x in range(n))
            got = [(int(a[0]), a.size, bool((a == a[0]).all())) for a in out]
            expect(got == [(x, 2**18, True) for x in range(n)], "wrong large results")
        else:
            out = Parallel(n_jobs=2, batch_size=1)(delayed(square)(x, 0.01) for x in range(n))
            check_squares(out, range(n))

    Parallel(n_jobs=2)(delayed(square)(x) for x in range(2))  # the engine of n_jobs=2
    outcome = under_kill(_shared_engine._SHARED, rng, 0.6, run)
    return f"{'large' if large else 'small'}.{outcome}", 1


def op_abandon(rng):
    """A generator abandoned half-way (closed, or dropped): the next call is unaffected."""
    backend = rng.choice(["loky", "loky", "threading"])
    return_as = rng.choice(["generator", "generator_unordered"])
    n = rng.choice([20, 300, 3000])
    base = rng.randrange(10**6)
    gen = Parallel(n_jobs=2, backend=backend, return_as=return_as)(
        delayed(square)(base + x, 0.002 if n == 20 else 0.0) for x in range(n)
    )
    take = rng.randrange(0, n // 2 + 1)
    got = [next(gen) for _ in range(take)]
    if return_as == "generator":
        check_squares(got, range(base, base + take))
    else:
        want = {(base + x) ** 2 for x in range(n)}
        expect(set(got) <= want and len(set(got)) == len(got), "unordered results not the tasks'")
    how = rng.choice(["close", "drop"])
    if how == "close":
        gen.close()
    del gen
    gc.collect()
    xs = range(-base, -base + 50)
    check_squares(Parallel(n_jobs=2, backend=backend)(delayed(square)(x) for x in xs), xs)
    return f"{backend}.{how}", 2


def op_interleave(rng):
    """Two or three generators (mixed backends) consumed in turn in one thread."""
    count = rng.choice([2, 3])
    n = rng.choice([50, 500])
    plans = []
    for k in range(count):
        backend = rng.choice(["loky", "loky", "threading"])
        xs = range(k * 10**5, k * 10**5 + n)
        gen = Parallel(n_jobs=2, backend=backend, return_as="generator")(
            delayed(square)(x) for x in xs
        )
        plans.append((xs, gen, []))
    for items in zip(*(gen for _, gen, _ in plans)):
        for (_, _, got), item in zip(plans, items):
            got.append(item)
    for xs, _, got in plans:
        check_squares(got, xs)
    return str(count), count


def op_big_in(rng, nprng):
    """Large arrays in, each given to several tasks that write to their (private) copy."""
    backend = rng.choice(["loky", "loky", "threading"])
    arrays = [nprng.integers(-1000, 1000, size=rng.randrange(200_000, 800_000)) for _ in range(3)]
    keep = [a.copy() for a in arrays]
    plan = [(rng.randrange(len(arrays)), rng.randrange(1, 9)) for _ in range(rng.randrange(2, 12))]
    if backend == "loky":
        out = Parallel(n_jobs=2, batch_size=1)(delayed(scribble)(arrays[i], k) for i, k in plan)
        for (i, k), (before, after) in zip(plan, out):
            total = int(keep[i].sum())
            expect(before == total, f"task saw another task's writes: {before} != {total}")
            expect(after == total + k * keep[i].size, "a write into the input was lost")
    else:
        out = Parallel(n_jobs=2, backend=backend)(delayed(shifted)(arrays[i], k) for i, k in plan)
        for (i, k), got in zip(plan, out):
            expect(np.array_equal(got, keep[i] + k), "wrong large result")
    for a, b in zip(arrays, keep):
        expect(np.array_equal(a, b), "the caller's input array was changed by a task")
    return backend, 1


def op_big_out(rng):
    return_as = rng.choice(["list", "generator", "generator_unordered"])
    plan = [(rng.randrange(100_000, 1_200_000), rng.randrange(10**9)) for _ in range(6)]
    out = Parallel(n_jobs=2, return_as=return_as)(delayed(filled)(n, v) for n, v in plan)
    got = sorted((int(a[0]), a.size, bool((a == a[0]).all())) for a in out)
    want = sorted((v, n, True) for n, v in plan)
    expect(got == want, "wrong large results")
    return return_as, 1


def op_reuse(rng, nprng):
    """One array sent in three calls, changed in place by the caller between the first two:
    a segment reused by the hash of its bytes must never carry stale bytes."""
    a = nprng.integers(0, 1000, size=rng.randrange(200_000, 600_000))
    total = 0
    for step in range(3):
        if step == 1:
            a[rng.randrange(a.size)] += rng.randrange(1, 100)
        total = int(a.sum())
        out = Parallel(n_jobs=2, batch_size=1)(delayed(scribble)(a, 1) for _ in range(3))
        expect(out == [(total, total + a.size)] * 3, f"call {step} saw stale bytes")
        got = Parallel(n_jobs=2)([delayed(shifted)(a, 2)])[0]
        expect(np.array_equal(got, a + 2), f"call {step}: wrong large result")
    return "3calls", 6


def slow_map(pool, xs):
    check_squares(pool.starmap(square, [(x, 0.01) for x in xs], 1), xs)


def op_pool(rng, nprng):
    """One Pool, a few random uses of it, sometimes ended by terminate() mid-call."""
    calls = 0
    with Pool(2) as pool:
        for _ in range(rng.randrange(2, 6)):
            use = rng.choice(
                ["map", "starmap", "imap", "imap_unordered", "apply", "raise", "exit",
                 "get_timeout", "arrays", "kill", "imap_abandon"]
            )  # fmt: skip
            calls += 1
            base = rng.randrange(10**6)
            xs = range(base, base + rng.choice([1, 10, 1000]))
            chunk = rng.choice([None, 1, 7])
            if use == "map":
                check_squares(pool.map(square, xs, chunk), xs)
            elif use == "starmap":
                check_squares(pool.starmap(square, [(x,) for x in xs], chunk), xs)
            elif use == "imap":
                check_squares(list(pool.imap(square, xs, chunk or 1)), xs)
            elif use == "imap_unordered":
                check_squares(sorted(pool.imap_unordered(square, xs, chunk or 1)), xs, use[1:])
            elif use == "apply":
                results = [pool.apply_async(square, (x,)) for x in xs[:50]]
                check_squares([r.get(60) for r in results], xs[:50])
            elif use == "raise":
                token = rng.getrandbits(32)
                bad = rng.choice(xs)
                items = [(x, bad, token) for x in xs]
                run = partial(pool.starmap, fail_at, items, chunk)
                raises(run, ValueError, f"soak {token}")
            elif use == "exit":
                how = rng.choice([-9, 3])
                items = [(x, xs[0], how) for x in xs]
                run = partial(pool.starmap, die_at, items, chunk)
                raises(run, TerminatedWorkerError, "SIGKILL(-9)" if how == -9 else "EXIT(3)")
            elif use == "get_timeout":
                raises(lambda: pool.apply_async(sleepy, (1, 1.0)).get(0.05), OxTimeoutError)
            elif use == "arrays":
                arrays = [
                    nprng.integers(0, 99, size=rng.randrange(150_000, 500_000)) for _ in range(4)
                ]
                sums = pool.starmap(scribble, [(a, 3) for a in arrays], 1)
                expect(
                    sums == [(int(a.sum()), int(a.sum()) + 3 * a.size) for a in arrays],
                    "Pool: wrong sums of large inputs",
                )
                got = pool.starmap(shifted, [(a, 5) for a in arrays], 1)
                expect(
                    all(np.array_equal(g, a + 5) for g, a in zip(got, arrays)),
                    "Pool: wrong large results",
                )
            elif use == "kill":
                under_kill(pool._engine, rng, 0.3, partial(slow_map, pool, xs[:40]))
            elif use == "imap_abandon":
                it = pool.imap(square, xs, chunk or 1)
                check_squares([next(it) for _ in range(len(xs) // 2)], xs[: len(xs) // 2])
                del it
        if rng.random() < 0.3:
            calls += 1
            xs = range(200)
            pending = pool.map_async(square, xs, 1, callback=None)
            time.sleep(rng.uniform(0.0, 0.05))
            pool.terminate()
            try:
                check_squares(pending.get(30), xs)
            except ValueError as exc:  # unfinished tasks fail when the pool is terminated
                expect("terminated" in str(exc), f"terminate: {exc}")
            return "terminated", calls
    return "closed", calls


def op_executor(rng, nprng):
    calls = 0
    with ProcessPoolExecutor(2) as executor:
        xs = range(rng.randrange(1, 300))
        futures = [executor.submit(square, x) for x in xs]
        check_squares([f.result(60) for f in futures], xs)
        check_squares(list(executor.map(square, xs, chunksize=rng.choice([1, 16]))), xs)
        calls += 2
        token = rng.getrandbits(32)
        bad = executor.submit(fail_at, 1, 1, token)
        exc = bad.exception(60)
        expect(isinstance(exc, ValueError) and f"soak {token}" in str(exc), f"future: {exc!r}")
        a = nprng.integers(0, 99, size=300_000)
        expect(np.array_equal(executor.submit(shifted, a, 1).result(60), a + 1), "executor array")
        calls += 2
        if rng.random() < 0.5:
            slow = [executor.submit(sleepy, x, 0.02) for x in range(40)]
            executor.shutdown(wait=True, cancel_futures=True)
            calls += 1
            for x, future in enumerate(slow):
                expect(future.cancelled() or future.result(0) == x, "cancel_futures: wrong")
            return "cancelled", calls
    return "closed", calls


def op_switch(rng):
    """Parallel(n_jobs=3) replaces the shared engine while other threads' calls run on the
    old one (it is retired once they end)."""
    xs = range(rng.randrange(1, 200))
    check_squares(Parallel(n_jobs=3)(delayed(square)(x) for x in xs), xs)
    return "n_jobs=3", 1


# (name, weight, function(rng, nprng), holds the shared engine: "shared", "alone" or None)
OPS = [
    ("parallel.loky", 10, lambda r, n: op_parallel(r), "shared"),
    ("parallel.threading", 6, lambda r, n: op_parallel(r, "threading"), None),
    ("raise", 5, lambda r, n: op_raise(r), "shared"),
    ("timeout", 3, lambda r, n: op_timeout(r), "shared"),
    ("self_kill", 4, lambda r, n: op_self_kill(r), "shared"),
    ("outside_kill", 2, lambda r, n: op_outside_kill(r), "alone"),
    ("abandon", 5, lambda r, n: op_abandon(r), "shared"),
    ("interleave", 3, lambda r, n: op_interleave(r), "shared"),
    ("big_in", 4, op_big_in, "shared"),
    ("big_out", 4, lambda r, n: op_big_out(r), "shared"),
    ("reuse", 3, op_reuse, "shared"),
    ("pool", 4, op_pool, None),
    ("executor", 3, op_executor, None),
    ("switch", 1, lambda r, n: op_switch(r), "shared"),
]


# ---- the run -------------------------------------------------------------------------


def snapshot(trimmed=False):
    """The caller's open descriptors, OS threads, RSS (MB) and live worker children;
    with ``trimmed``, also the RSS once malloc has given its free pages back to the
    system (the heap the process holds on to, apart from what it uses)."""
    if trimmed:
        rss = snapshot()["rss_mb"]
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return {**snapshot(), "untrimmed_mb": rss, "objects": object_counts()}
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            status[key] = value.split()
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
    return {
        "fds": len(fds),
        "threads": int(status["Threads"][0]),
        "py_threads": threading.active_count(),
        "rss_mb": int(status["VmRSS"][0]) / 1024,
        "anon_mb": int(status["RssAnon"][0]) / 1024,
        "shmem_mb": int(status["RssShmem"][0]) / 1024,
        "workers": len(worker_children()),
        "links": fds,
    }


def object_counts():
    """Live objects the cycle collector tracks, by type: where a leak of Python objects
    would show."""
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def worker_children():
    me, found = str(os.getpid()), set()
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
        if fields[1] == me and b"\0oxjob._workers.worker\0" in cmdline:
            found.add((int(entry), fields[0]))
    return found


class Soak:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.calls = 0
        self.ops = 0
        self.wrong = 0
        self.unexpected = 0
        self.current = {}  # lane -> (op name, op number, start)
        self.stop_at = 0.0

    def fail(self, label, name, lane, number, exc):
        with self.lock:
            if label == "WRONG":
                self.wrong += 1
            else:
                self.unexpected += 1
            self.counts[f"{name}: {label}"] += 1
            loud = self.wrong + self.unexpected <= 20
        lines = traceback.format_exception(exc) if loud else [f"{type(exc).__name__}: {exc}\n"]
        sys.stderr.write(
            f"\n!!! {label} in {name} (lane {lane}, op {number}, seed {self.args.seed})\n"
            + "".join(lines)
        )
        sys.stderr.flush()

    def run_op(self, lane, number, rng, nprng, entry):
        name, _, func, engine_use = entry
        with self.lock:
            self.current[lane] = (name, number, time.monotonic())
        try:
            if engine_use == "alone":
                with SHARED_ENGINE.alone():
                    outcome, calls = func(rng, nprng)
            elif engine_use == "shared":
                with SHARED_ENGINE.shared():
                    outcome, calls = func(rng, nprng)
            else:
                outcome, calls = func(rng, nprng)
        except Wrong as exc:
            self.fail("WRONG", name, lane, number, exc)
        except Exception as exc:  # noqa: BLE001 - every other error is unexpected
            self.fail("UNEXPECTED ERROR", name, lane, number, exc)
        else:
            with self.lock:
                self.counts[f"{name}: {outcome}"] += 1
                self.calls += calls
                self.ops += 1
        finally:
            with self.lock:
                self.current.pop(lane, None)

    def lane(self, lane, salt):
        rng = random.Random(f"{self.args.seed}.{salt}.{lane}")
        nprng = np.random.default_rng(rng.getrandbits(64))
        ops = [e for e in OPS if not self.args.only or e[0] in self.args.only.split(",")]
        weights = [w for _, w, _, _ in ops]
        number = 0
        while time.monotonic() < self.stop_at:
            number += 1
            self.run_op(lane, number, rng, nprng, rng.choices(ops, weights)[0])

    def supervise(self, lanes, start, began, samples, warm=(0, 0)):
        """Wait for the lanes; a hang ends the run (its stacks dumped), every 30 s a sample."""
        next_sample = began + 30
        while any(t.is_alive() for t in lanes):
            time.sleep(0.25)
            for lane, name, number, age in self.hung():
                print(f"\n!!! HANG: {name} (lane {lane}, op {number}) running for {age:.1f} s",
                      file=sys.stderr)  # fmt: skip
            if self.hung():
                faulthandler.dump_traceback(all_threads=True)
                report(self, start, None, time.monotonic() - began, samples, warm)
                sys.stdout.flush()
                os._exit(2)
            if samples is not None and start is not None and time.monotonic() >= next_sample:
                snap = snapshot()
                samples.append(snap)
                with self.lock:
                    rate = self.calls / (time.monotonic() - began)
                print(f"  {time.monotonic() - began:5.0f} s: {self.ops} ops, {rate:.1f} calls/s, "
                      f"fds {snap['fds']}, threads {snap['threads']}, "
                      f"rss {snap['rss_mb']:.0f} MB, wrong {self.wrong}, "
                      f"unexpected {self.unexpected}", flush=True)  # fmt: skip
                next_sample += 30

    def hung(self):
        now = time.monotonic()
        with self.lock:
            return [
                (lane, name, number, now - start)
                for lane, (name, number, start) in self.current.items()
                if now - start > self.args.hang_limit
            ]


def settle(seconds):
    # Back to the engine the soak starts and ends with: an n_jobs=3 call may have
    # replaced it (the retired one is stopped by the next call), and with both of its
    # workers alive (one killed while idle is replaced only when there is work for it).
    for _ in range(20):
        pids = Parallel(n_jobs=2, batch_size=1)(delayed(pid_after)(0.05) for _ in range(8))
        if len(set(pids)) == 2:
            break
    gc.collect()
    time.sleep(seconds)
    gc.collect()


def show(label, snap):
    rss = snap.get("untrimmed_mb", snap["rss_mb"])
    print(
        f"  {label:<6} fds {snap['fds']:>4}  threads {snap['threads']:>3} "
        f"(python {snap['py_threads']:>2})  rss {rss:6.1f} MB, "
        f"{snap['rss_mb']:6.1f} MB after malloc_trim (anon {snap['anon_mb']:.1f}, "
        f"shmem {snap['shmem_mb']:.1f})  worker processes {snap['workers']}",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to soak")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random mix")
    parser.add_argument("--threads", type=int, default=4, help="callers at once")
    parser.add_argument("--hang-limit", type=float, default=120.0, help="seconds per operation")
    parser.add_argument("--settle", type=float, default=6.0, help="idle seconds before measuring")
    parser.add_argument("--only", help="comma-separated kinds to run (default: all)")
    parser.add_argument("--warm-up", type=float, default=20.0, help="seconds of soak before")
    args = parser.parse_args(argv)
    faulthandler.enable()
    soak = Soak(args)
    print(f"oxjob {oxjob.__version__} soak: {args.seconds:g} s, seed {args.seed}, "
          f"{args.threads} threads, numpy {np.__version__}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; {' '.join(sys.argv)}", flush=True)  # fmt: skip
    # The warm-up is a short soak of its own: engines, thread pools, spare segments and
    # the allocator's per-thread arenas reach the sizes the run keeps them at.
    soak.stop_at = time.monotonic() + args.warm_up
    soak.supervise(run_lanes(soak, "warm-up"), None, time.monotonic(), [])
    warm = (soak.wrong, soak.unexpected)
    for n_jobs in (2, 3):  # both thread pools the threading operations use
        Parallel(n_jobs=n_jobs, backend="threading")(delayed(square)(x) for x in range(10))
    settle(args.settle)
    start = snapshot(trimmed=True)
    show("start", start)
    soak.counts.clear()
    soak.calls = soak.ops = soak.wrong = soak.unexpected = 0
    began = time.monotonic()
    soak.stop_at = began + args.seconds
    samples = []
    soak.supervise(run_lanes(soak, "run"), start, began, samples, warm)
    elapsed = time.monotonic() - began
    settle(args.settle)
    end = snapshot(trimmed=True)
    for _ in range(20):  # a replaced worker or a spare segment may take a moment more
        if end["fds"] <= start["fds"] and end["threads"] <= start["threads"]:
            break
        time.sleep(0.5)
        end = snapshot(trimmed=True)
    return report(soak, start, end, elapsed, samples, warm)


def run_lanes(soak, salt):
    lanes = [
        threading.Thread(target=soak.lane, args=(k, salt), daemon=True)
        for k in range(soak.args.threads)
    ]
    for thread in lanes:
        thread.start()
    return lanes


def report(soak, start, end, elapsed, samples, warm):
    print(f"\n{soak.ops} operations, {soak.calls} oxjob calls in {elapsed:.0f} s: "
          f"{soak.calls / max(elapsed, 1e-9):.1f} calls/s, {soak.ops / max(elapsed, 1e-9):.2f} "
          "ops/s")  # fmt: skip
    width = max(len(k) for k in soak.counts) if soak.counts else 0
    for key in sorted(soak.counts):
        print(f"  {key:<{width}} {soak.counts[key]:>6}")
    print(f"wrong results/errors: {soak.wrong}, unexpected errors: {soak.unexpected} "
          f"(warm-up: {warm[0]} wrong, {warm[1]} unexpected)")  # fmt: skip
    if start is None:
        print("HANG during the warm-up")
        return 2
    show("start", start)
    if samples:
        for key in ("fds", "threads", "rss_mb"):
            values = [s[key] for s in samples]
            print(f"  during the run: {key} {min(values):g}..{max(values):g}")
    if end is None:
        print("HANG: the run was stopped")
        return 2
    show("end", end)
    bad = soak.wrong + soak.unexpected + warm[0] + warm[1]
    if end["fds"] > start["fds"]:
        bad += 1
        new = {fd: link for fd, link in end["links"].items() if start["links"].get(fd) != link}
        print(f"FAIL: file descriptors grew by {end['fds'] - start['fds']}: {new}")
    if end["threads"] > start["threads"]:
        bad += 1
        names = sorted(t.name for t in threading.enumerate())
        print(f"FAIL: threads grew by {end['threads'] - start['threads']}: {names}")
    if end["workers"] > start["workers"]:
        bad += 1
        print(f"FAIL: worker processes grew: {sorted(worker_children())}")
    grown = (end["objects"] - start["objects"]).most_common(8)
    print("objects that grew (type: count):", ", ".join(f"{t}: +{n}" for t, n in grown) or "none")
    print(f"rss: {end['untrimmed_mb'] - start['untrimmed_mb']:+.1f} MB from start to end, "
          f"{end['rss_mb'] - start['rss_mb']:+.1f} MB after malloc_trim")  # fmt: skip
    print("RESULT:", "FAIL" if bad else "OK")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
