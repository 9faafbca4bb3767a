import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from oxjob import Parallel, delayed, shared

sys.path.insert(0, os.path.dirname(__file__))
import _helpers as h

BIG = 300_000  # 2.4 MB of float64: above the default max_nbytes (1 MiB)


def arrays():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((600, 700))
    structured = np.zeros(200_000, dtype=[("a", "<i4"), ("b", "<f8")])
    structured["a"] = np.arange(200_000)
    return [
        base,
        base[::2, 1::3],
        np.asfortranarray(base),
        base.astype(np.float32),
        (base > 0),
        np.arange(BIG, dtype=np.int16),
        structured,
        np.arange("2000-01-01", "2900-01-01", dtype="datetime64[D]"),
        np.array([{"x": 1}, "two", 3.0] * 1000, dtype=object),
        np.empty((0, 5)),
        np.array(7.5),
    ]


def test_arrays_round_trip_identically():
    originals = arrays()
    out = Parallel(n_jobs=2, batch_size=1)(delayed(h.identity)(a) for a in originals)
    for got, want in zip(out, originals):
        assert got.dtype == want.dtype and got.shape == want.shape
        if want.dtype.hasobject:
            assert got.tolist() == want.tolist()
        else:
            np.testing.assert_array_equal(got, want)
        assert got.flags.writeable


def test_results_are_writable_and_freed():
    out = Parallel(n_jobs=2)(delayed(h.big_result)(BIG, i) for i in range(4))
    assert all((o == i).all() and o.flags.writeable for i, o in enumerate(out))
    out[0][:] = -1
    assert (out[0] == -1).all()
    owner = out[0].base
    while getattr(owner, "base", None) is not None:
        owner = owner.base
    assert type(owner).__name__ in ("OwnedBuffer", "memoryview")
    del out, owner
    gc.collect()


def test_copy_on_write_by_default_read_only_on_request():
    data = np.zeros(BIG)
    assert Parallel(n_jobs=2)(delayed(h.write_first)(data, 5.0) for _ in range(2)) == [5.0, 5.0]
    assert data[0] == 0
    with pytest.raises(ValueError, match="read-only"):
        Parallel(n_jobs=2, mmap_mode="r")(delayed(h.write_first)(data, 5.0) for _ in range(2))
    assert Parallel(n_jobs=2)(delayed(h.write_first)(data, 1.0) for _ in range(2)) == [1.0, 1.0]


@pytest.fixture
def copies():
    """What the engine copied into segments from here on: a function returning
    ``{"copies", "copied_bytes", "new_segments"}`` since the test began (the engine's
    diagnostics, ``oxjob._workers.segments.counts()``, docs/engine.md)."""
    from oxjob._workers.segments import counts

    before = counts()
    return lambda: {key: value - before[key] for key, value in counts().items()}


def test_same_array_is_copied_once_per_call(copies):
    data = np.ones(BIG)
    Parallel(n_jobs=2)(delayed(h.square)(1) for _ in range(2))  # warm the pool
    out = Parallel(n_jobs=2, batch_size=1)(delayed(np.sum)(data) for _ in range(12))
    assert out == [float(BIG)] * 12
    assert copies()["copies"] == 1 and copies()["copied_bytes"] == data.nbytes


def test_segments_of_released_arguments_are_refilled(copies):
    Parallel(n_jobs=2)(delayed(h.square)(1) for _ in range(2))  # warm the pool
    arrays = [np.full(BIG, float(i)) for i in range(24)]
    keep = [i % 5 == 0 for i in range(24)]  # workers keep these: never refilled
    out = Parallel(n_jobs=2, batch_size=1)(
        delayed(h.sum_keeping_some)(a, k) for a, k in zip(arrays, keep)
    )
    assert out == [BIG * float(i) for i in range(24)]  # None: a kept array changed
    assert copies()["new_segments"] < 24  # the others' segments were refilled, not reallocated


def test_shared_arrays_are_written_in_place():
    out = shared.zeros(1000)
    Parallel(n_jobs=2)(delayed(h.fill_slice)(out, i * 100, (i + 1) * 100, i) for i in range(10))
    np.testing.assert_array_equal(out, np.repeat(np.arange(10.0), 100))
    grid = shared.full((40, 50), 1.0)
    view = grid[10:20, ::5]
    Parallel(n_jobs=2, mmap_mode="r")(delayed(np.multiply)(view, 3, out=view) for _ in range(1))
    assert (grid[10:20, ::5] == 3).all() and grid.sum() == 40 * 50 + 10 * 10 * 2
    info = Parallel(n_jobs=2)(delayed(h.shared_info)(grid[::2]) for _ in range(2))
    assert info == [(True, True)] * 2


