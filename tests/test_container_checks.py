"""Compressed chunks are checked before they are inflated, and every damaged
container is reported as one.

A small container may claim gigabytes (zstd stands for up to 32768 bytes per
stored byte): its chunks' checksums over the stored bytes, and their codecs'
framing, are checked before the output is allocated, so a damaged or forged one is
a ``CorruptFileError`` costing no more memory than its own bytes. The scenarios
that measure memory run in a fresh interpreter (see ``test_alloc_faults.py``).
"""

import gzip
import io
import pickle
import random
import struct
import zlib

import numpy as np
import pytest
from test_alloc_faults import (
    CHUNK,
    ZSTD,
    _compressed_section,
    _container,
    _raw_section,
    _stream,
    _zstd_bomb,
    run,
)

import oxjob
from oxjob.exceptions import CorruptFileError

GIB = 1 << 30

# Load the file, in a fresh interpreter, and print the outcome and how much the
# peak memory (ru_maxrss, KiB) grew meanwhile.
MEASURE = """
import resource, oxjob
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if len(sys.argv) > 2:
    limit(int(sys.argv[2]))
print(outcome(lambda: oxjob.load(sys.argv[1])))
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print("grew", grew * 1024)
"""


def _measure(path, headroom=None):
    args = [str(path)] + ([str(headroom)] if headroom else [])
    out = run(MEASURE, *args, timeout=300)
    first, grew = out.splitlines()[0], int(out.split("grew ")[1])
    return first, grew


def test_damaged_small_zstd_file_claiming_gibibytes_allocates_nothing(tmp_path):
    """The finding: a 126 KB zstd container of 3 GiB of zeros, its last chunk damaged,
    used to take 3 GiB of memory (every chunk before the damaged one inflated into
    the section's output) before the checksum failed."""
    target = tmp_path / "damaged.oxjob"
    data = bytearray(_zstd_bomb(3 * GIB))
    assert len(data) < 130_000
    data[-16 - 2] ^= 0x01  # a stored byte of the last chunk, before the end marker
    target.write_bytes(bytes(data))
    first, grew = _measure(target)
    assert first.startswith("CorruptFileError: ") and "checksum mismatch" in first, first
    assert grew < 100 << 20, f"peak memory grew by {grew} bytes"
    # With 1 GiB of address space left, still corrupt (never MemoryError).
    first, _ = _measure(target, headroom=GIB)
    assert first.startswith("CorruptFileError: "), first


def test_forged_chunks_claiming_gibibytes_are_corrupt_within_a_small_address_space(tmp_path):
    """Valid checksums, chunks that are not zstd at all (or zstd whose frames say
    another size), claiming 3 GiB from 100 KB: CorruptFileError with 1 GiB of address
    space, found from the chunks' framing before the claimed size is asked for."""
    n_chunks = 3 * GIB // CHUNK
    not_zstd = bytes(random.Random(1).randrange(256) for _ in range(64))
    # Frames of 2 MiB of zeros in RLE blocks, whose content size says 1 MiB.
    one_mib = b"\x28\xb5\x2f\xfd\x80\x50" + struct.pack("<I", 1 << 20)
    for rle in range(16):
        one_mib += ((rle == 15) | (1 << 1) | ((128 << 10) << 3)).to_bytes(3, "little") + b"\0"
    for name, stored in {"garbage": not_zstd, "content size": one_mib}.items():
        pickle_section = _raw_section(0, 1, _stream(), 32)
        chunks = [stored] * n_chunks
        section = _compressed_section(1, 2, ZSTD, 3 * GIB, chunks)
        target = tmp_path / f"{name}.oxjob"
        target.write_bytes(_container([pickle_section, section]))
        assert target.stat().st_size < 200_000
        first, grew = _measure(target, headroom=GIB)
        assert first.startswith("CorruptFileError: ") and "zstd chunk" in first, (name, first)
        assert grew < 100 << 20, (name, grew)


