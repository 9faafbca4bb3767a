"""A cache that cannot write (read-only, full, forbidden, names too long) warns with
CacheWarning, returns the result and leaves nothing behind, on every call. The
mount-based cases need root and mount permission and skip without them."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import oxjob
from oxjob.exceptions import CacheWarning


def twice(x):
    return np.full(x, 2.0)


def listing(root):
    return sorted(
        os.path.join(d, name) for d, dirs, files in os.walk(root) for name in [*dirs, *files]
    )


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs (``mount(options)``) at a fresh directory; unmounted afterwards."""
    mounted = []

    def mount(options):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def remount_read_only(where):
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)


def calls_warn_and_return(memory, root):
    f = memory.cache(twice)
    before = listing(root)
    for _ in range(2):  # the first call and a later one
        with pytest.warns(CacheWarning, match="Unable to cache to disk"):
            assert f(1000).sum() == 2000
        assert listing(root) == before, "something was left behind"


def test_read_only_cache_warns_and_returns(tmpfs):
    where = tmpfs("size=4m")
    oxjob.Memory(where, verbose=0).cache(abs)(-1)  # an existing cache, other function
    remount_read_only(where)
    calls_warn_and_return(oxjob.Memory(where, verbose=0), where)


def test_read_only_location_without_a_cache_warns_and_returns(tmpfs):
    where = tmpfs("size=4m")
    remount_read_only(where)
    with pytest.warns(CacheWarning, match="Unable to create the cache"):
        memory = oxjob.Memory(where, verbose=0)
    calls_warn_and_return(memory, where)


def test_full_disk_warns_and_leaves_nothing(tmpfs):
    where = tmpfs("size=256k")
    memory = oxjob.Memory(where, verbose=0)
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:  # fill the disk
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    calls_warn_and_return(memory, where)


def test_full_disk_after_the_function_code_is_written(tmpfs):
    where = tmpfs("size=256k")
    memory = oxjob.Memory(where, verbose=0)
    f = memory.cache(twice)
    f(1)
    (where / "filler").write_bytes(b"\0" * (256 * 1024 - 4096 * 8))
    before = listing(where)
    for _ in range(2):
        with pytest.warns(CacheWarning, match="No space left"):
            assert f(100_000).sum() == 200_000
        assert listing(where) == before


def test_forbidden_directory_warns_and_returns(tmp_path):
    cache = tmp_path / "cache"
    oxjob.Memory(cache, verbose=0)
    os.chmod(cache / "oxjob", 0o555)
    os.chmod(tmp_path, 0o755)
    script = textwrap.dedent(
        f"""
        import os, warnings, numpy as np, oxjob
        from oxjob.exceptions import CacheWarning
        def listing(root):
            return sorted(os.path.join(d, n) for d, ds, fs in os.walk(root) for n in ds + fs)
        before = listing({str(cache)!r})
        f = oxjob.Memory({str(cache)!r}, verbose=0).cache(np.square)
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert f(np.arange(3)).tolist() == [0, 1, 4]
            assert any(issubclass(w.category, CacheWarning) for w in caught), caught
            assert "Permission denied" in str(caught[0].message)
        assert listing({str(cache)!r}) == before
        print("ok")
        """
    )
    command = [sys.executable, "-c", script]
    if os.geteuid() == 0:
        # Root writes anywhere: drop the capability that lets it.
        drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps=-all"]
        if subprocess.run([*drop, "true"], capture_output=True).returncode != 0:
            pytest.skip("root cannot drop CAP_DAC_OVERRIDE here (setpriv)")
        command = drop + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_names_too_long_warn_and_return(tmp_path):
    deep = str(tmp_path)
    while len(deep) < 3800:
        deep = os.path.join(deep, "d" * 200)
    # 4040 characters: the cache's own files fit under PATH_MAX, the entries do not.
    deep = os.path.join(deep, "e" * (4040 - len(deep) - 1))
    os.makedirs(deep)
    calls_warn_and_return(oxjob.Memory(deep, verbose=0), deep)
