"""Workers forked from the warm template (oxjob._workers.template): fresh per pool, replaced
when stale, per caller process, and gone with the caller."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import oxjob
from oxjob._workers.template import NO_SIBLING_FORKS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

_G: list = []


def _set_global(x):
    _G.append(x)
    return os.getpid()


def _from_template() -> bool:
    return sys.modules["__main__"].__spec__.name == "oxjob._workers.template"


def _worker_state(_):
    return os.getpid(), list(_G), _from_template()


def _init(tag):
    _G.append(tag)


def test_each_pool_gets_fresh_workers_forked_from_the_template():
    with oxjob.Pool(2) as pool:
        first = set(pool.map(_set_global, range(8)))
    with oxjob.Pool(2) as pool:
        states = pool.map(_worker_state, range(8))
    pids = {pid for pid, _, _ in states}
    assert not pids & first
    assert all(g == [] for _, g, _ in states)  # the first pool's globals are not seen
    assert all(forked for _, _, forked in states)  # they came from the template


def _process_view(_):
    """The worker's pid, parent, and how many sockets it holds."""
    time.sleep(0.05)  # let every worker of the pool take a task
    sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return os.getpid(), os.getppid(), sockets, _from_template()


def test_workers_started_together_are_the_callers_children_holding_only_their_socket():
    # A pool's workers are forked by the template in one request: each must hold its
    # own socket only (another worker's would keep that one's connection open after
    # it died) and be the caller's child, as a worker started alone is.
    with oxjob.Pool(1) as pool:
        (_, _, alone, _) = pool.apply(_process_view, (0,))
    with oxjob.Pool(4) as pool:
        views = pool.map(_process_view, range(16), chunksize=1)
    assert len({pid for pid, _, _, _ in views}) >= 2
    assert all(parent == os.getpid() for _, parent, _, _ in views)
    assert all(forked for _, _, _, forked in views)
    assert {sockets for _, _, sockets, _ in views} == {alone}


def _libc_view(_):
    import threading

    # glibc's thread descriptor must hold this process's thread id: a thread CPU clock
    # is made from it, and the kernel refuses one naming another process's thread.
    clock = time.pthread_getcpuclockid(threading.get_ident())
    try:
        own_tid = time.clock_gettime(clock) >= 0
    except OSError:
        own_tid = False
    siblings = getattr(sys.modules["__main__"], "_sibling_forks", [None])[0]
    return os.getppid(), own_tid, siblings


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_workers_are_forked_as_the_callers_children_without_an_intermediate():
    # The template forks workers with clone3(CLONE_PARENT) (oxjob_core::workers::sibling):
    # they are the caller's children at once, and what glibc's fork() sets up in a
    # child (the thread id it keeps) is right in them; the fallback through an
    # intermediate process is not taken.
    with oxjob.Pool(2) as pool:
        views = pool.map(_libc_view, range(8), chunksize=1)
    assert set(views) == {(os.getpid(), True, True)}


_VIEW_PARENTS = """
    def view(_):
        return os.getpid(), os.getppid(), sys.modules["__main__"]._sibling_forks[0]

    if __name__ == "__main__":
        seen = []
        for _ in range(3):
            with oxjob.Pool(2) as pool:
                seen += pool.map(view, range(4), chunksize=1)
        parents = {parent for _, parent, _ in seen}
        siblings = {s for _, _, s in seen}
        print(parents == {os.getpid()}, siblings, len({pid for pid, _, _ in seen}) >= 4)
"""


def test_where_sibling_forks_are_not_available_workers_come_through_an_intermediate(tmp_path):
    # The fallback of the test above (musl, an old glibc, clone3 refused): the template
    # forks an intermediate process that forks the workers and exits; they are still
    # the caller's fresh children, forked from the template.
    env = dict(os.environ, **{NO_SIBLING_FORKS: "1"})
    out = _run(_COMMON + _VIEW_PARENTS, tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "{False}", "True"]


