"""Reviewed default rules for the standard library: containers, scalars, dates.

Each handler accepts only the argument types Python's own pickler writes for that
type, so no call costs more than the bytes the file spent on its arguments:
``bytearray(n)`` with an int, ``int``/``Fraction``/``Decimal`` of long text and
``list(range(...))`` are refused. ``copyreg``'s reconstructors go through the same
path as ``NEWOBJ``.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import fractions
import re
from typing import Any

from ..exceptions import CorruptFileError, LoadLimitError
from .safe import refuse
from .safe_rules import LoadState, Rule, qualified

MAX_DIGITS = 4300  # CPython's own default limit for int <-> str conversions
_CONTAINERS = (list, tuple, set, frozenset, dict)


def _bad(state: LoadState, name: str, args: tuple) -> CorruptFileError:
    kinds = ", ".join(type(a).__name__ for a in args)
    return CorruptFileError(f"{state.u.what}: {name}() does not take ({kinds}) in a safe load")


def _text_number(state: LoadState, text: str, what: str) -> str:
    if len(text) > MAX_DIGITS:
        raise LoadLimitError(
            f"{state.u.what}: {what} of {len(text)} characters is over the limit of "
            f"{MAX_DIGITS} (converting longer text takes time that grows faster than its size)"
        )
    return text


def _container(kind: type) -> Any:
    def handler(state: LoadState, func: Any, args: tuple) -> Any:
        if args == ():
            return kind()
        if len(args) == 1 and type(args[0]) in _CONTAINERS and type(args[0]) is not dict:
            if kind in (set, frozenset):
                state.charge_keys(args[0])
            return kind(args[0])
        if kind is dict and len(args) == 1 and type(args[0]) is dict:
            return dict(args[0])
        raise _bad(state, kind.__name__, args)

    return handler


def _bytes(state: LoadState, func: Any, args: tuple) -> Any:
    kind = func
    if args == ():
        return kind()
    if len(args) == 1 and type(args[0]) in (bytes, bytearray):
        return kind(args[0])
    if kind is bytearray and len(args) == 2 and type(args[0]) is str:
        return bytearray(_encode(state, None, args))
    if len(args) == 1 and type(args[0]) is list and all(type(b) is int for b in args[0]):
        return kind(args[0])  # a list of byte values: as long as the file's list
    if len(args) == 1 and type(args[0]) is int:
        raise LoadLimitError(
            f"{state.u.what}: refusing {kind.__name__}({args[0]}): a size given as a number "
            "costs memory the file does not hold (safe loads never allocate by a count)"
        )
    raise _bad(state, kind.__name__, args)


def _encode(state: LoadState, func: Any, args: tuple) -> bytes:
    # Protocols 0-2 write bytes as _codecs.encode(text, 'latin1').
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    raise _bad(state, "_codecs.encode", args)


def _scalar(kind: type) -> Any:
    def handler(state: LoadState, func: Any, args: tuple) -> Any:
        if args == ():
            return kind()
        ok = (int, float, bool) if kind is not complex else (int, float, bool, complex)
        if len(args) == 1 and type(args[0]) in ok:
            return kind(args[0])
        if len(args) == 1 and type(args[0]) is str:
            return kind(_text_number(state, args[0], kind.__name__))
        if kind is complex and len(args) == 2 and all(type(a) in (int, float) for a in args):
            return complex(*args)
        raise _bad(state, kind.__name__, args)

    return handler


def _str(state: LoadState, func: Any, args: tuple) -> Any:
    if args == () or (len(args) == 1 and type(args[0]) is str):
        return str(*args)
    raise _bad(state, "str", args)


def _ints_or_none(state: LoadState, name: str, args: tuple, none: bool) -> tuple:
    if 1 <= len(args) <= 3 and all(type(a) is int or (none and a is None) for a in args):
        return args
    raise _bad(state, name, args)


def _slice(state: LoadState, func: Any, args: tuple) -> Any:
    return slice(*_ints_or_none(state, "slice", args, True))


def _range(state: LoadState, func: Any, args: tuple) -> Any:
    return range(*_ints_or_none(state, "range", args, False))  # lazy: costs nothing


def _ordered_dict(state: LoadState, func: Any, args: tuple) -> Any:
    if args == () or (len(args) == 1 and type(args[0]) is list):
        if args:
            state.charge_keys([pair[0] for pair in args[0] if type(pair) is tuple])
        value = collections.OrderedDict(*args)
        state.owned[id(value)] = value
        return value
    raise _bad(state, "OrderedDict", args)


def _counter(state: LoadState, func: Any, args: tuple) -> Any:
    if args == () or (len(args) == 1 and type(args[0]) is dict):
        value = collections.Counter(*args)
        state.owned[id(value)] = value
        return value
    raise _bad(state, "Counter", args)


_FACTORIES = (None, list, dict, set, int, float, str, tuple, frozenset, bytes)


def _defaultdict(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) <= 1 and all(any(a is f for f in _FACTORIES) for a in args):
        value = collections.defaultdict(*args)
        state.owned[id(value)] = value
        return value
    raise refuse(
        f"{state.u.what}: refusing defaultdict({', '.join(qualified(a) for a in args)}): "
        "its factory runs later, on a missing key; only builtin containers and scalars are "
        "allowed as factories"
    )


def _deque(state: LoadState, func: Any, args: tuple) -> Any:
    # Python writes deque((), maxlen) and APPENDs the items (older: deque([items])).
    if len(args) == 0 or (
        type(args[0]) in (list, tuple) and len(args) <= 2 and (len(args) == 1 or _maxlen(args[1]))
    ):
        value: collections.deque = collections.deque(*args)
        state.owned[id(value)] = value
        return value
    raise _bad(state, "deque", args)


def _maxlen(value: Any) -> bool:
    return value is None or (type(value) is int and value >= 0)


def _date_kind(kind: type, n: int) -> Any:
    def handler(state: LoadState, func: Any, args: tuple) -> Any:
        if len(args) >= 1 and type(args[0]) is bytes and len(args[0]) == n and len(args) <= 2:
            tz = args[1] if len(args) == 2 else None
            if tz is None or type(tz) is datetime.timezone:
                return kind(*args)
        if all(type(a) is int for a in args) and 1 <= len(args) <= 8:
            return kind(*args)
        raise _bad(state, kind.__name__, args)

    return handler


def _timedelta(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) <= 3 and all(type(a) is int for a in args):
        return datetime.timedelta(*args)
    raise _bad(state, "timedelta", args)


def _timezone(state: LoadState, func: Any, args: tuple) -> Any:
    if 1 <= len(args) <= 2 and type(args[0]) is datetime.timedelta:
        if len(args) == 1 or type(args[1]) is str:
            return datetime.timezone(*args)
    raise _bad(state, "timezone", args)


_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,9})?|[+-]?(s?NaN\d*|Infinity|Inf)")
_FRACTION = re.compile(r"[+-]?\d+(/\d+)?")


def _decimal(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) == 1 and type(args[0]) is str:
        text = _text_number(state, args[0], "Decimal text")
        if _DECIMAL.fullmatch(text):
            return decimal.Decimal(text)
    raise _bad(state, "Decimal", args)


def _fraction(state: LoadState, func: Any, args: tuple) -> Any:
    # Python writes Fraction(numerator, denominator) (older versions: the text 'n/d').
    if len(args) == 2 and all(type(a) is int for a in args) and args[1]:
        return fractions.Fraction(*args)
    if len(args) == 1 and type(args[0]) is str:
        text = _text_number(state, args[0], "Fraction text")
        if _FRACTION.fullmatch(text):
            return fractions.Fraction(text)
        if "e" in text.lower():
            raise LoadLimitError(
                f"{state.u.what}: refusing Fraction({text[:40]!r}): an exponent makes it cost "
                "time and memory that grow with the exponent, not with the file"
            )
    raise _bad(state, "Fraction", args)


def _newobj_call(state: LoadState, func: Any, args: tuple) -> Any:
    """``copyreg.__newobj__(cls, *args)``: NEWOBJ written by protocols 0 and 1."""
    if not args:
        raise _bad(state, "copyreg.__newobj__", args)
    return state.new(args[0], args[1:], {})


def _newobj_ex_call(state: LoadState, func: Any, args: tuple) -> Any:
    if len(args) != 3 or type(args[1]) is not tuple or type(args[2]) is not dict:
        raise _bad(state, "copyreg.__newobj_ex__", args)
    return state.new(args[0], args[1], args[2])


def _reconstructor(state: LoadState, func: Any, args: tuple) -> Any:
    """``copyreg._reconstructor(cls, object, None)``: protocols 0 and 1's NEWOBJ."""
    if len(args) == 3 and args[1] is object and args[2] is None:
        return state.new(args[0], (), {})
    raise refuse(
        f"{state.u.what}: refusing copyreg._reconstructor with a base other than object: "
        "it would run that base's constructor with the file's arguments"
    )


