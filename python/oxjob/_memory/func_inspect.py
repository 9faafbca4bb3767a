"""What ``Memory`` needs to know about a function: where its entries live, its code,
and the arguments of a call.

joblib's rules, so that ``import oxjob as joblib`` keys functions as joblib does:
entries live under ``module/name`` and a function's source is compared with the one
stored beside them (a change clears them). On top of that the code object's own
identity (bytecode, constants, names: :func:`code_token`) is part of every argument
hash, so an entry computed by other code can never be served, even where joblib's
source comparison cannot tell two functions apart (two lambdas on one line, ``exec``'d
functions of one name, a replaced ``__code__``).
"""

from __future__ import annotations

import inspect
import os
import re
import tokenize
import types
import warnings
from itertools import islice
from typing import Callable, NamedTuple

from ..exceptions import JobLibCollisionWarning
from ..hashing import hash as _hash

__all__ = [
    "FIRST_LINE_TEXT",
    "CodeInfo",
    "bind_arguments",
    "call_signature",
    "code_info",
    "code_token",
    "extract_first_line",
    "func_id",
    "func_name",
    "path_component",
    "warn_collision",
]

#: The header of a stored ``func_code.py`` (joblib's).
FIRST_LINE_TEXT = "# first line:"


class CodeInfo(NamedTuple):
    """A function's code as ``Memory`` compares it.

    ``source`` is what is stored in ``func_code.py`` (joblib's comparison), ``first_line``
    is -1 when there is no source, ``token`` identifies the code object itself.
    """

    source: str
    source_file: str | None
    first_line: int
    token: str


def func_name(func: Callable) -> str:
    """The function's own name (``<lambda>`` for lambdas), as joblib's messages use it."""
    return getattr(func, "__name__", None) or type(func).__name__


#: Characters kept as they are in a path component; anything else is %-escaped.
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
#: Longest component kept whole: file systems allow 255 bytes, and an entry's own
#: work and trash names add to its function's.
_MAX_COMPONENT = 120


def path_component(name: str) -> str:
    """``name`` as one directory name that stays where it is put.

    Ordinary names (letters, digits, ``_``, ``-``, ``.``) are kept as they are, so the
    layout is joblib's; anything else (``/``, ``\\``, unicode, control characters,
    ``%``) is %-escaped from its UTF-8 bytes; a leading ``.`` is escaped too (no
    ``.``, ``..`` or hidden names), an empty name becomes ``%``, and a name longer than
    120 characters is cut and ends with a hash of the whole.
    """
    raw = name.encode("utf-8", "surrogatepass")
    out = "".join(chr(b) if chr(b) in _SAFE else f"%{b:02X}" for b in raw)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if not out:
        out = "%"
    if len(out) > _MAX_COMPONENT:
        out = f"{out[: _MAX_COMPONENT - 33]}-{_hash(name)}"
    return out


def _same_across_runs(path: str) -> str:
    """The file of a notebook cell, without what changes when it runs again (joblib's
    rule, so that the cell finds the entries it made)."""
    folder, name = os.path.split(path)
    if name.startswith("<ipython-input"):
        # IPython names a cell <ipython-input-N-HASH>: N counts the cells run so far,
        # HASH is the cell's code.
        fields = name.split("-")
        name = "-".join(fields[:2] + fields[3:])
    elif os.path.basename(folder).startswith("ipykernel_"):
        # Jupyter's kernel writes a cell to /tmp/ipykernel_<PID>/<HASH>.py.
        folder = os.path.join(os.path.dirname(folder), "ipykernel")
    return os.path.join(folder, name)


def func_id(func: Callable) -> str:
    """``module/.../name``: where a function's entries live (joblib's layout).

    Each part is a :func:`path_component`, so whatever a module or function claims to
    be called, its entries stay under the cache's location.
    """
    module = getattr(func, "__module__", None) or "__main__"
    if not isinstance(module, str):
        module = repr(module)
    parts = module.split(".")
    if module == "__main__":
        try:
            source = inspect.getsourcefile(func)
        except TypeError:
            source = None
        if source:
            # Scripts all run as __main__: keep their files apart, as joblib does.
            stem = os.path.splitext(_same_across_runs(os.path.abspath(source)))[0]
            parts = ["__main__" + stem.replace(os.sep, "-").replace("<", "-").replace(">", "-")]
    # joblib's "unknown" for nameless callables (partials, instances): never their
    # repr, whose address would make a new directory in every process.
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or "unknown"
    if not isinstance(name, str):
        name = "unknown"
    name = name.replace("<", "-").replace(">", "-")
    return "/".join(path_component(part) for part in [*parts, name])