def test_an_engine_without_sibling_forks_falls_back_to_the_intermediate(tmp_path):
    # A Rust module built before sibling forks existed (a stale development build next
    # to newer Python files): the template must fall back, not fail every pool.
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(
        "import oxjob._engine\ndel oxjob._engine.fork_sibling\n"
    )
    path = os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])
    out = _run(_COMMON + _VIEW_PARENTS, tmp_path, env=dict(os.environ, PYTHONPATH=path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "{False}", "True"]


def test_initializer_runs_in_every_pool():
    for tag in ("a", "b"):
        with oxjob.Pool(2, initializer=_init, initargs=(tag,)) as pool:
            states = pool.map(_worker_state, range(4))
        assert all(g == [tag] and forked for _, g, forked in states)


def test_executor_and_maxtasksperchild_replacements_come_from_the_template():
    with oxjob.ProcessPoolExecutor(2) as ex:
        assert all(f for _, _, f in ex.map(_worker_state, range(4)))
    with oxjob.Pool(1, maxtasksperchild=1) as pool:
        states = [pool.apply(_worker_state, (i,)) for i in range(3)]
    assert len({pid for pid, _, _ in states}) == 3
    assert all(g == [] and forked for _, g, forked in states)


def test_a_spawn_context_gets_fresh_interpreters():
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    with oxjob.Pool(2, context=spawn) as pool:
        assert not any(f for _, _, f in pool.map(_worker_state, range(4)))
    with oxjob.ProcessPoolExecutor(2, mp_context=spawn) as ex:
        assert not any(f for _, _, f in ex.map(_worker_state, range(4)))
    forkserver = multiprocessing.get_context("forkserver")
    with oxjob.Pool(2, context=forkserver) as pool:
        assert all(f for _, _, f in pool.map(_worker_state, range(4)))


def _run(script: str, tmp_path, **kw) -> subprocess.CompletedProcess:
    path = tmp_path / "caller.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path, **kw
    )


_COMMON = """
    import os, sys
    import oxjob
    from oxjob._workers import template as _template
    from oxjob._workers.mainscript import TEMPLATE_MODULE

    def state(_):
        return os.getpid(), os.getcwd(), sys.modules["__main__"].__spec__.name == TEMPLATE_MODULE

    def template_pid():
        return _template._current[0].proc.pid
"""