def test_shared_constructors():
    proto = np.arange(12.0).reshape(3, 4)
    for array in (
        shared.empty((3, 4)),
        shared.zeros(5, dtype=np.int32),
        shared.full((2, 2), 7),
        shared.empty_like(proto),
        shared.zeros_like(proto),
        shared.as_shared(proto),
        shared.zeros(0),
    ):
        assert shared.is_shared(array)
    assert (shared.full((2, 2), 7) == 7).all()
    copy = shared.as_shared(proto)
    np.testing.assert_array_equal(copy, proto)
    assert shared.as_shared(copy) is copy
    assert not shared.is_shared(proto)
    with pytest.raises(ValueError, match="dtype=object"):
        shared.empty(3, dtype=object)


def test_workers_keep_shared_arrays_mapped_until_dropped_or_idle():
    nbytes = (3 << 20) + 5 * 4096  # a size no other segment of the test run has
    array = shared.full(nbytes // 8, 2.0)

    def mapped_in_workers():
        return Parallel(n_jobs=2)(delayed(h.maps_memfd_of)(nbytes) for _ in range(8))

    assert Parallel(n_jobs=2)(delayed(h.total)(array) for _ in range(4)) == [2.0 * array.size] * 4
    # Still mapped in a later call: the next call over `array` skips its page faults.
    assert any(mapped_in_workers())
    del array
    gc.collect()
    # The caller dropped it: workers are told before their next batch.
    assert not any(mapped_in_workers())

    array = shared.full(nbytes // 8, 3.0)
    Parallel(n_jobs=2)(delayed(h.total)(array) for _ in range(4))
    time.sleep(1.5)
    # Idle workers let go, even of arrays the caller still has.
    assert not any(mapped_in_workers())
    assert array[0] == 3.0


def test_shared_array_returned_by_a_worker_stays_shared():
    out = shared.zeros(10)
    back = Parallel(n_jobs=2)(delayed(h.identity)(out[2:5]) for _ in range(1))[0]
    back[:] = 9
    assert (out[2:5] == 9).all()


def _shmem_kb():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Shmem:"):
                return int(line.split()[1])
    return 0


def test_result_segments_are_reused_only_once_results_die():
    n = 2 * 2**20  # 16 MiB of float64: large enough for its segment to be reused
    before = _shmem_kb()
    with Parallel(n_jobs=2, batch_size=1) as parallel:
        alive = parallel(delayed(np.full)(n, float(i)) for i in range(4))
        for round in range(4):
            values = [100.0 * (round + 1) + i for i in range(4)]
            out = parallel(delayed(np.full)(n, v) for v in values)
            assert [(float(o.min()), float(o.max())) for o in out] == [(v, v) for v in values]
            del out  # their segments become spares, refilled by the next round
            gc.collect()
        # Results still alive are never handed out.
        assert [(float(a.min()), float(a.max())) for a in alive] == [(i, i) for i in range(4)]
    del alive
    gc.collect()
    deadline = time.monotonic() + 10  # unused spares are freed within seconds
    while time.monotonic() < deadline and _shmem_kb() - before > 20_000:
        time.sleep(0.2)
    assert _shmem_kb() - before < 20_000


LEAK_SCRIPT = textwrap.dedent(
    """
    import os, sys, time, numpy as np
    sys.path.insert(0, sys.argv[1])
    import _helpers as h
    from oxjob import Parallel, delayed, shared
    keep = shared.full(40_000_000, 1.0)                      # 320 MB shared
    data = np.ones(20_000_000)                               # 160 MB, sent as a segment
    Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(2))
    print("ready", flush=True)
    Parallel(n_jobs=2)(delayed(h.sleep_then)(data, 60) for _ in range(2))
    """
)


@pytest.mark.parametrize("victim", ["caller", "worker"])
def test_no_shared_memory_left_after_kill_minus_nine(tmp_path, victim):
    script = tmp_path / "leak.py"
    script.write_text(LEAK_SCRIPT)
    before = _shmem_kb()
    proc = subprocess.Popen(
        [sys.executable, str(script), os.path.dirname(__file__)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    assert _shmem_kb() - before > 300_000  # the segments exist while it runs
    workers = [p for p in _children_of(proc.pid)]
    if victim == "caller":
        proc.send_signal(signal.SIGKILL)
    else:
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and (_shmem_kb() - before > 50_000 or _any_alive(workers)):
        time.sleep(0.1)
    assert not _any_alive(workers)
    assert _shmem_kb() - before < 50_000


def _children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


def _any_alive(pids):
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            pass
    return False


def test_inputs_sent_by_a_recent_call_are_not_copied_again(copies):
    arrays = [np.full(BIG, float(i)) for i in range(4)]
    Parallel(n_jobs=2)(delayed(h.square)(1) for _ in range(2))  # warm the pool
    first = Parallel(n_jobs=2)(delayed(np.sum)(a) for a in arrays)
    assert copies()["copies"] == 4
    again = Parallel(n_jobs=2)(delayed(np.sum)(a) for a in arrays)
    assert again == first and copies()["copies"] == 4  # same bytes: the same segments
    arrays[2][7] = 1000.0  # changed in place: its bytes differ, so it is sent again
    changed = Parallel(n_jobs=2)(delayed(np.sum)(a) for a in arrays)
    assert changed[2] == first[2] + 1000.0 - 2.0 and changed[:2] == first[:2]
    assert copies()["copies"] == 5


def test_inputs_are_sent_again_where_workers_can_write_through(copies):
    data = np.zeros(BIG)
    Parallel(n_jobs=2)(delayed(h.square)(1) for _ in range(2))
    for expected in range(1, 4):
        out = Parallel(n_jobs=2, mmap_mode="r+")(
            delayed(h.write_first)(data, 5.0) for _ in range(1)
        )
        assert out == [5.0] and data[0] == 0.0
        assert copies()["copies"] == expected


@pytest.mark.parametrize("mode", ["c", "r"])
def test_workers_keep_plain_inputs_mapped_between_calls_until_idle(mode):
    nbytes = (3 << 20) + (7 if mode == "c" else 9) * 4096  # no other segment has it
    data = np.full(nbytes // 8, 2.0)

    def mapped_in_workers():
        calls = (delayed(h.maps_memfd_of)(nbytes) for _ in range(8))
        return Parallel(n_jobs=2, mmap_mode=mode)(calls)

    out = Parallel(n_jobs=2, mmap_mode=mode)(delayed(h.total)(data) for _ in range(4))
    assert out == [2.0 * data.size] * 4
    # Still mapped after the call: the next call with the same bytes skips mapping them.
    assert any(mapped_in_workers())
    time.sleep(1.5)
    assert not any(mapped_in_workers())  # idle workers let go


def test_inputs_the_caller_dropped_are_let_go_of_by_busy_workers(monkeypatch):
    from oxjob._workers import segments

    nbytes = (3 << 20) + 11 * 4096
    data = np.full(nbytes // 8, 1.0)
    Parallel(n_jobs=2)(delayed(h.total)(data) for _ in range(4))
    monkeypatch.setattr(segments, "RECENT_BYTES", 0)  # the next call's inputs evict it
    other = np.ones(BIG)
    Parallel(n_jobs=2)(delayed(h.total)(other) for _ in range(4))
    del data
    gc.collect()
    assert not any(Parallel(n_jobs=2)(delayed(h.maps_memfd_of)(nbytes) for _ in range(8)))


def test_a_written_copy_on_write_input_is_not_seen_by_later_tasks():
    data = np.zeros(BIG)
    for _ in range(3):
        out = Parallel(n_jobs=2, batch_size=1)(
            delayed(h.read_then_write)(data, 5.0) for _ in range(8)
        )
        assert out == [0.0] * 8
    assert data[0] == 0.0


def test_an_input_kept_by_a_task_is_not_shared_with_later_tasks():
    data = np.zeros(BIG)
    Parallel(n_jobs=2, batch_size=1)(delayed(h.keep)(data) for _ in range(4))
    out = Parallel(n_jobs=2, batch_size=1)(
        delayed(h.scribble_on_kept_then_read)(data) for _ in range(4)
    )
    assert out == [0.0] * 4


def test_spare_result_segments_stay_mapped_in_workers_until_the_caller_frees_them():
    nbytes = (9 << 20) + 13 * 4096  # above the spares' 8 MiB floor; no other segment has it
    n = nbytes // 8

    def mapped_in_workers():
        return any(Parallel(n_jobs=2)(delayed(h.maps_memfd_of)(nbytes) for _ in range(8)))

    with Parallel(n_jobs=2, batch_size=1) as parallel:
        for round in range(3):
            out = parallel(delayed(h.big_result)(n, 10.0 * round + i) for i in range(4))
            assert [(float(o[0]), float(o[-1])) for o in out] == [
                (10.0 * round + i,) * 2 for i in range(4)
            ]
            del out  # spares now, refilled through the workers' mappings next round
            gc.collect()
    # The workers still map the result segments they filled: refilling one is a memcpy.
    assert mapped_in_workers()
    # The caller frees unused spares after a second; busy workers (never a second idle)
    # are told, and let go of them too.
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        Parallel(n_jobs=2)(delayed(h.square)(i) for i in range(4))
        time.sleep(0.05)
    assert not mapped_in_workers()
