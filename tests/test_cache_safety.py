"""The cache never serves a stale result, never writes through what it did not make,
never leaves its location, and never deletes what is not its own."""

import os
import subprocess
import sys

import numpy as np
import pytest

import oxjob

CALLS: list = []


def bump(x):
    CALLS.append(x)
    return x + 100 * len(CALLS)


@pytest.fixture(autouse=True)
def _reset():
    CALLS.clear()


def files_under(root):
    return sorted(
        os.path.relpath(os.path.join(d, name), root)
        for d, dirs, files in os.walk(root)
        for name in [*dirs, *files]
    )


# ---- call() replaces the entry --------------------------------------------------------


def test_call_replaces_the_entry(tmp_path):
    g = oxjob.Memory(tmp_path, verbose=0).cache(bump)
    assert g(10) == 110
    output, _ = g.call(10)
    assert output == 210
    assert g(10) == 210  # the next hit returns what call() returned
    assert g.call_and_shelve(10).get() == 210
    assert CALLS == [10, 10]
    assert len(g.store_backend.get_items()) == 1
    leftovers = [n for n in files_under(tmp_path) if os.path.basename(n).startswith(".t")]
    assert leftovers == [], "no work or trash directory left"


def filled(n):
    CALLS.append(n)
    return np.full(n, len(CALLS))


def test_call_replaces_a_memory_mapped_entry_whose_map_lives_on(tmp_path):
    g = oxjob.Memory(tmp_path, verbose=0, mmap_mode="r").cache(filled)
    first = g(1000)
    assert isinstance(first, np.memmap)
    g.call(1000)
    assert first.sum() == 1000  # the replaced entry's map still reads its data
    assert g(1000).sum() == 2000


# ---- cache clear / prune --------------------------------------------------------------


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "oxjob", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_refuses_a_folder_that_is_not_a_cache(tmp_path):
    checkout = tmp_path / "oxjob"  # a checkout that happens to be named oxjob
    (checkout / "src").mkdir(parents=True)
    (checkout / "README.md").write_text("mine")
    (checkout / "src" / "main.py").write_text("print('mine')")
    (checkout / "data").mkdir()
    (checkout / "data" / "output.oxjob").write_text("not an entry")
    before = files_under(checkout)
    for action in (["clear"], ["prune", "--items-limit", "0"]):
        for where in (checkout, tmp_path):
            result = run_cli("cache", action[0], str(where), *action[1:])
            assert result.returncode == 1, result
            assert "no oxjob cache" in result.stderr and result.stdout == ""
    assert files_under(checkout) == before


