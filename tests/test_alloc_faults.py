"""Allocation faults and hostile sizes: never an abort, always the right error.

Each scenario runs in a fresh interpreter, because the failure being tested used to
abort the process (Rust aborts when an allocation fails), and because the address
space limit (``RLIMIT_AS``) must not reach the test runner. The scripts count their
open descriptors (``/proc/self/fd``) before and after, so a leaked file, memfd or
socket fails the test too.
"""

import struct
import subprocess
import sys
import textwrap

import pytest

import oxjob
from oxjob.exceptions import CorruptFileError

xxhash = pytest.importorskip("xxhash")

MAGIC = b"\x93OXJOB\r\n"
END_MAGIC = b"OXJOBEND"
HEADER_SEED = 0x5EC7_0000_0000_0000
ZSTD, RAW = 1, 0
CHUNK = 2 << 20

# What every script starts with: an exception catcher that prints the outcome, a
# descriptor count, and a way to leave `headroom` bytes of address space.
PRELUDE = textwrap.dedent(
    """
    import os, resource, sys

    def fds():
        return len(os.listdir("/proc/self/fd"))

    def limit(headroom):
        with open("/proc/self/status") as status:
            vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.RLIM_INFINITY))

    def outcome(call):
        try:
            call()
        except BaseException as exc:
            return type(exc).__name__ + ": " + str(exc)[:300]
        return "ok"
    """
)


def run(script: str, *args: str, timeout: float = 120) -> str:
    """Run ``script`` (after the prelude) and return its stdout; it must exit cleanly."""
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


# ---- crafted containers with valid checksums ----------------------------------------------


def _sum(data: bytes, seed: int) -> int:
    return xxhash.xxh3_64_intdigest(data, seed=seed)


def _fixed(kind: int, codec: int, chunk_size: int, raw_len: int, padding: int = 0) -> bytes:
    return struct.pack("<BBHIQII", kind, codec, 0, chunk_size, raw_len, padding, 0)


def _compressed_section(index, kind, codec, raw_len, chunks, chunk_size=CHUNK) -> bytes:
    """A compressed section whose header and chunks all carry valid checksums.

    ``chunks`` yields the stored bytes of each chunk, whatever they decode to."""
    fixed = _fixed(kind, codec, chunk_size, raw_len)
    out = [fixed, struct.pack("<Q", _sum(fixed, HEADER_SEED ^ index))]
    for c, stored in enumerate(chunks):
        out.append(struct.pack("<IQ", len(stored), _sum(stored, (index << 40) ^ c)))
        out.append(stored)
    return b"".join(out)


def _raw_section(index, kind, data: bytes, offset: int, raw_len=None) -> bytes:
    """An uncompressed section starting at ``offset``, claiming ``raw_len`` bytes."""
    raw_len = len(data) if raw_len is None else raw_len
    pieces = [data[i : i + (4 << 20)] for i in range(0, len(data), 4 << 20)]
    table = b"".join(struct.pack("<Q", _sum(p, (index << 40) ^ c)) for c, p in enumerate(pieces))
    header_end = offset + 24 + len(table) + 8
    padding = (4096 - header_end % 4096) % 4096 if kind == 2 else 0
    fixed = _fixed(kind, RAW, 4 << 20, raw_len, padding)
    checksum = struct.pack("<Q", _sum(fixed + table, HEADER_SEED ^ index))
    return fixed + table + checksum + b"\0" * padding + data


def _container(sections: list[bytes], n_sections=None) -> bytes:
    head = MAGIC + struct.pack("<HHIQ", 1, 0, n_sections or len(sections), 0)
    body = head + struct.pack("<Q", _sum(head, 0)) + b"".join(sections)
    return body + END_MAGIC + struct.pack("<Q", len(body) + 16)


def _zstd_zeros(n: int) -> bytes:
    """A zstd frame of RLE blocks (4 bytes per 128 KiB) that decodes to ``n`` zeros."""
    frame = [b"\x28\xb5\x2f\xfd", b"\x00", b"\x38"]  # magic, no content size, 128 KiB window
    while n:
        size = min(n, 128 << 10)
        n -= size
        header = (1 if n == 0 else 0) | (1 << 1) | (size << 3)  # last?, RLE, size
        frame.append(header.to_bytes(3, "little") + b"\x00")
    return b"".join(frame)


