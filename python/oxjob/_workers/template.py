"""A warm template process that workers are forked from (``python -m oxjob._workers.template``).

A fresh worker is an interpreter start plus the imports of the caller's script (run
as ``__mp_main__``): 0.1 s to seconds per pool. The template pays that once per
caller process: started at the first pool, it prepares itself as a worker does
(``sys.path``, ``authkey``, the script as ``__mp_main__``, the worker's modules) and
then, single-threaded, waits for requests. Each request (sent by the Rust supervisor,
``oxjob_core::workers::template``) forks a process that becomes a worker with the
environment, working directory, stdout/stderr and socket a fork+exec'd worker gets;
the caller is its parent, as for any worker. See docs/engine.md ("Warm template").

The template must never start a thread (``fork`` would copy its locks held), touch a
GPU, or hold the caller's sockets. The caller replaces it when it went stale (its
script, ``sys.path``, working directory or worker environment changed, or the caller
is a ``fork`` of the process that started it) and it exits when the caller's end of
its pipe closes (the caller ended, SIGKILL included).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
from typing import Any

_lock = threading.Lock()
_current: list[Any] = []  # [Template] of this process, if started
_refused: set = set()  # keys whose template would not serve (threads at import)


def _unlock_in_child() -> None:
    # A thread of the parent may have held the lock at the fork (teaching the template
    # a slow import, for one); that thread does not exist in the child, whose lock
    # must start free or its first pool waits for ever.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_unlock_in_child)


def _script_stamp(env: dict[str, str]) -> tuple:
    from .mainscript import script_in

    path = script_in(env)
    try:
        mtime = os.stat(path).st_mtime_ns if path else None
    except OSError:
        mtime = None
    return (path, mtime)


class Template:
    """The caller's handle on its running template."""

    def __init__(self, key: tuple, env: dict[str, str], preload: tuple[str, ...] = ()) -> None:
        from .mainscript import TEMPLATE_MODULE

        self.key = key
        self.taught = set(preload)  # modules of functions sent, imported at its start
        self.owner = os.getpid()
        self.dir = tempfile.mkdtemp(prefix="oxjob-template-")
        self.path = os.path.join(self.dir, "sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        # Its end of this pipe tells the template that the caller ended (EOF).
        read_end, self.alive = os.pipe()
        full = dict(os.environ)
        full.update(env)
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    TEMPLATE_MODULE,
                    str(listener.fileno()),
                    str(read_end),
                    ",".join(preload),
                ],
                env=full,
                pass_fds=(listener.fileno(), read_end),
                stdin=subprocess.DEVNULL,
                process_group=0,  # a terminal's Ctrl-C reaches the caller only
            )
        finally:
            # Only the template holds the listener: if it dies, requests are refused
            # (and the supervisor starts workers the usual way) instead of hanging.
            listener.close()
            os.close(read_end)

    def teach(self, modules: list[str]) -> bool:
        """Have the template import ``modules`` (those of functions sent to workers)
        before it forks again; False if it cannot fork safely anymore (an import started
        a thread): it exits, and the caller starts another without them."""
        body = "\0".join(modules).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(_TEACH_TIMEOUT)
                conn.connect(self.path)
                conn.sendall(len(body).to_bytes(4, "little") + body)
                answer = _recv_exact(conn, 4)
        except (OSError, EOFError):
            return False
        self.taught.update(modules)
        return answer == _STILL_SAFE

    def usable(self, key: tuple) -> bool:
        return self.owner == os.getpid() and self.key == key and self.proc.poll() is None

    def stop(self) -> None:
        if self.owner == os.getpid():
            os.close(self.alive)  # the template sees EOF and exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


def template_for(env: dict[str, str]) -> str | None:
    """The socket of a template whose workers match workers started now with ``env``
    added (starting or replacing it as needed), or None where none can serve."""
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return None
    if getattr(_fresh, "on", False):
        return None  # the caller asked for spawn
    key = (
        _script_stamp(env),
        tuple(p for p in sys.path if isinstance(p, str)),
        os.getcwd(),
        tuple(sorted(env.items())),
    )
    with _lock:
        if _current and _current[0].usable(key) and _teach_current():
            return _current[0].path
        if key in _refused:
            return None
        if _current:
            old = _current.pop()
            if old.owner == os.getpid() and old.key == key and old.proc.poll() == _REFUSED:
                _refused.add(key)
                old.stop()
                return None
            if old.owner == os.getpid():
                old.stop()
            # A fork's inherited handle: the parent's template is the parent's to stop.
        preload = tuple(m for m in _sent if m not in _unsafe)
        try:
            _current.append(Template(key, env, preload))
        except OSError:
            return None
        if not _atexit:
            import atexit

            atexit.register(_stop_at_exit)
            _atexit.append(True)
        return _current[0].path


