"""Memory keys: an entry is only ever served to the code that computed it.

joblib keys a function by module and name and compares its source with the one stored
beside the entries; oxjob does the same (same warnings), and hashes the code object
with the arguments, so functions that share a name never share an entry.
"""

import asyncio
import logging
import subprocess
import sys
import textwrap
import warnings

import pytest

import oxjob
from oxjob.memory import JobLibCollisionWarning, NotMemorizedResult


@pytest.fixture
def memory(tmp_path):
    return oxjob.Memory(tmp_path, verbose=0)


def _sum(x, y):
    return x + y


def _product(x, y):
    return x * y


def _replaced(x, y):
    return None


def test_two_lambdas_of_one_module_keep_their_own_results(memory):
    sq = memory.cache(lambda x: x * x)
    cube = memory.cache(lambda x: x**3)
    with pytest.warns(JobLibCollisionWarning) as caught:
        assert sq(3) == 9
        assert cube(3) == 27
        assert sq(3) == 9
        assert cube(3) == 27
    # joblib's warnings: "Cannot detect ..." and "Possible name collisions ..." each switch.
    messages = [str(w.message) for w in caught]
    assert len(messages) == 6
    assert sum("Cannot detect name collisions" in m for m in messages) == 3
    assert sum("Possible name collisions" in m for m in messages) == 3


def test_two_lambdas_on_one_line(memory):
    # Their source is the same line, so the source comparison cannot tell them apart.
    sq, cube = memory.cache(lambda x: x * x), memory.cache(lambda x: x**3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JobLibCollisionWarning)
        assert [sq(3), cube(3), sq(3), cube(3), sq(2)] == [9, 27, 9, 27, 4]


def _exec_function(body):
    namespace = {"__name__": "generated"}
    exec(f"def f(x):\n    return {body}\n", namespace)
    return namespace["f"]


def test_exec_functions_of_one_name(memory):
    one, two = _exec_function("1"), _exec_function("2")  # same bytecode, other constants
    assert one.__code__.co_code == two.__code__.co_code
    first, second = memory.cache(one), memory.cache(two)
    with pytest.warns(JobLibCollisionWarning, match="Cannot detect name collisions"):
        assert first(0) == 1
        assert second(0) == 2
        assert first(0) == 1


def test_replaced_code_is_not_served_stale_values(memory):
    _replaced.__code__ = _sum.__code__
    f = memory.cache(_replaced)
    assert f(2, 5) == 7 and f(2, 5) == 7
    with pytest.warns(JobLibCollisionWarning, match="Possible name collisions"):
        _replaced.__code__ = _product.__code__
        assert f(2, 5) == 10
    assert f(2, 5) == 10
    _replaced.__code__ = _sum.__code__
    with pytest.warns(JobLibCollisionWarning):
        assert f(2, 5) == 7


def test_named_functions_of_one_name_warn_once_like_joblib(memory):
    @memory.cache
    def twin(x):
        return x

    first = twin

    @memory.cache
    def twin(x):
        return x + 1

    with pytest.warns(JobLibCollisionWarning) as caught:
        assert first(1) == 1
        assert twin(1) == 2
    assert len(caught) == 1 and "collision" in str(caught[0].message)


def test_eval_lambdas_warn_that_collisions_cannot_be_detected(memory):
    a = memory.cache(eval("lambda x: x"))
    b = memory.cache(eval("lambda x: x + 1"))
    with pytest.warns(JobLibCollisionWarning) as caught:
        assert a(1) == 1
        assert b(1) == 2
        assert a(0) == 0
    assert len(caught) == 2
    assert "cannot detect" in str(caught[0].message).lower()


SCRIPT = textwrap.dedent(
    """
    import sys, warnings, oxjob
    warnings.simplefilter("ignore")
    m = oxjob.Memory(sys.argv[1], verbose=0)
    f = m.cache(lambda x: x * x) if sys.argv[2] == "square" else m.cache(lambda x: x ** 3)
    print(f(3))
    """
)


def test_other_code_with_the_same_source_line_in_another_process(tmp_path):
    # Both runs store the same func_code.py (the same line): only the code differs.
    script = tmp_path / "same_line.py"
    script.write_text(SCRIPT)
    cache = str(tmp_path / "cache")
    outputs = [
        subprocess.run(
            [sys.executable, str(script), cache, mode], capture_output=True, text=True
        ).stdout.strip()
        for mode in ("square", "cube", "square")
    ]
    assert outputs == ["9", "27", "9"]