def _stream() -> bytes:
    """A pickle stream whose value is its one out-of-band buffer."""
    import pickle

    buffer = pickle.PickleBuffer(bytearray(1))
    return pickle.dumps(buffer, protocol=5, buffer_callback=lambda _: False)


def _zstd_bomb(raw_len: int) -> bytes:
    """A container of one buffer of ``raw_len`` zeros, as zstd chunks of honest RLE."""
    pickle_section = _raw_section(0, 1, _stream(), 32)
    n_chunks, last = divmod(raw_len, CHUNK)
    full = _zstd_zeros(CHUNK)
    chunks = (full if c < n_chunks else _zstd_zeros(last) for c in range(n_chunks + (last > 0)))
    return _container([pickle_section, _compressed_section(1, 2, ZSTD, raw_len, chunks)])


def test_crafted_zstd_container_decodes_as_written(path):
    """The crafting below is a faithful container: a small one loads to its zeros."""
    raw_len = 3 * CHUNK + 12345
    with open(path, "wb") as f:
        f.write(_zstd_bomb(raw_len))
    loaded = memoryview(oxjob.load(path))
    assert loaded.nbytes == raw_len and not any(loaded.tobytes())


def test_zstd_container_claiming_a_tebibyte_is_a_memory_error(tmp_path):
    """40 MB of honest zstd chunks decode to 1 TiB: more memory than the machine has,
    which is MemoryError (as joblib gives), not an abort."""
    target = tmp_path / "bomb.oxjob"
    target.write_bytes(_zstd_bomb(1 << 40))
    assert target.stat().st_size < 50 << 20
    out = run(
        """
        import oxjob
        before = fds()
        print(outcome(lambda: oxjob.load(sys.argv[1])))
        print("leaked", fds() - before)
        """,
        str(target),
    )
    assert out.startswith("MemoryError: "), out
    assert "1099511627776 bytes" in out and str(target) in out
    assert "leaked 0" in out


def test_lying_sizes_with_valid_checksums_are_corrupt(path):
    """Claims the file's bytes cannot hold are CorruptFileError, before any allocation."""
    stream = _stream()
    pickle_section = _raw_section(0, 1, stream, 32)
    offset = 32 + len(pickle_section)
    cases = {
        # An uncompressed buffer claiming far more than the file holds.
        "raw": [pickle_section, _raw_section(1, 2, b"x" * 100, offset, raw_len=1 << 40)],
        # A zstd chunk of 4 bytes claiming 64 MiB: past zstd's largest expansion.
        "ratio": [
            pickle_section,
            _compressed_section(1, 2, ZSTD, 64 << 20, [b"\0" * 4], chunk_size=64 << 20),
        ],
        # A chunk record that claims more stored bytes than follow it.
        "stored": [
            pickle_section,
            _compressed_section(1, 2, ZSTD, 100, [])
            + struct.pack("<IQ", 1 << 31, _sum(b"", 1 << 40))
            + b"\0" * 64,
        ],
    }
    for name, sections in cases.items():
        with open(path, "wb") as f:
            f.write(_container(sections))
        with pytest.raises(CorruptFileError) as info:
            oxjob.load(path)
        assert path in str(info.value), name
    # A preamble claiming four billion sections.
    with open(path, "wb") as f:
        f.write(_container([pickle_section], n_sections=0xFFFF_FFFF))
    with pytest.raises(CorruptFileError, match="section count"):
        oxjob.load(path)


def test_zstd_chunks_that_lie_about_their_content_are_corrupt(path):
    """A zstd chunk with a valid checksum that decodes to less than it claims."""
    stream = _stream()
    chunks = [_zstd_zeros(CHUNK), _zstd_zeros(1000)]
    sections = [_raw_section(0, 1, stream, 32), _compressed_section(1, 2, ZSTD, 2 * CHUNK, chunks)]
    with open(path, "wb") as f:
        f.write(_container(sections))
    with pytest.raises(CorruptFileError, match="chunk 1"):
        oxjob.load(path)