def test_a_stale_template_is_replaced(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    out = _run(
        _COMMON
        + """
    if __name__ == "__main__":
        with oxjob.Pool(2) as pool:
            pool.map(state, range(2))
        first = template_pid()
        os.chdir("elsewhere")
        with oxjob.Pool(2) as pool:
            cwds = {c for _, c, f in pool.map(state, range(4)) if f}
        second = template_pid()
        sys.path.append("/nonexistent-oxjob-path")
        with oxjob.Pool(2) as pool:
            pool.map(state, range(2))
        third = template_pid()
        gone = not os.path.exists(f"/proc/{first}")  # stopped and reaped
        print(first != second != third, cwds == {os.getcwd()}, gone)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def test_a_caller_that_forks_gets_a_working_pool_in_the_child(tmp_path):
    out = _run(
        _COMMON
        + """
    if __name__ == "__main__":
        with oxjob.Pool(2) as pool:
            pool.map(state, range(2))
        parent_template = template_pid()
        pid = os.fork()
        if pid == 0:
            with oxjob.Pool(2) as pool:
                states = pool.map(state, range(4))
            ok = all(f for _, _, f in states) and template_pid() != parent_template
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        with oxjob.Pool(2) as pool:
            pool.map(state, range(2))
        print(os.waitstatus_to_exitcode(status), template_pid() == parent_template)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"]


def test_a_caller_that_forks_just_after_a_pool_closed_gets_a_pool_in_the_child(tmp_path):
    # The next pool's workers are being forked on a background thread when the pool
    # closes: a child forked then must not wait for that thread's locks (it does not
    # exist in the child), nor touch the parent's waiting workers.
    out = _run(
        _COMMON
        + """
    import time

    if __name__ == "__main__":
        stuck = 0
        for _ in range(12):
            with oxjob.Pool(2) as pool:
                pool.map(state, range(2))
            pid = os.fork()
            if pid == 0:
                with oxjob.Pool(2) as pool:
                    pool.map(state, range(2))
                os._exit(0)
            deadline = time.monotonic() + 30
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    stuck += 1
                    break
                time.sleep(0.01)
        with oxjob.Pool(2) as pool:
            print(stuck, len(set(pid for pid, _, _ in pool.map(state, range(4)))) >= 1)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True"]


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_no_template_or_worker_outlives_the_caller(tmp_path, sig):
    path = tmp_path / "caller.py"
    path.write_text(
        textwrap.dedent(
            _COMMON
            + """
    import time
    if __name__ == "__main__":
        pool = oxjob.Pool(2)
        pids = {p for p, _, _ in pool.map(state, range(8))}
        print(template_pid(), *pids, flush=True)
        print(_template._current[0].dir, flush=True)
        time.sleep(600)
    """
        )
    )
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        socket_dir = proc.stdout.readline().strip()
        assert len(pids) >= 2 and os.path.isdir(socket_dir)
        assert not any(_gone(p) for p in pids)
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 30
        while not all(_gone(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(p) for p in pids)
        assert not os.path.exists(socket_dir)  # the template removed its socket
    finally:
        proc.kill()
        proc.wait()


def test_modules_of_functions_sent_are_imported_by_the_template_once(tmp_path):
    # A function from a module the script does not import at its top: the first
    # pool's workers import it; the template imports it before the next pool, whose
    # workers then have it already (each import appends the importing process's pid).
    (tmp_path / "lazy_tasks.py").write_text(
        textwrap.dedent(
            """
            import os
            with open(os.path.join(os.path.dirname(__file__), "imports.log"), "a") as log:
                log.write(f"{os.getpid()}\\n")

            def work(x):
                return os.getpid()
            """
        )
    )
    out = _run(
        _COMMON
        + """
    if __name__ == "__main__":
        import lazy_tasks
        with open("imports.log", "w"):
            pass  # the caller's own import is not counted
        with oxjob.Pool(2) as pool:
            first = set(pool.map(lazy_tasks.work, range(8), chunksize=1))
        with oxjob.Pool(2) as pool:
            second = set(pool.map(lazy_tasks.work, range(8), chunksize=1))
        importers = {int(line) for line in open("imports.log")}
        print(template_pid() in importers, bool(importers & first), not importers & second)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def test_a_module_that_starts_a_thread_is_not_taught_to_the_template(tmp_path):
    # fork is only safe single-threaded: the template that imported it leaves, and
    # the next one is started without that module; pools keep coming from a template.
    (tmp_path / "threaded_tasks.py").write_text(
        textwrap.dedent(
            """
            import os, threading, time
            threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()

            def work(x):
                return os.getpid(), "threaded_tasks" in __import__("sys").modules
            """
        )
    )
    out = _run(
        _COMMON
        + """
    if __name__ == "__main__":
        import threaded_tasks
        with oxjob.Pool(2) as pool:
            pool.map(threaded_tasks.work, range(4))
            first = template_pid()
        with oxjob.Pool(2) as pool:
            results = pool.map(threaded_tasks.work, range(4))
            forked = pool.map(state, range(4))
            second = template_pid()
        print(first != second, all(f for _, _, f in forked), "threaded_tasks" in _template._unsafe)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def _started_at(pid: int) -> float:
    """When process ``pid`` started, in seconds since boot."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")


def test_the_next_pools_workers_are_forked_while_the_caller_goes_on():
    # A pool like one that just closed finds its workers already forked (fresh: the
    # first test above checks that), so a loop of pools does not wait for forks.
    with oxjob.Pool(2) as pool:
        pool.map(_set_global, range(4))
    time.sleep(1.0)  # the caller does something else meanwhile
    with open("/proc/uptime") as f:
        opened = float(f.read().split()[0])
    with oxjob.Pool(2) as pool:
        states = pool.map(_worker_state, range(8), chunksize=1)
        started = [_started_at(pid) for pid in {pid for pid, _, _ in states}]
    assert all(opened - at > 0.5 for at in started), (opened, started)
    assert all(g == [] and forked for _, g, forked in states)


def test_workers_forked_ahead_are_not_used_after_the_output_was_redirected(tmp_path):
    # A test runner's capture (or a program) that points descriptor 1 elsewhere between
    # two pools must see the second pool's output where it points now.
    out = _run(
        _COMMON
        + """
    import time

    def say(x):
        print("from the worker", flush=True)
        return x

    if __name__ == "__main__":
        with oxjob.Pool(2) as pool:
            pool.map(say, range(2))
        time.sleep(0.5)  # the next pool's workers are forked meanwhile
        log = os.open("redirected.txt", os.O_WRONLY | os.O_CREAT)
        os.dup2(log, 1)
        with oxjob.Pool(2) as pool:
            pool.map(say, range(2))
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("from the worker") == 2
    assert (tmp_path / "redirected.txt").read_text().count("from the worker") == 2


def test_workers_forked_ahead_are_discarded_soon_by_one_thread(tmp_path):
    # Every pool of a loop forks the next one's workers ahead; those no pool took are
    # killed and reaped about 2 s later (standby's LINGER), by one thread for the whole
    # process: not one sleeping thread per pool, which a long loop would pile up.
    out = _run(
        _COMMON
        + """
    import time

    def threads(name):
        found = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    found += f.read().strip() == name
            except OSError:
                pass  # the thread ended meanwhile
        return found

    def children():
        with open(f"/proc/self/task/{os.getpid()}/children") as f:
            return {int(p) for p in f.read().split()} - {template_pid()}

    if __name__ == "__main__":
        most = 0
        for _ in range(12):
            with oxjob.Pool(2) as pool:
                pool.map(state, range(4))
            most = max(most, threads("oxjob-standby"))
        waiting = len(children())
        deadline = time.monotonic() + 20
        while children() and time.monotonic() < deadline:
            time.sleep(0.05)
        print(most, waiting, len(children()), threads("oxjob-standby"))
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    most, waiting, left, threads_left = map(int, out.stdout.split())
    assert 1 <= most <= 2, most  # one filling, one discarding at most
    assert waiting >= 2 and left == 0 and threads_left == 0, out.stdout


def test_callers_on_several_threads_each_get_fresh_workers_from_one_template(tmp_path):
    # Threads of one caller open pools at the same time: they share the template and the
    # workers forked ahead, and each pool still gets workers of its own that ran nothing.
    out = _run(
        _COMMON
        + """
    import threading, time

    SEEN = []

    def mark(x):
        SEEN.append(x)
        return os.getpid(), list(SEEN), x * x

    def loop(k, pools, errors):
        try:
            for i in range(6):
                items = range(1000 * k + 10 * i, 1000 * k + 10 * i + 10)
                if i % 2:
                    with oxjob.ProcessPoolExecutor(2) as ex:
                        rows = list(ex.map(mark, items))
                else:
                    with oxjob.Pool(2) as pool:
                        rows = pool.map(mark, items, chunksize=1)
                assert [sq for _, _, sq in rows] == [x * x for x in items]
                # each worker has seen this pool's tasks only
                assert all(set(seen) <= set(items) for _, seen, _ in rows), rows
                pools.append({pid for pid, _, _ in rows})
        except BaseException as e:
            errors.append(repr(e))

    if __name__ == "__main__":
        pools, errors = [], []
        threads = [threading.Thread(target=loop, args=(k, pools, errors)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        assert not any(t.is_alive() for t in threads), "a thread hangs"
        assert not errors, errors
        assert len(pools) == 24
        every = [pid for pids in pools for pid in pids]
        assert len(every) == len(set(every)), "a worker served two pools"
        assert len(_template._current) == 1
        template = template_pid()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with open(f"/proc/self/task/{os.getpid()}/children") as f:
                left = {int(p) for p in f.read().split()} - {template}
            if not left:
                break
            time.sleep(0.1)
        print("left", sorted(left))
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "left []", out.stdout


_FORK_WHILE_ANOTHER_THREAD_ASKS = """
    import signal, threading, time

    def make_pool_in_a_thread(func):
        done = threading.Event()
        def run():
            with oxjob.Pool(2) as pool:
                pool.map(func, range(2))
                done.set()
        thread = threading.Thread(target=run)
        thread.start()
        return thread, done

    def fork_a_child_that_opens_a_pool(thread, parent_template):
        # prints how the child ended: 0 if it got workers from a template of its own
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a deadlock ends the child, not the test run
            with oxjob.Pool(2) as pool:
                states = pool.map(state, range(4))
            ok = all(f for _, _, f in states) and template_pid() != parent_template
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        thread.join()
        print(os.waitstatus_to_exitcode(status))
"""


def test_a_caller_forked_while_another_thread_waits_for_the_template_gets_its_template(tmp_path):
    # Another thread of the caller is waiting for the template's answer (here its first,
    # slow one: the main module takes a while to import) when the caller forks; that
    # thread does not exist in the child, which must still get its own template's
    # workers: not fresh interpreters for the rest of its life.
    out = _run(
        _COMMON
        + _FORK_WHILE_ANOTHER_THREAD_ASKS
        + """
    if __name__ == "__mp_main__":
        time.sleep(1.5)  # the template imports this module slowly

    if __name__ == "__main__":
        thread, done = make_pool_in_a_thread(state)
        time.sleep(0.5)
        fork_a_child_that_opens_a_pool(thread, None)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]


def test_a_caller_forked_while_another_thread_teaches_the_template_gets_a_pool(tmp_path):
    # The thread that closes a pool has the template import the modules of the
    # functions sent (slowly here) while it holds the template's lock; a child forked
    # meanwhile must not wait for ever for that lock.
    (tmp_path / "slow_module.py").write_text(
        "import time\ntime.sleep(1.5)\n\ndef square(x):\n    return x * x\n"
    )
    out = _run(
        _COMMON
        + _FORK_WHILE_ANOTHER_THREAD_ASKS
        + """
    if __name__ == "__main__":
        import slow_module  # here only: the template imports it when taught

        with oxjob.Pool(2) as pool:
            pool.map(state, range(2))
        parent_template = template_pid()
        thread, done = make_pool_in_a_thread(slow_module.square)
        done.wait()
        time.sleep(0.5)  # the closing thread is teaching the template slow_module now
        fork_a_child_that_opens_a_pool(thread, parent_template)
    """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0"]