def test_cli_clear_removes_only_entries_and_counts_them(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    f = memory.cache(bump)
    for x in range(3):
        f(x)
    root = tmp_path / "oxjob"
    func_dir = root / f.func_id
    (func_dir / "notes.txt").write_text("mine")
    (root / "my-data").mkdir()
    (root / "my-data" / "keep.csv").write_text("1,2")
    result = run_cli("cache", "clear", str(tmp_path))
    assert result.returncode == 0 and "removed 3 entries" in result.stdout
    assert (func_dir / "notes.txt").read_text() == "mine"
    assert (root / "my-data" / "keep.csv").read_text() == "1,2"
    assert memory.store_backend.get_items() == []
    assert not (func_dir / "func_code.py").exists()
    f(5)
    result = run_cli("cache", "prune", str(tmp_path), "--items-limit", "0")
    assert result.returncode == 0 and "removed 1 entries" in result.stdout
    assert (func_dir / "notes.txt").exists() and (root / "my-data" / "keep.csv").exists()


def test_memory_clear_leaves_foreign_files(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    memory.cache(bump)(1)
    (tmp_path / "oxjob" / "mine.txt").write_text("mine")
    memory.clear(warn=False)
    assert (tmp_path / "oxjob" / "mine.txt").read_text() == "mine"
    assert memory.store_backend.get_items() == []


# ---- temporary files --------------------------------------------------------------------


def plant(directory, names, victim):
    for name in names:
        link = os.path.join(directory, name)
        if not os.path.lexists(link):
            os.symlink(victim, link)


def test_func_code_is_never_written_through_a_planted_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)
    f = memory.cache(bump)
    func_dir = os.path.join(memory.store_backend.location, f.func_id)
    os.makedirs(func_dir)
    pid = os.getpid()
    # The names oxjob used to write: func_code.py.<pid>.tmp, a .tmp- work directory.
    plant(func_dir, [f"func_code.py.{pid}.tmp", f"func_code.py.{pid + 1}.tmp"], victim)
    plant(func_dir, [f".tmp-{k}-{pid}-{n}" for k in ("x",) for n in range(4)], victim)
    assert f(1) == 101 and f(1) == 101
    assert victim.read_text() == "precious"
    assert open(os.path.join(func_dir, "func_code.py")).read().startswith("# first line:")


def test_cache_tags_are_never_written_through_planted_symlinks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "cache" / "oxjob").mkdir(parents=True)
    plant(tmp_path / "cache", [".gitignore"], victim)
    plant(tmp_path / "cache" / "oxjob", ["CACHEDIR.TAG"], tmp_path / "absent")
    oxjob.Memory(tmp_path / "cache", verbose=0).cache(bump)(1)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "absent").exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the Rust path (raw container)
        {"compress": 3},  # the Rust path, compressed
        {"compress": ("gzip", 3)},  # a stream, written from Python
        {"format": "joblib"},
        {"format": "joblib", "compress": 3},
    ],
)
def test_dump_never_writes_through_a_planted_symlink(tmp_path, kwargs):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = tmp_path / "out.bin"
    pid = os.getpid()
    names = [f".out.bin.{pid}.oxjob-tmp"] + [f".out.bin.{pid}.{n}.oxjob-tmp" for n in range(64)]
    plant(tmp_path, names, victim)
    oxjob.dump({"a": np.arange(100)}, target, **kwargs)
    assert victim.read_text() == "precious"
    assert oxjob.load(target)["a"].sum() == 4950
    left = [n for n in os.listdir(tmp_path) if n.endswith(".oxjob-tmp") and n not in names]
    assert left == []


# ---- names stay under the location ------------------------------------------------------


def renamed(qualname=None, module=None):
    def f(x):
        return x + 1

    if qualname is not None:
        f.__qualname__ = qualname
    if module is not None:
        f.__module__ = module
    return f


def check_stays_inside(tmp_path, func):
    outside_before = set(os.listdir(tmp_path))
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)
    g = memory.cache(func)
    assert g(1) == 2 and g(1) == 2
    assert g.check_call_in_cache(1)
    assert set(os.listdir(tmp_path)) == outside_before | {"cache"}
    location = os.path.realpath(memory.store_backend.location)
    for relative in files_under(tmp_path / "cache"):
        real = os.path.realpath(tmp_path / "cache" / relative)
        assert real.startswith(str(tmp_path / "cache")), relative
    (item,) = [i for i in memory.store_backend.get_items() if g.func_id in i.path]
    assert os.path.realpath(item.path).startswith(location + os.sep)
    for part in g.func_id.split("/"):
        assert part not in ("", ".", "..") and len(part.encode()) <= 255
    return g


def test_name_with_parent_references(tmp_path):
    g = check_stays_inside(tmp_path, renamed(qualname="../../../x"))
    assert ".." not in g.func_id.split("/")


def test_name_with_slashes(tmp_path):
    check_stays_inside(tmp_path, renamed(qualname="a/b/c", module="m/n"))


def test_absolute_module(tmp_path):
    escape = str(tmp_path / "escaped")
    check_stays_inside(tmp_path, renamed(module=escape))
    assert not os.path.exists(escape)


def test_name_of_300_characters(tmp_path):
    g = check_stays_inside(tmp_path, renamed(qualname="q" * 300, module="m" * 300))
    other = check_stays_inside(tmp_path, renamed(qualname="q" * 299 + "r", module="m" * 300))
    assert g.func_id != other.func_id  # cut names stay apart


def test_unicode_names(tmp_path):
    g = check_stays_inside(tmp_path, renamed(qualname="café.\udcff\u202e", module="модуль"))
    assert g.func_id.isascii()


def test_ordinary_names_keep_joblibs_layout(tmp_path):
    memory = oxjob.Memory(tmp_path, verbose=0)
    assert memory.cache(bump).func_id == "test_cache_safety/bump"
    assert memory.cache(renamed()).func_id == "test_cache_safety/renamed.-locals-.f"
    assert memory.cache(np.square).func_id == "numpy/square"
