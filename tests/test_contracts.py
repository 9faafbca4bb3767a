"""Contracts across process and language boundaries are written once: the other side
imports them, or a test here pins both sides."""

import inspect
import pathlib
import pickle
import re

import oxjob
from oxjob import _units, _worker_env, backends, joblib_backend
from oxjob._workers import protocol as _protocol

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(oxjob.__file__).parent


def test_frame_kinds_match_the_rust_enum():
    source = (ROOT / "crates/oxjob-core/src/workers/frame.rs").read_text()
    body = source[source.index("pub enum Kind {") :]
    body = body[: body.index("}")]
    rust = {
        re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper(): int(value)
        for name, value in re.findall(r"^\s*(\w+)\s*=\s*(\d+),", body, re.M)
    }
    assert rust, "no variants found in oxjob_core::workers::frame::Kind"
    python = {name: getattr(_protocol, name) for name in rust if hasattr(_protocol, name)}
    assert python == rust


def test_worker_environment_round_trips():
    env = _worker_env.worker_environment("r", 12345, 7.5, 3)
    settings = _worker_env.read_worker_environment(env)
    assert (settings.mmap_mode, settings.max_nbytes, settings.idle_timeout) == ("r", 12345, 7.5)
    assert settings.nesting_level == 3 and isinstance(settings.sys_path, list)


def test_worker_variables_are_named_in_one_module():
    names = {
        value
        for key, value in vars(_worker_env).items()
        if key.isupper() and isinstance(value, str) and value.startswith("OXJOB_")
    }
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_worker_env.py":
            continue
        text = path.read_text()
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path.name, name)


def test_defaults_come_from_units():
    assert oxjob.Parallel(n_jobs=2).max_nbytes == _units.DEFAULT_MAX_NBYTES
    assert _units.parse_size(_units.DEFAULT_MAX_NBYTES_TEXT, "x") == _units.DEFAULT_MAX_NBYTES
    for cls in (backends.ProcessBackend, joblib_backend.OxjobBackend):
        default = inspect.signature(cls).parameters["idle_worker_timeout"].default
        assert default == _units.DEFAULT_IDLE_TIMEOUT
    assert oxjob.store.parse_size is _units.parse_size


def test_backends_receive_batches_through_an_explicit_interface():
    from oxjob._cluster import base as _cluster
    from oxjob.parallel import BatchedCalls, GuardedBatch

    batch = GuardedBatch(BatchedCalls([(abs, (-2,), {})]))
    assert _cluster.batched_calls_of(batch) == [(abs, (-2,), {})]
    assert batch()[:2] == (True, [2])
    assert _cluster.batched_calls_of(lambda: None) is None
    assert pickle.loads(pickle.dumps(batch))()[1] == [2]


def test_template_request_size_matches_the_rust_side():
    from oxjob._workers import template as _template

    source = (ROOT / "crates/oxjob-core/src/workers/template.rs").read_text()
    (rust,) = re.findall(r"pub const MAX_PER_REQUEST: usize = (\d+);", source)
    assert _template._MAX_PER_REQUEST == int(rust)


def _unpacked_arity(function, first: str) -> set[int]:
    """How many names ``function`` unpacks an ``event`` tuple into: for ``"exit"``
    events (the unpacking that names ``code``) or for frames (the other one)."""
    import ast
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    sizes = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Name)
            and node.value.id == "event"
            and isinstance(node.targets[0], ast.Tuple)
        ):
            names = [getattr(e, "id", "") for e in node.targets[0].elts]
            if (first == "exit") == ("code" in names):
                sizes.add(len(names))
    return sizes


def test_event_shapes_are_the_ones_the_engine_unpacks():
    # The supervisor's events are tuples built in Rust (crates/oxjob-py/src/workers.rs)
    # and unpacked by the engine's dispatcher: one real worker of each kind pins both.
    import sys

    from oxjob import _engine
    from oxjob._workers.engine import TaskEngine
    from oxjob._workers.protocol import READY

    code = (
        "import os; from oxjob import _engine; from oxjob._workers.protocol import READY; "
        "_engine.WorkerChannel(3, 'r').send(READY, os.getpid(), b'hi', [])"
    )
    supervisor = _engine.Supervisor(sys.executable, ["-c", code], [], 1)
    try:
        frame = supervisor.next_event(60)
        ended = supervisor.next_event(60)
        generation = supervisor.generation(0)
    finally:
        supervisor.shutdown(1.0)
    assert frame is not None and ended is not None
    assert frame[0] == "frame" and frame[1:4] == (0, generation, READY)
    assert bytes(frame[5]) == b"hi" and frame[6] == [] and frame[7] == []
    assert ended == ("exit", 0, generation, 0, None)
    assert _unpacked_arity(TaskEngine._handle, "frame") == {len(frame)}
    assert _unpacked_arity(TaskEngine._handle, "exit") == {len(ended)}