def _code_fields(code: types.CodeType) -> tuple:
    consts = tuple(_code_fields(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
    return (
        code.co_code,
        consts,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_kwonlyargcount,
        code.co_flags,
    )


def code_token(func: Callable) -> str:
    """A digest of the code object, stable across processes of one Python version.

    Callables without ``__code__`` (``functools.partial``, ufuncs, callable instances)
    are identified by their own hash (a partial's function and arguments, an instance's
    state). One that cannot be hashed is identified by the object itself, as joblib does
    with its repr: its entries are then only reused while that object lives.
    """
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        return _hash(_code_fields(code))
    try:
        return _hash(func)
    except Exception:  # noqa: BLE001 - hashing an arbitrary object can raise anything
        # Not its name: two partials of different local functions share one.
        return _hash(f"{type(func).__qualname__}@{id(func)}:{func!r}")


def _source(func: Callable, code: types.CodeType) -> tuple[str, str, int] | None:
    filename = code.co_filename
    if os.path.exists(filename):
        # Read the file itself, not inspect's cache of it: an edited file must be seen.
        with tokenize.open(filename) as f:
            lines = list(islice(f, code.co_firstlineno - 1, None))
        return "".join(inspect.getblock(lines)), filename, code.co_firstlineno
    # Interactive sessions and doctests keep their source in linecache.
    source = "".join(inspect.getsourcelines(func)[0])
    match = re.match(r"<doctest (.*\.rst)\[(.*)\]>", filename)
    if match:
        return source, f"<doctest {match.group(1)}>", int(match.group(2))
    return source, filename, 1


def code_info(func: Callable) -> CodeInfo:
    """``func``'s :class:`CodeInfo` (joblib's ``get_func_code`` plus the code token)."""
    token = code_token(func)
    code = getattr(func, "__code__", None)
    if isinstance(code, types.CodeType):
        try:
            found = _source(func, code)
        except (OSError, TypeError, SyntaxError, UnicodeDecodeError, IndexError):
            found = None
        if found is not None:
            return CodeInfo(*found, token)
        # No source (exec'd or eval'd code): the code itself stands in for it.
        return CodeInfo(f"# code {token}", code.co_filename, -1, token)
    return CodeInfo(f"# callable {token}", None, -1, token)


def _call_text(name: str, args: tuple, kwargs: dict) -> str:
    args_text = repr(tuple(args))[1:-1].rstrip(",")
    kwargs_text = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    return f"{name}({args_text}, {kwargs_text})"


#: The signature given to callables that tell none (builtins such as ``max``, ufuncs of
#: numpy < 2.3): their arguments are keyed by position and keyword, as joblib keys them.
_ANY_ARGUMENTS = inspect.Signature(
    [
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
        inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
    ]
)


def call_signature(func: Callable) -> inspect.Signature:
    """``inspect.signature(func)``, or ``(*args, **kwargs)`` for a callable that has none."""
    try:
        return inspect.signature(func)
    except ValueError:
        # "no signature found for builtin": joblib caches these too.
        return _ANY_ARGUMENTS


def bind_arguments(signature: inspect.Signature, func: Callable, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name, defaults filled in.

    Raises
    ------
    ValueError
        When the call does not fit the signature, with joblib's wording ("Too many
        arguments for ...", "Wrong number of arguments for ...").
    """
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        text = str(exc)
        if "multiple values" in text:
            problem = "Argument given both as positional and as keyword for"
        elif "unexpected keyword" in text:
            problem = "Too many keyword arguments for"
        elif "too many positional" in text:
            problem = "Too many arguments for"
        else:
            problem = "Wrong number of arguments for"
        name = func_name(func)
        raise ValueError(
            f"{problem} {name}{signature}:\n    {_call_text(name, args, kwargs)} was called."
            f" ({text})"
        ) from None
    bound.apply_defaults()
    return bound.arguments


def extract_first_line(stored: str) -> tuple[str, int]:
    """``(source, first line)`` from a ``func_code.py`` (-1 when it has no header)."""
    if stored.startswith(FIRST_LINE_TEXT):
        header, _, source = stored.partition("\n")
        try:
            return source, int(header[len(FIRST_LINE_TEXT) :])
        except ValueError:
            return source, -1
    return stored, -1


def warn_collision(
    func: Callable, info: CodeInfo, old_source: str, old_first_line: int, stacklevel: int
) -> None:
    """joblib's ``JobLibCollisionWarning`` s, where joblib gives them."""
    name = func_name(func)
    if old_first_line == info.first_line == -1 or name == "<lambda>":
        described = name
        if info.first_line != -1:
            described = f"{name} ({info.source_file}:{info.first_line})"
        warnings.warn(
            JobLibCollisionWarning(f"Cannot detect name collisions for function '{described}'"),
            stacklevel=stacklevel,
        )
    if old_first_line == info.first_line or info.source_file is None:
        return
    # Same name, other place: if the old place still holds the old source, these are
    # two functions sharing a name, not one that was edited.
    if os.path.exists(info.source_file):
        lines = old_source.count("\n")
        try:
            with tokenize.open(info.source_file) as f:
                on_disk = "".join(f.readlines()[old_first_line - 1 : old_first_line - 1 + lines])
        except (OSError, SyntaxError, UnicodeDecodeError):
            return
        collision = on_disk.rstrip() == old_source.rstrip()
    else:
        collision = info.source_file.startswith("<doctest ")
    if collision:
        where = f"{info.source_file}:{old_first_line}"
        warnings.warn(
            JobLibCollisionWarning(
                f"Possible name collisions between functions '{name}' ({where}) and "
                f"'{name}' ({info.source_file}:{info.first_line})"
            ),
            stacklevel=stacklevel,
        )
