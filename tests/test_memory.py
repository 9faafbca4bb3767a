import asyncio
import datetime
import logging
import os
import pathlib
import pickle
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import oxjob
from oxjob.exceptions import CacheWarning
from oxjob.memory import MemorizedFunc, NotMemorizedFunc, NotMemorizedResult
from oxjob.store import StoreBackendBase

CALLS: list = []


def counted(x, y=2, verbose=False):
    CALLS.append((x, y))
    return x * y


@pytest.fixture(autouse=True)
def reset_calls():
    CALLS.clear()


@pytest.fixture
def memory(tmp_path):
    return oxjob.Memory(tmp_path, verbose=0)


def entries(memory):
    return memory.store_backend.get_items()


def test_results_are_cached_by_bound_arguments(memory):
    f = memory.cache(counted)
    assert f(3) == 6
    assert f(3) == 6
    assert f(x=3) == 6
    assert f(3, y=2) == 6
    assert f(3, 2) == 6
    assert CALLS == [(3, 2)]
    assert f(3, y=4) == 12
    assert CALLS == [(3, 2), (3, 4)]
    assert len(entries(memory)) == 2


def test_callables_without_a_signature_are_cached(memory):
    # inspect.signature(max) raises ValueError (so do ufuncs with numpy < 2.3); joblib
    # caches them, keyed by the positional and keyword arguments as given.
    cached_max = memory.cache(max)
    assert cached_max(1, 5) == 5 and cached_max([3, 4]) == 4
    assert cached_max.check_call_in_cache(1, 5)
    assert not cached_max.check_call_in_cache(5, 1)
    assert cached_max(1, 5) == 5 and len(entries(memory)) == 2
    cached_add = memory.cache(np.add)
    assert cached_add(np.arange(3), 1).tolist() == [1, 2, 3]
    assert cached_add.check_call_in_cache(np.arange(3), 1)


def test_decorator_forms_and_ignore(memory):
    @memory.cache
    def plain(x):
        CALLS.append(x)
        return x

    @memory.cache(ignore=["verbose"])
    def with_options(x, verbose=False):
        CALLS.append(x)
        return x

    plain(1), plain(1)
    with_options(2, verbose=True), with_options(2, verbose=False)
    assert CALLS == [1, 2]
    assert isinstance(plain, MemorizedFunc) and plain.__name__ == "plain"
    with pytest.raises(ValueError, match="argument 'nope' is not defined"):
        memory.cache(counted, ignore=["nope"])
    with pytest.raises(ValueError, match="must be a list"):
        memory.cache(counted, ignore="x")


def test_location_none_passes_through():
    memory = oxjob.Memory(None)
    f = memory.cache(counted)
    assert isinstance(f, NotMemorizedFunc)
    assert f(2) == 4 and f(2) == 4
    assert CALLS == [(2, 2), (2, 2)]
    assert f.call(2) == (4, {})
    assert not f.check_call_in_cache(2)
    result = f.call_and_shelve(5)
    assert isinstance(result, NotMemorizedResult) and result.get() == 10
    assert memory.eval(counted, 1) == 2


def test_call_check_and_clear(memory):
    f = memory.cache(counted)
    assert not f.check_call_in_cache(1)
    output, metadata = f.call(1)
    assert output == 2 and metadata["input_args"] == {"x": "1", "y": "2", "verbose": "False"}
    assert set(metadata) == {"duration", "input_args", "time"}
    assert f.check_call_in_cache(1) and f.check_call_in_cache(x=1)
    f.call(1)
    assert len(CALLS) == 2  # call() always runs
    f.clear()
    assert not f.check_call_in_cache(1)
    f(1)
    memory.clear(warn=False)
    assert entries(memory) == []


def test_call_and_shelve_and_pickling(memory):
    f = memory.cache(counted)
    result = f.call_and_shelve(4)
    assert isinstance(result, oxjob.MemorizedResult)
    assert result.get() == 8
    again = pickle.loads(pickle.dumps(result))
    assert again.get() == 8
    assert "MemorizedResult(location=" in repr(result)
    shelved = f.call_and_shelve(4)  # served from the cache
    assert CALLS == [(4, 2)] and shelved.args_id == result.args_id
    result.clear()
    with pytest.raises(KeyError, match="Non-existing item"):
        again.get()
    g = pickle.loads(pickle.dumps(f))
    assert g(5) == 10 and f(5) == 10
    assert CALLS == [(4, 2), (5, 2)]
    memory_copy = pickle.loads(pickle.dumps(memory))
    assert memory_copy.cache(counted)(5) == 10


