"""load from open files, BytesIO, pipes and sockets; mmap_mode maps every array."""

import importlib.util
import io
import os
import socket
import threading

import numpy as np
import pytest

import oxjob

joblib = pytest.importorskip("joblib")

VALUE = {"big": np.arange(200_000), "small": np.arange(5.0), "text": "end"}
# Each writer puts one object on a stream; the reader must stop at its end.
WRITERS = {
    "oxjob": lambda value, f: oxjob.dump(value, f),
    "oxjob-zstd": lambda value, f: oxjob.dump(value, f, compress=3),
    "oxjob-gzip-stream": lambda value, f: oxjob.dump(value, f, compress="gzip"),
    "joblib-format": lambda value, f: oxjob.dump(value, f, format="joblib"),
    "joblib": lambda value, f: joblib.dump(value, f),
    "joblib-zlib": lambda value, f: joblib.dump(value, f, compress=3),
    "oxjob-xz-stream": lambda value, f: oxjob.dump(value, f, compress="xz"),
    "oxjob-lzma-stream": lambda value, f: oxjob.dump(value, f, compress="lzma"),
    "joblib-bz2": lambda value, f: joblib.dump(value, f, compress=("bz2", 3)),
}
if importlib.util.find_spec("lz4") is not None:
    WRITERS["joblib-lz4"] = lambda value, f: joblib.dump(value, f, compress=("lz4", 3))


def same(loaded, original=VALUE):
    assert loaded["text"] == original["text"]
    np.testing.assert_array_equal(loaded["big"], original["big"])
    np.testing.assert_array_equal(loaded["small"], original["small"])


def load_within(fileobj, seconds=60):
    """load in a thread: a read past the object's end would block forever."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=oxjob.load(fileobj)))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "load read past the end of the object and blocked"
    return result["value"]


@pytest.mark.parametrize("writer", list(WRITERS))
def test_socket_keeps_open_and_two_objects_follow(writer):
    server_side, client_side = socket.socketpair()
    second = {**VALUE, "text": "second"}
    with server_side, client_side:
        out, into = server_side.makefile("wb"), client_side.makefile("rb")

        def send():  # the socket stays open after both objects
            for value in (VALUE, second):
                WRITERS[writer](value, out)
                out.flush()

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        same(load_within(into))
        same(load_within(into), second)
        thread.join(60)


# joblib.dump itself fails on a pipe (its tell() raises "Illegal seek").
@pytest.mark.parametrize("writer", ["oxjob", "joblib-format", "oxjob-gzip-stream"])
def test_pipe_left_open_by_the_writer(writer):
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as source, os.fdopen(write_end, "wb") as sink:
        thread = threading.Thread(
            target=lambda: (WRITERS[writer](VALUE, sink), sink.flush()), daemon=True
        )
        thread.start()
        same(load_within(source))
        thread.join(60)


class ReadOnly:
    """A file object with read() only: no peek, no seek, no readinto."""

    def __init__(self, data):
        self._data = io.BytesIO(data)

    def read(self, n=-1):
        return self._data.read(n)


@pytest.mark.parametrize("writer", list(WRITERS))
def test_minimal_file_object(writer):
    buffer = io.BytesIO()
    WRITERS[writer](VALUE, buffer)
    same(oxjob.load(ReadOnly(buffer.getvalue())))


@pytest.mark.parametrize("writer", list(WRITERS))
def test_bytesio_after_dump_without_seek(writer):
    buffer = io.BytesIO()
    WRITERS[writer](VALUE, buffer)
    same(oxjob.load(buffer))  # joblib's idiom: it reads a file object from its start


def test_two_objects_in_one_bytesio_are_read_in_order():
    buffer = io.BytesIO()
    oxjob.dump(VALUE, buffer)
    oxjob.dump({**VALUE, "text": "second"}, buffer)
    buffer.seek(0)
    same(oxjob.load(buffer))
    assert oxjob.load(buffer)["text"] == "second"


@pytest.mark.parametrize("writer", list(WRITERS))
def test_open_file_object(tmp_path, writer):
    target = tmp_path / "value.bin"
    with open(target, "wb") as f:
        WRITERS[writer](VALUE, f)
    with open(target, "rb") as f:
        same(oxjob.load(f))


def test_truncated_stream_is_an_error_not_a_short_array():
    buffer = io.BytesIO()
    oxjob.dump(VALUE, buffer)
    with pytest.raises(oxjob.exceptions.CorruptFileError, match="truncated"):
        oxjob.load(io.BytesIO(buffer.getvalue()[:-100]))
    buffer = io.BytesIO()
    joblib.dump(VALUE, buffer)
    with pytest.raises(oxjob.exceptions.CorruptFileError, match="truncated"):
        oxjob.load(io.BytesIO(buffer.getvalue()[:5000]))


@pytest.mark.parametrize("protocol", [None, 2, 4])
def test_mmap_maps_small_arrays_too(tmp_path, protocol):
    target = str(tmp_path / "value.oxjob")
    value = {
        "tiny": np.arange(3, dtype=np.int8),
        "empty": np.empty((0, 4)),
        "zero_d": np.array(7.0),
        "fortran": np.asfortranarray(np.ones((3, 5))),
        "view": np.arange(100)[::7],
        "big": np.arange(100_000),
        "object": np.array([1, None], dtype=object),
    }
    oxjob.dump(value, target, protocol=protocol)
    loaded = oxjob.load(target, mmap_mode="r")
    for key, original in value.items():
        if key == "object":
            assert type(loaded[key]) is np.ndarray
            continue
        assert isinstance(loaded[key], np.memmap), key
        np.testing.assert_array_equal(loaded[key], original)
        assert loaded[key].ctypes.data % 16 == 0 or loaded[key].size == 0
    assert oxjob.load(target)["tiny"].flags.writeable
    shared = oxjob.load(target, mmap_mode="r+")
    shared["tiny"][0] = 42
    shared["tiny"].flush()
    assert oxjob.load(target)["tiny"][0] == 42


def test_memory_mmap_mode_maps_small_results(tmp_path):
    memory = oxjob.Memory(tmp_path, mmap_mode="r", verbose=0)

    @memory.cache
    def make(n):
        return {"small": np.arange(n), "big": np.arange(n * 10_000)}

    make(4)
    cached = make(4)
    assert isinstance(cached["small"], np.memmap)
    assert isinstance(cached["big"], np.memmap)
    np.testing.assert_array_equal(cached["small"], np.arange(4))