def _mutations(base: bytes, rng: random.Random, n: int):
    """``n`` damaged copies of ``base``: bits flipped, bytes set, integers written
    over fields, truncations, and every byte of the magic replaced."""
    for at in range(8):
        for value in (0x80, 0x8D, 0x78, 0x46, 0x1F, 0x00, 0xFF):
            if base[at] != value:
                yield base[:at] + bytes([value]) + base[at + 1 :]
    for _ in range(n):
        data = bytearray(base)
        at = rng.randrange(len(data))
        kind = rng.randrange(4)
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at] = (data[at] + rng.randrange(1, 256)) % 256
        elif kind == 2:
            del data[at:]
        else:
            value = rng.choice([0, 1, 0xFF, 0xFFFF, 0xFFFF_FFFF, 2**64 - 1, 2**31, 4096])
            width = rng.choice([1, 2, 4, 8])
            piece = value.to_bytes(8, "little")[:width]
            if data[at : at + width] == piece:
                continue
            data[at : at + width] = piece
            del data[len(base) :]
        yield bytes(data)


@pytest.mark.parametrize("codec", ["raw", "zstd", "lz4", "zlib", "gzip"])
def test_every_mutated_container_is_corrupt(tmp_path, codec):
    """Thousands of damaged containers, each codec: every one is CorruptFileError,
    from a path and from a file object; never MemoryError, a pickle error or a
    wrong value."""
    value = {
        "big": np.arange(6000, dtype=np.int32) % 251,
        "small": np.linspace(0, 1, 50),
        "text": "container " * 30,
        "items": [1, 2.5, None, b"bytes"],
    }
    target = tmp_path / "base.oxjob"
    oxjob.dump(value, target, compress=0 if codec == "raw" else (codec, 3))
    base = target.read_bytes()
    assert base.startswith(b"\x93OXJOB\r\n")
    rng = random.Random(codec)
    failures, count = [], 0
    damaged = tmp_path / "damaged.oxjob"
    for data in _mutations(base, rng, 600):
        if data == base:
            continue
        damaged.write_bytes(data)
        for source in ("path", "file"):
            count += 1
            try:
                oxjob.load(str(damaged) if source == "path" else io.BytesIO(data))
            except CorruptFileError:
                continue
            except Exception as exc:  # noqa: BLE001 - any other type is the failure
                failures.append((source, data[:8], type(exc).__name__, str(exc)[:100]))
            else:
                failures.append((source, data[:8], "loaded a damaged file"))
    assert count > 1200
    assert not failures, failures[:5]


def test_zfile_length_beyond_what_its_bytes_hold_is_corrupt(tmp_path):
    """A joblib < 0.10 ``ZF`` file's header names the decompressed length, which
    sized the output buffer: a length its compressed bytes cannot hold is refused."""
    payload = pickle.dumps([1, 2, 3], protocol=2)
    stored = zlib.compress(payload)
    target = tmp_path / "old.pkl"
    for length, message in [
        (2**60, "cannot come from"),
        (len(payload) + 1, "wrong decompressed length"),
        (len(payload) - 1, "wrong decompressed length"),
    ]:
        target.write_bytes(b"ZF" + f"{length:#x}".ljust(19).encode() + stored)
        with pytest.raises(CorruptFileError, match=message):
            oxjob.load(target)
    target.write_bytes(b"ZF" + f"{len(payload):#x}".ljust(19).encode() + stored[:-3])
    with pytest.raises(CorruptFileError):
        oxjob.load(target)
    target.write_bytes(b"ZF" + f"{len(payload):#x}".ljust(19).encode() + stored)
    with pytest.warns(DeprecationWarning, match="joblib version less than 0.10"):
        assert oxjob.load(target) == [1, 2, 3]


def test_stream_reads_take_memory_as_data_arrives(tmp_path):
    """A pickle in a gzip stream whose frame claims 1 TiB: the stream reader used to
    allocate the claimed size before reading (MemoryError); it now takes memory as
    data arrives, and the pickle loads as joblib's reader loads it (its pure-Python
    unpickler does not check that a frame was delivered whole)."""
    value = {"b": b"x" * 100, "l": list(range(20))}
    target = tmp_path / "value.pkl.gz"
    oxjob.dump(value, target, format="joblib", compress=("gzip", 3))
    inner = gzip.decompress(target.read_bytes())
    assert inner[2:3] == pickle.FRAME
    forged = inner[:3] + struct.pack("<Q", 1 << 40) + inner[11:]
    target.write_bytes(gzip.compress(forged))
    assert oxjob.load(target) == value