def test_numpy_results_and_mmap(tmp_path):
    memory = oxjob.Memory(tmp_path, mmap_mode="r", verbose=0)

    @memory.cache
    def make(n):
        return {"a": np.arange(n, dtype=np.float64)}

    first = make(100_000)
    assert isinstance(first["a"], np.memmap)  # as joblib: the first call maps the entry too
    second = make(100_000)
    assert isinstance(second["a"], np.memmap) and not second["a"].flags.writeable
    np.testing.assert_array_equal(first["a"], second["a"])


def test_shelved_result_rebuilt_from_its_location_keeps_mmap_mode(memory):
    shelved = memory.cache(np.arange).call_and_shelve(200_000)
    rebuilt = oxjob.MemorizedResult(shelved.store_backend.location, shelved._call_id, mmap_mode="r")
    assert rebuilt.store_backend.mmap_mode == "r"
    assert isinstance(rebuilt.get(), np.memmap)


def test_array_arguments_are_hashed(memory):
    f = memory.cache(np.sum)
    a = np.arange(1000)
    assert f(a) == f(a.copy()) == a.sum()
    b = a.copy()
    b[5] = -1
    assert f(b) == b.sum()
    assert len(entries(memory)) == 2


def test_compressed_cache(tmp_path):
    memory = oxjob.Memory(tmp_path, compress=3, verbose=0)
    f = memory.cache(np.zeros)
    assert f(1_000_000).sum() == 0
    assert f(1_000_000).sum() == 0
    (item,) = entries(memory)
    assert item.size < 100_000