def test_keyword_only_argument_given_by_position(memory):
    def with_kwonly(a, b, *, kw1="kw1", kw2="kw2"):
        return a, b, kw1, kw2

    f = memory.cache(with_kwonly)
    assert f(1, 2, kw1=3) == (1, 2, 3, "kw2")
    with pytest.raises(ValueError, match="Too many arguments for"):
        f(1, 2, 3, kw2=4)
    with pytest.raises(ValueError, match="Wrong number of arguments for"):
        f(1)
    with pytest.raises(ValueError, match="Too many keyword arguments for"):
        f(1, 2, nope=3)


def test_memorized_result_func_id(memory):
    f = memory.cache(_sum)
    result = f.call_and_shelve(1, 2)
    assert result.func_id == f.func_id == "test_memory_keys/_sum"
    assert result.get() == 3


def test_async_function_without_location():
    from oxjob.memory import AsyncNotMemorizedFunc

    async def double(x):
        await asyncio.sleep(0)
        return 2 * x

    f = oxjob.Memory(None).cache(double)
    assert isinstance(f, AsyncNotMemorizedFunc)

    async def run():
        shelved = await f.call_and_shelve(4)
        return await f(3), shelved

    value, shelved = asyncio.run(run())
    assert value == 6 and isinstance(shelved, NotMemorizedResult) and shelved.get() == 8


def test_querying_is_logged_from_verbose_20(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    f = oxjob.Memory(tmp_path, verbose=20).cache(_sum)
    f(1, 2)
    assert "Querying _sum with signature" in caplog.text
    assert "(argument hash " in caplog.text and "The store location is" in caplog.text
    caplog.clear()
    oxjob.Memory(tmp_path, verbose=0).cache(_sum)(1, 2)
    assert "Querying" not in caplog.text


def test_partials_of_local_functions_keep_their_own_results(memory):
    import functools

    def add(x, y):
        return x + y

    def mul(x, y):
        return x * y

    plus, times = memory.cache(functools.partial(add, 10)), memory.cache(functools.partial(mul, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JobLibCollisionWarning)
        assert [plus(3), times(3), plus(3), times(3)] == [13, 30, 13, 30]


def test_partial_of_a_module_function_is_found_by_another_process(tmp_path):
    code = (
        "import functools, operator, oxjob;"
        f"m = oxjob.Memory({str(tmp_path)!r}, verbose=0);"
        "f = m.cache(functools.partial(operator.add, 10));"
        "print(f.check_call_in_cache(1), f(1))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.stdout.split() for r in runs] == [["False", "11"], ["True", "11"]], runs[0].stderr


def test_messages_name_nested_functions_as_joblib(tmp_path, capsys):
    def outer():
        def inner(x):
            return x

        return inner

    oxjob.Memory(tmp_path, verbose=1).cache(outer())(3)
    out = capsys.readouterr().out
    assert "\ninner(3)\n" in out
    assert out.rstrip().endswith("_inner - 0.0s, 0.0min")


@pytest.mark.parametrize(
    "cell_files",
    [
        # IPython numbers the cells it runs: the same cell run again is another N
        ["<ipython-input-1-9a8b7c6d5e4f>", "<ipython-input-7-9a8b7c6d5e4f>"],
        # a Jupyter kernel writes each cell to a file under a directory of its own PID
        ["/tmp/ipykernel_1111/2952837641.py", "/tmp/ipykernel_2222/2952837641.py"],
    ],
)
def test_a_notebook_cell_run_again_finds_its_cached_results(tmp_path, cell_files):
    calls = tmp_path / "calls.txt"
    source = f"def f(x):\n    open({str(calls)!r}, 'a').write('ran ')\n    return x\n"
    for cell_file in cell_files:
        namespace: dict = {}
        exec(compile(source, cell_file, "exec"), namespace)
        namespace["f"].__module__ = "__main__"
        assert oxjob.Memory(tmp_path / "cache", verbose=0).cache(namespace["f"])(3) == 3
    assert calls.read_text().split() == ["ran"]  # computed once, as with joblib


def test_notebook_cells_of_other_code_keep_their_own_directories(tmp_path):
    from oxjob._memory.func_inspect import func_id

    ids = set()
    for cell_file in ["<ipython-input-1-aaaa>", "<ipython-input-1-bbbb>", "/tmp/ipykernel_1/1.py"]:
        namespace: dict = {}
        exec(compile("def f():\n    pass\n", cell_file, "exec"), namespace)
        namespace["f"].__module__ = "__main__"
        ids.add(func_id(namespace["f"]))
    assert len(ids) == 3