def _refs(*names: str) -> dict[str, Rule]:
    return {name: Rule() for name in names}


RULES: dict[str, Rule] = {
    "builtins.dict": Rule(call=_container(dict)),
    "builtins.list": Rule(call=_container(list)),
    "builtins.tuple": Rule(call=_container(tuple)),
    "builtins.set": Rule(call=_container(set)),
    "builtins.frozenset": Rule(call=_container(frozenset)),
    "builtins.bytes": Rule(call=_bytes),
    "builtins.bytearray": Rule(call=_bytes),
    "builtins.str": Rule(call=_str),
    "builtins.int": Rule(call=_scalar(int)),
    "builtins.float": Rule(call=_scalar(float)),
    "builtins.complex": Rule(call=_scalar(complex)),
    "builtins.bool": Rule(call=_scalar(bool)),
    "builtins.slice": Rule(call=_slice),
    "builtins.range": Rule(call=_range),
    "_codecs.encode": Rule(call=_encode),
    "copyreg._reconstructor": Rule(call=_reconstructor),
    "copyreg.__newobj__": Rule(call=_newobj_call),
    "copyreg.__newobj_ex__": Rule(call=_newobj_ex_call),
    "collections.OrderedDict": Rule(call=_ordered_dict),
    "collections.Counter": Rule(call=_counter),
    "collections.defaultdict": Rule(call=_defaultdict),
    "collections.deque": Rule(call=_deque),
    "datetime.datetime": Rule(call=_date_kind(datetime.datetime, 10)),
    "datetime.date": Rule(call=_date_kind(datetime.date, 4)),
    "datetime.time": Rule(call=_date_kind(datetime.time, 6)),
    "datetime.timedelta": Rule(call=_timedelta),
    "datetime.timezone": Rule(call=_timezone),
    "decimal.Decimal": Rule(call=_decimal),
    "fractions.Fraction": Rule(call=_fraction),
    **_refs("builtins.object", "builtins.type", "builtins.NoneType", "builtins.Ellipsis"),
}