_sent: list[str] = []  # modules of the functions sent to workers, in order
_unsafe: set[str] = set()  # modules whose import started a thread in the template
_MAIN_NAMES = frozenset({"__main__", "__mp_main__", "builtins"})
_TEACH_TIMEOUT = 120.0  # seconds: an import may be slow, not endless
_STILL_SAFE = b"\x01\0\0\0"


def note_sent(func: Any) -> None:
    """Remember the module of a function sent to workers (pickled by reference, it
    is imported by every worker that runs it): the template imports it before it
    forks the next pool's workers, so they do not import it again."""
    for _ in range(8):  # functools.partial and the like wrap the function sent
        inner = getattr(func, "func", None)
        if not callable(inner) or inner is func:
            break
        func = inner
    module = getattr(func, "__module__", None)
    if not isinstance(module, str):
        module = getattr(type(func), "__module__", None)
    if isinstance(module, str) and module not in _MAIN_NAMES and module not in _sent:
        if not module.startswith("oxjob.") and module in sys.modules:
            _sent.append(module)


def _teach_current() -> bool:
    """Teach the current template the modules sent since (holding ``_lock``); False
    if it left instead (an import started a thread)."""
    current = _current[0]
    new = [m for m in _sent if m not in current.taught and m not in _unsafe]
    if not new or current.teach(new):
        return True
    _unsafe.update(new)
    _current.pop().stop()
    return False


def teach_sent(path: str | None) -> None:
    """A pool whose workers came from the template at ``path`` is closing, and the
    next pool's workers are about to be forked ahead of time (see
    ``oxjob_core::workers::standby``): have the template import the modules of the
    functions sent since, first."""
    if path is None:
        return
    with _lock:
        if _current and _current[0].path == path and _current[0].usable(_current[0].key):
            _teach_current()


_fresh = threading.local()


class fresh_interpreters:
    """``with fresh_interpreters(context):`` workers started meanwhile in this thread
    are fresh interpreters, not forks of the template, when ``context`` (a
    ``multiprocessing`` context) selects the ``spawn`` start method."""

    def __init__(self, context: Any) -> None:
        method = context.get_start_method(allow_none=False) if context is not None else None
        self.on = method == "spawn"

    def __enter__(self) -> None:
        self.old = getattr(_fresh, "on", False)
        _fresh.on = self.old or self.on

    def __exit__(self, *exc: Any) -> None:
        _fresh.on = self.old


_atexit: list = []
_REFUSED = 3  # the template's exit code when it cannot fork safely


def _stop_at_exit() -> None:
    if _current and _current[0].owner == os.getpid():
        _current.pop().stop()


def _single_threaded() -> bool:
    return len(os.listdir("/proc/self/task")) == 1


def _import_all(modules: list[str]) -> None:
    import importlib

    for name in modules:
        if name and name not in sys.modules:
            try:
                importlib.import_module(name)
            except BaseException:  # noqa: BLE001 - the worker that needs it reports it
                pass


def _prepare() -> None:
    """Import what a fresh worker would import before its first task."""
    import json

    # Everything a worker imports before its first task (each import left to the
    # worker costs every worker of every pool its time again).
    from .._worker_env import SYS_PATH
    from . import outcomes, protocol, worker  # noqa: F401
    from .mainscript import _load_script, adopt_caller_state, script_in

    adopt_caller_state()
    for entry in json.loads(os.environ.get(SYS_PATH, "[]")):
        if entry not in sys.path:
            sys.path.append(entry)
    path = script_in(os.environ)
    if path:
        try:
            _load_script(path)
        except Exception:  # noqa: BLE001 - the worker that needs it reports the error
            pass


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _become_worker(fds: list[int], body: bytes, caller: int, keep: tuple) -> None:
    """In the forked process: take the request's descriptors, directory and
    environment, wait to be the caller's child, and run the worker."""
    import time

    code = 1
    ran_main = False
    try:
        for fd in keep:
            os.close(fd)
        os.setpgid(0, 0)
        sock, out, err = fds
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.dup2(sock, 3)
        for fd in {null, sock, out, err} - {0, 1, 2, 3}:
            os.close(fd)
        cwd, *entries = body.split(b"\0")
        os.chdir(cwd)
        os.environ.clear()
        for entry in entries:
            if entry:
                key, _, value = entry.partition(b"=")
                os.environb[key] = value
        deadline = time.monotonic() + 10
        while os.getppid() != caller:  # forked through an intermediate: it is exiting
            if time.monotonic() > deadline:
                os._exit(70)
            time.sleep(0.0002)
        if "numpy" in sys.modules:  # a fresh worker seeds numpy's global state anew
            sys.modules["numpy"].random.seed()
        from .worker import main

        ran_main = True
        code = main()
    except SystemExit as exc:  # an executor's initializer that failed, for one
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported as a fresh worker's would be
        import traceback

        traceback.print_exc()
    finally:
        try:
            if ran_main:
                import atexit

                # As a fresh worker's interpreter does at its end, however its main
                # ended: a multiprocessing queue's feeder thread flushes what was put.
                atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code or 0)


