"""What Memory writes on disk: never group/other writable; joblib's .gitignore."""

import os
import stat

import numpy as np
import pytest

import oxjob


@pytest.fixture
def open_umask():
    old = os.umask(0)  # the worst case: every file would be world-writable
    try:
        yield
    finally:
        os.umask(old)


def test_cache_is_never_group_or_other_writable(tmp_path, open_umask):
    memory = oxjob.Memory(tmp_path / "cache", verbose=0)

    @memory.cache
    def f(x):
        return {"x": np.arange(x)}

    f(10)
    f(10_000)
    found = 0
    for root, dirs, files in os.walk(tmp_path / "cache"):
        for name in [*dirs, *files]:
            mode = os.stat(os.path.join(root, name)).st_mode
            assert not mode & (stat.S_IWGRP | stat.S_IWOTH), (os.path.join(root, name), oct(mode))
            found += 1
    assert found > 5
    assert os.umask(0) == 0  # the caller's umask is restored


def test_gitignore_in_the_cache_directory(tmp_path):
    oxjob.Memory(tmp_path / "cache", verbose=0).cache(abs)(-1)
    assert (tmp_path / "cache" / ".gitignore").read_text().splitlines()[1:] == ["*"]