def test_code_change_invalidates_with_joblib_warning(tmp_path, caplog):
    module = tmp_path / "changing_mod.py"
    module.write_text("def f(x):\n    return x + 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import changing_mod

        memory = oxjob.Memory(tmp_path / "cache", verbose=1)
        assert memory.cache(changing_mod.f)(1) == 2
        module.write_text("def f(x):\n    return x + 100\n")
        import importlib

        importlib.reload(changing_mod)
        with caplog.at_level(logging.WARNING, logger="oxjob"):
            assert memory.cache(changing_mod.f)(1) == 101
        assert "Clearing function cache identified by changing_mod/f" in caplog.text
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("changing_mod", None)


def test_verbose_messages(memory, tmp_path, capsys):
    verbose = oxjob.Memory(tmp_path / "v", verbose=1)
    f = verbose.cache(counted)
    f(7)
    out = capsys.readouterr().out
    assert "[Memory] Calling " in out and "counted(7)" in out
    assert out.strip().endswith("counted - 0.0s, 0.0min")
    f(7)
    assert capsys.readouterr().out == ""


def test_expires_after_and_validation_callback(memory):
    f = memory.cache(counted, cache_validation_callback=oxjob.expires_after(seconds=0.2))
    f(1), f(1)
    assert len(CALLS) == 1
    time.sleep(0.3)
    f(1)
    assert len(CALLS) == 2
    never = memory.cache(counted, cache_validation_callback=lambda metadata: False)
    never(9), never(9)
    assert CALLS[-2:] == [(9, 2), (9, 2)]
    with pytest.raises(ValueError, match="needs to be callable"):
        memory.cache(counted, cache_validation_callback=3)


def test_coroutine_functions(memory):
    @memory.cache
    async def slow_double(x):
        CALLS.append(x)
        await asyncio.sleep(0)
        return 2 * x

    async def run():
        return [await slow_double(4), await slow_double(4)]

    assert asyncio.run(run()) == [8, 8]
    assert CALLS == [4]


class Scaler:
    def __init__(self, k):
        self.k = k

    def scale(self, x):
        CALLS.append(x)
        return self.k * x


def test_methods_include_the_instance(memory):
    assert memory.cache(Scaler(2).scale)(3) == 6
    assert memory.cache(Scaler(5).scale)(3) == 15


def test_eval(memory):
    assert memory.eval(counted, 6) == 12
    assert memory.eval(counted, 6) == 12
    assert CALLS == [(6, 2)]


def test_bounds_are_enforced_after_writes_lru_first(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0, items_limit=2)
    f = memory.cache(counted)
    f(1)
    f(2)
    time.sleep(0.05)
    f(1)  # hit: 1 is now more recent than 2
    time.sleep(0.05)
    f(3)  # exceeds the limit: 2 goes
    assert f.check_call_in_cache(1) and f.check_call_in_cache(3)
    assert not f.check_call_in_cache(2)


def test_reduce_size_by_bytes_items_and_age(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    f = memory.cache(np.ones)
    for n in (10_000, 20_000, 30_000):
        f(n)
        time.sleep(0.02)
    memory.reduce_size(bytes_limit="300K")
    assert [f.check_call_in_cache(n) for n in (10_000, 20_000, 30_000)] == [False, False, True]
    memory.reduce_size(items_limit=0)
    assert entries(memory) == []
    f(5)
    memory.reduce_size(age_limit=datetime.timedelta(days=1))
    assert len(entries(memory)) == 1
    time.sleep(0.05)
    memory.reduce_size(age_limit=datetime.timedelta(seconds=0.01))
    assert entries(memory) == []
    with pytest.raises(ValueError, match="bytes_limit"):
        memory.reduce_size(bytes_limit="lots")
    with pytest.raises(ValueError, match="age_limit"):
        memory.reduce_size(age_limit=-1)


def test_unpicklable_result_warns_and_returns(memory):
    f = memory.cache(lambda x: lambda: x)
    with pytest.warns(CacheWarning, match="failed to pickle output"):
        result = f(1)
    assert result() == 1
    assert entries(memory) == []
    leftovers = [
        p for p in pathlib.Path(memory.store_backend.location).rglob("*") if ".tmp" in p.name
    ]
    assert leftovers == []


def test_corrupt_entry_is_recomputed_and_replaced(memory):
    f = memory.cache(counted)
    f(11)
    (item,) = entries(memory)
    output = pathlib.Path(item.path) / "output.oxjob"
    data = bytearray(output.read_bytes())
    data[len(data) // 2] ^= 0x20
    output.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="recomputed"):
        assert f(11) == 22
    assert CALLS == [(11, 2), (11, 2)]
    assert f(11) == 22
    assert len(CALLS) == 2  # the replacement is valid


def test_read_only_location_warns_and_returns(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    memory = oxjob.Memory(tmp_path, verbose=0)
    os.chmod(memory.store_backend.location, 0o500)
    try:
        with pytest.warns(CacheWarning):
            assert memory.cache(counted)(1) == 2
    finally:
        os.chmod(memory.store_backend.location, 0o700)


def test_full_disk_leaves_no_partial_entry(memory, monkeypatch):
    f = memory.cache(counted)
    f(0)  # writes the function code

    class FullStore:
        def __init__(self, real):
            self.real = real

        def put(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(memory.store_backend, "_store", FullStore(memory.store_backend._store))
    with pytest.warns(CacheWarning, match="No space left"):
        assert f(1) == 2
    monkeypatch.undo()
    assert not f.check_call_in_cache(1)


def test_unwritable_store_directory_leaves_nothing(tmp_path):
    # A store whose entry directory cannot be created: the error surfaces as a warning.
    memory = oxjob.Memory(tmp_path, verbose=0)
    f = memory.cache(counted)
    f(0)
    blocker = pathlib.Path(memory.store_backend.location) / f.func_id
    for child in blocker.iterdir():
        if child.is_dir():
            import shutil

            shutil.rmtree(child)
    (blocker / "func_code.py").unlink()
    blocker.rmdir()
    blocker.write_text("a file where a directory should be")
    with pytest.warns(CacheWarning):
        assert f(3) == 6


def test_register_store_backend():
    class DictStore(StoreBackendBase):
        def configure(self, location, verbose=0, backend_options=None):
            self.location, self.items, self.code = location, {}, {}

        def load_item(self, call_id, mmap_mode=None):
            return self.items[tuple(call_id)][0]

        def dump_item(self, call_id, item, metadata):
            self.items[tuple(call_id)] = (item, metadata)

        def contains_item(self, call_id):
            return tuple(call_id) in self.items

        def get_metadata(self, call_id):
            return self.items[tuple(call_id)][1]

        def clear_item(self, call_id):
            self.items.pop(tuple(call_id), None)

        def clear_path(self, path):
            self.items = {k: v for k, v in self.items.items() if k[0] != path}

        def store_cached_func_code(self, path, func_code):
            self.code[path] = func_code

        def get_cached_func_code(self, path):
            return self.code[path]

        def get_items(self):
            return list(self.items)

        def reduce_size(self, bytes_limit=None, items_limit=None, age_limit=None):
            return []

        def clear(self):
            self.items.clear()

    oxjob.register_store_backend("dict", DictStore)
    memory = oxjob.Memory("anywhere", backend="dict", verbose=0)
    f = memory.cache(counted)
    assert f(2) == 4 and f(2) == 4 and CALLS == [(2, 2)]
    with pytest.raises(ValueError, match="should inherit StoreBackendBase"):
        oxjob.register_store_backend("bad", dict)
    with pytest.raises(ValueError, match="should be a string"):
        oxjob.register_store_backend(3, DictStore)
    with pytest.raises(TypeError, match="Unknown location"):
        oxjob.Memory("x", backend="nope")


RACE_SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np, oxjob
    memory = oxjob.Memory(sys.argv[1], verbose=0)
    def payload(seed):
        time.sleep(0.05)
        return np.full(2_000_000, seed, dtype=np.float64)
    f = memory.cache(payload)
    start = float(sys.argv[2])
    while time.time() < start:
        pass
    out = f(7)
    assert out.shape == (2_000_000,) and (out == 7).all()
    print("ok")
    """
)


def test_eight_processes_race_on_one_key(tmp_path):
    script = tmp_path / "race.py"
    script.write_text(RACE_SCRIPT)
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)
    (item,) = memory.store_backend.get_items()
    assert not [p for p in pathlib.Path(item.path).parent.iterdir() if p.name.startswith(".")]


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np, oxjob
    memory = oxjob.Memory(sys.argv[1], verbose=0)
    f = memory.cache(lambda n: np.ones(n))
    print("ready", flush=True)
    f(300_000_000)
    """
)


def test_kill_during_write_leaves_no_entry(tmp_path):
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "cache")], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    location = tmp_path / "cache" / "oxjob"
    deadline = time.time() + 30
    while time.time() < deadline and not list(location.rglob(".tmp-*/output.oxjob")):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)
    assert memory.store_backend.get_items() == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = memory.cache(np.ones)
        assert f(10).sum() == 10 and f(10).sum() == 10


def test_cached_function_inside_parallel(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    f = memory.cache(counted)
    results = oxjob.Parallel(n_jobs=2)(oxjob.delayed(f)(i) for i in range(6))
    assert results == [2 * i for i in range(6)]
    assert len(entries(memory)) == 6
    assert oxjob.Parallel(n_jobs=2)(oxjob.delayed(f)(i) for i in range(6)) == results
    assert CALLS == []  # every call ran in a worker


def parallel_inside(n):
    return sum(oxjob.Parallel(n_jobs=2)(oxjob.delayed(abs)(-i) for i in range(n)))


def test_parallel_inside_a_cached_function(memory):
    f = memory.cache(parallel_inside)
    assert f(10) == 45 and f(10) == 45
    assert len(entries(memory)) == 1


def test_functions_without_source_keep_their_entries_across_processes(tmp_path):
    code = (
        "import numpy as np, oxjob, warnings; warnings.simplefilter('error');"
        f"m = oxjob.Memory({str(tmp_path)!r}, verbose=0); f = m.cache(np.linalg.norm);"
        "print(f.check_call_in_cache(np.ones(3))); f(np.ones(3))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[-1].stderr
    assert [r.stdout.strip() for r in runs] == ["False", "True"]