_MAX_PER_REQUEST = 64  # oxjob_core::workers::template::MAX_PER_REQUEST (a test pins both)


#: Set to 1 in the caller's environment, its template forks through the intermediate
#: process only (how tests reach that path where sibling forks work).
NO_SIBLING_FORKS = "OXJOB_TEMPLATE_NO_SIBLING_FORKS"
# Until one fails (or the variable above says so): then through an intermediate process.
_sibling_forks = [os.environ.get(NO_SIBLING_FORKS) != "1"]


def _fork_workers(
    socks: list[int], out: int, err: int, body: bytes, caller: int, keep: tuple
) -> bytes:
    """Fork one worker per socket as a child of the caller. Returns their pids (4 bytes
    each, 0 for a fork that failed)."""
    if _sibling_forks[0]:
        try:
            return _fork_siblings(socks, out, err, body, caller, keep)
        except (OSError, ImportError):  # ImportError: a Rust module built before them
            _sibling_forks[0] = False
    return _fork_through_intermediate(socks, out, err, body, caller, keep)


def _fork_siblings(
    socks: list[int], out: int, err: int, body: bytes, caller: int, keep: tuple
) -> bytes:
    """Each worker forked straight from the template with ``CLONE_PARENT``, so that it
    is the caller's child at once (``oxjob_core::workers::sibling``). OSError if the
    first cannot be forked so."""
    from .._engine import fork_sibling

    pids: list[int] = []
    for sock in socks:
        try:
            pid = fork_sibling()
        except OSError:
            if not pids:
                raise
            pids.append(0)  # the caller discards the others and starts all anew
            continue
        if pid == 0:
            others = tuple(fd for fd in socks if fd != sock)
            _become_worker([sock, out, err], body, caller, keep + others)
        pids.append(pid)
    return b"".join(p.to_bytes(4, "little", signed=True) for p in pids)


def _fork_through_intermediate(
    socks: list[int], out: int, err: int, body: bytes, caller: int, keep: tuple
) -> bytes:
    """Fork the workers through an intermediate process that exits at once, so that
    they become the caller's children (it is a subreaper while it asks)."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the intermediate: fork the workers, report them, exit
        try:
            os.close(r)
            pids = []
            for sock in socks:
                try:
                    pid = os.fork()
                except OSError:
                    pids.append(0)  # the caller discards the others and starts all anew
                    continue
                if pid == 0:
                    others = tuple(fd for fd in socks if fd != sock)
                    os.close(w)
                    _become_worker([sock, out, err], body, caller, keep + others)
                pids.append(pid)
            os.write(w, b"".join(p.to_bytes(4, "little", signed=True) for p in pids))
        finally:
            os._exit(0)
    os.close(w)
    with open(r, "rb") as reader:
        answer = reader.read(4 * len(socks))
    os.waitpid(middle, 0)  # the workers are the caller's children from here
    return answer


def _serve(listener: socket.socket, alive: int, caller: int) -> None:
    while True:
        ready, _, _ = select.select([listener.fileno(), alive], [], [])
        if alive in ready:
            return  # the caller ended
        conn, _ = listener.accept()
        with conn:
            try:
                head, fds, _, _ = socket.recv_fds(conn, 4, _MAX_PER_REQUEST + 2)
            except OSError:
                continue
            n = len(fds) - 2
            try:
                if len(head) < 4:
                    head += _recv_exact(conn, 4 - len(head))
                body = _recv_exact(conn, int.from_bytes(head, "little"))
                if not fds:  # modules to import for the next workers
                    _import_all(body.decode().split("\0"))
                    safe = _single_threaded()
                    conn.sendall(_STILL_SAFE if safe else bytes(4))
                    if not safe:
                        return  # fork is not safe anymore: the caller starts another
                    continue
                if n < 1:
                    raise OSError("a request without its descriptors")
                *socks, out, err = fds
                answer = _fork_workers(
                    socks, out, err, body, caller, (listener.fileno(), alive, conn.fileno())
                )
                conn.sendall(answer if len(answer) == 4 * n else bytes(4 * max(n, 1)))
            except (OSError, EOFError):
                try:
                    conn.sendall(bytes(4 * max(n, 1)))
                except OSError:
                    pass
            finally:
                for fd in fds:
                    os.close(fd)


def main() -> int:
    listener = socket.socket(fileno=int(sys.argv[1]))
    alive = int(sys.argv[2])
    caller = os.getppid()
    _prepare()
    if len(sys.argv) > 3:
        _import_all(sys.argv[3].split(","))
    if not _single_threaded():
        # fork is only safe single-threaded (an import started a thread, e.g. a BLAS
        # pool): refuse to serve; workers start as usual.
        return _REFUSED
    try:
        _serve(listener, alive, caller)
    finally:
        # A caller killed by a signal cannot clean up: the template removes its socket.
        path = listener.getsockname()
        try:
            os.unlink(path)
            os.rmdir(os.path.dirname(path))
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