# ---- valid data, too little address space ---------------------------------------------------


@pytest.mark.parametrize("compress", [0, "zstd"], ids=["raw", "zstd"])
def test_valid_dump_loaded_without_the_memory_is_a_memory_error(tmp_path, compress):
    """A valid 400 MB dump loaded with 200 MB of address space left: MemoryError, and
    the process goes on (a small load still works, nothing leaked)."""
    out = run(
        """
        import numpy as np, oxjob
        big, small = sys.argv[1] + "/big.oxjob", sys.argv[1] + "/small.oxjob"
        compress = 0 if sys.argv[2] == "0" else sys.argv[2]
        oxjob.dump(np.ones(50_000_000), big, compress=compress)
        oxjob.dump(np.arange(10), small)
        oxjob.load(small)
        before = fds()
        limit(200 << 20)
        print(outcome(lambda: oxjob.load(big)))
        print("small", oxjob.load(small).sum())
        print("leaked", fds() - before)
        """,
        str(tmp_path),
        str(compress),
    )
    assert out.startswith("MemoryError: "), out
    assert "big.oxjob" in out and "400000000 bytes" in out
    assert "small 45" in out and "leaked 0" in out


def test_large_worker_result_without_the_memory_is_a_memory_error():
    """A worker returns 400 MB to a caller with 200 MB of address space left (the
    workers started before the limit, so they can build it): MemoryError in the
    caller, no descriptor leaked, and the next call works."""
    out = run(
        """
        import numpy as np
        from oxjob import Parallel, delayed
        par = Parallel(n_jobs=2)
        par(delayed(np.ones)(10) for _ in range(4))  # workers started, unlimited
        before = fds()
        limit(200 << 20)
        print(outcome(lambda: par(delayed(np.ones)(50_000_000) for _ in range(1))))
        print("next", sum(x.sum() for x in par(delayed(np.ones)(10) for _ in range(3))))
        print("leaked", fds() - before)
        """
    )
    # The caller's own failure, not numpy's in a worker.
    assert out.startswith("MemoryError: ") and "Unable to allocate" not in out, out
    assert "400000000 bytes" in out
    assert "next 30.0" in out and "leaked 0" in out


def test_large_pool_result_without_the_memory_is_a_memory_error():
    """As above, through ``Pool``: the task's result is MemoryError, the pool goes on."""
    out = run(
        """
        import numpy as np
        import oxjob
        pool = oxjob.Pool(2)
        pool.map(np.ones, [10, 10])  # workers started, unlimited
        limit(200 << 20)
        # A hang limit: the result arrives in milliseconds.
        print(outcome(lambda: pool.apply_async(np.ones, (50_000_000,)).get(timeout=10)))
        ones = lambda: print(float(np.sum(pool.map_async(np.ones, [10] * 3).get(10))))  # noqa: E731
        print("next", outcome(ones))
        sys.stdout.flush()
        os._exit(0)  # not pool.terminate(): it waits for the dispatcher thread
        """
    )
    assert out.startswith("MemoryError: ") and "Unable to allocate" not in out, out
    assert "30.0\nnext ok" in out


def test_shared_array_without_the_memory_is_a_memory_error():
    """``oxjob.shared.empty`` beyond the address space left: MemoryError, like
    ``numpy.empty``, and its memfd is closed."""
    out = run(
        """
        import numpy as np
        from oxjob import shared
        shared.zeros(10).sum()
        before = fds()
        limit(200 << 20)
        print(outcome(lambda: shared.empty(50_000_000)))
        print(outcome(lambda: shared.empty(1 << 58, dtype=np.uint8)))
        print("small", shared.zeros(10).sum())
        print("leaked", fds() - before)
        """
    )
    lines = out.splitlines()
    assert lines[0].startswith("MemoryError: ") and lines[1].startswith("MemoryError: "), out
    assert "small 0.0" in out and "leaked 0" in out
