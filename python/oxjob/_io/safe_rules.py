"""What a safe load may do with a global: call it, rebuild it, give an object its state.

:class:`LoadState` is the part of :class:`~oxjob._io.safe_unpickle.SafeUnpickler`
that decides. Three tables, filled as globals resolve, keyed by object identity:

- ``calls``: what ``REDUCE`` may call, each with a handler that validates the
  arguments (the reviewed default rules) or, for a name listed exactly, calls it;
- ``news``: what ``NEWOBJ`` (and ``copyreg``'s reconstructors) may create;
- ``fresh``: the objects the loader has just created and not yet given state. ``BUILD``
  applies only to those, once, through the builder their creator chose: never to a
  class, a module, a global or an object the stream got from elsewhere.
"""

from __future__ import annotations

import collections
import sys
import types
from typing import Any, NamedTuple

from ..exceptions import CorruptFileError, LoadLimitError, UnsafeLoadError
from .old_paths import current
from .safe import (
    Policy,
    check_name,
    not_callable,
    python3_name,
    refuse,
    refused,
    resolve,
)


class Rule(NamedTuple):
    """A reviewed default rule for one qualified name."""

    call: Any = None  # handler(state, func, args) for REDUCE
    new: Any = None  # handler(state, cls, args, kwargs) for NEWOBJ
    needs: str | None = None  # applies only when this name (or its package) is trusted


class Opaque:
    """``inspect``'s stand-in for what a global that needs ``trusted`` would make."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<not rebuilt: {self.name}>"


class Pending:
    """An object that only its BUILD can make (a numpy dtype): memo entries follow it."""

    __slots__ = ("args", "memo_keys")

    def __init__(self, args: Any) -> None:
        self.args = args
        self.memo_keys: list[int] = []


def qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(name, str):
        return f"{module}.{name}"
    return f"a {type(obj).__qualname__}"


def _rules() -> dict[str, Rule]:
    from .safe_builtins import RULES as builtin_rules
    from .safe_models import RULES as model_rules
    from .safe_numpy import RULES as numpy_rules

    return {**builtin_rules, **numpy_rules, **model_rules}


_RULES: dict[str, Rule] | None = None


class LoadState:
    """The identity tables of one safe load, and the rules that consult them."""

    def __init__(self, unpickler: Any) -> None:
        global _RULES
        if _RULES is None:
            _RULES = _rules()
        self.rules = _RULES
        self.u = unpickler
        self.policy: Policy = unpickler.policy
        self.calls: dict[int, tuple[Any, Any]] = {}
        self.news: dict[int, tuple[Any, Any]] = {}
        self.fresh: dict[int, tuple[Any, Any]] = {}
        self.owned: dict[int, Any] = {}  # objects rebuilt here: containers ops allowed
        self.tuples: dict[int, tuple[tuple, int, int]] = {}
        self.made: dict[int, Any] = {}  # objects handlers made, for identity checks
        self.prefix_refs: dict[int, Any] = {}  # resolved through a prefix only

    # -- globals ---------------------------------------------------------------------
    def find_global(self, module: str, name: str) -> Any:
        from .joblib_read import joblib_record

        module, name = current(*python3_name(module, name))
        qual = f"{module}.{name}"
        record = joblib_record(module, name)
        if record is not None:
            from .safe_joblib import joblib_new

            if self.u.context is None or not self.u.context.joblib:
                raise CorruptFileError(
                    f"{self.u.what}: the stream names joblib's array record {qual}, which "
                    "only joblib's own format holds"
                )
            self.u.seen.setdefault(qual, True)
            self.news[id(record)] = (record, joblib_new)
            return record
        rule = self.rules.get(qual)
        if rule is not None and (rule.needs is None or self.policy.trusts(rule.needs)):
            check_name(module, "_" if name.startswith("__") and name.endswith("__") else name)
            self.u.seen.setdefault(qual, rule.needs is None)
            if self.u.record and rule.needs is not None:
                return Opaque(qual)
            obj = _resolve_default(module, name)
            if rule.call is not None:
                self.calls[id(obj)] = (obj, rule.call)
            if rule.new is not None:
                self.news[id(obj)] = (obj, rule.new)
            return obj
        check_name(module, name)
        self.u.seen.setdefault(qual, False)
        if self.u.record:
            return Opaque(qual)
        if self.policy.listed(qual):
            obj = resolve(module, name)
            if not callable(obj) or isinstance(obj, types.ModuleType):
                raise refuse(f"refusing '{qual}': only classes and functions can be trusted")
            self.calls[id(obj)] = (obj, _exact_call)
            if isinstance(obj, type):
                self.news[id(obj)] = (obj, _exact_new)
            return obj
        if self.policy.under(module):
            return self._under_prefix(module, name)
        raise refused(module, name)

    def _under_prefix(self, module: str, name: str) -> Any:
        obj = resolve(module, name)
        home = getattr(obj, "__module__", None)
        qual = getattr(obj, "__qualname__", None)
        if not isinstance(home, str) or not isinstance(qual, str):
            raise refuse(
                f"refusing '{module}.{name}': a module prefix allows classes and functions "
                "only, never other objects of a module (they are shared process state)"
            )
        # A listed module may re-export something from elsewhere (``from os import
        # system``): what the name resolves to must be under the list itself.
        if not (self.policy.under(home) or self.policy.listed(f"{home}.{qual}")):
            raise refused(home, qual)
        check_name(home, qual.replace("<", "_").replace(">", "_"))
        self.prefix_refs[id(obj)] = obj
        if isinstance(obj, type) and not issubclass(obj, type):
            self.news[id(obj)] = (obj, rebuild_new)
        elif not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
            raise refuse(f"refusing '{home}.{qual}': not a class or a function")
        return obj  # a function: a value the file may hold, never call

    # -- REDUCE, NEWOBJ, BUILD ----------------------------------------------------------
    def call(self, func: Any, args: tuple) -> Any:
        if type(func) is Opaque or (self.u.record and any(type(a) is Opaque for a in args)):
            return Opaque(f"{getattr(func, 'name', qualified(func))}(...)")
        entry = self.calls.get(id(func))
        if entry is None or entry[0] is not func:
            if self.prefix_refs.get(id(func)) is func and not isinstance(func, type):
                raise not_callable(
                    qualified(func),
                    "a module prefix in trusted lets a file hold a function as a value "
                    "(rebuilding classes only), never call it",
                )
            if id(func) in self.news:
                raise not_callable(
                    qualified(func),
                    "a module prefix in trusted lets a class be rebuilt (created without "
                    "running its constructor, then given its state), never called",
                )
            raise refuse(
                f"{self.u.what}: refusing to call {qualified(func)}: a safe load calls only "
                "its reviewed rules and the names listed exactly in trusted"
            )
        return entry[1](self, func, args)

    def new(self, cls: Any, args: tuple, kwargs: dict) -> Any:
        if type(cls) is Opaque:
            return Opaque(f"{cls.name}(...)")
        entry = self.news.get(id(cls))
        if entry is None or entry[0] is not cls:
            raise refuse(f"{self.u.what}: refusing to create a {qualified(cls)}: not allowed")
        return entry[1](self, cls, args, kwargs)

    def build(self, inst: Any, state: Any) -> Any:
        if type(inst) is Opaque:
            return inst
        entry = self.fresh.pop(id(inst), None)
        if entry is None or entry[0] is not inst:
            raise refuse(
                f"{self.u.what}: refusing BUILD on {_describe(inst)}: a safe load gives "
                "state only to an object it has just rebuilt, once"
            )
        return entry[1](self, inst, state)

    def add_fresh(self, obj: Any, builder: Any) -> Any:
        self.fresh[id(obj)] = (obj, builder)
        return obj

    # -- containers ------------------------------------------------------------------------
    def _may_fill(self, target: Any, base: type) -> bool:
        if type(target) is base:
            return True
        return isinstance(target, base) and self.owned.get(id(target)) is target

    def append(self, target: Any, items: list) -> None:
        if type(target) is Opaque:
            return
        if not (self._may_fill(target, list) or self._may_fill(target, collections.deque)):
            raise refuse(f"{self.u.what}: refusing APPEND to {_describe(target)}")
        target.extend(items)

    def set_items(self, target: Any, items: list) -> None:
        if type(target) is Opaque:
            return
        if not self._may_fill(target, dict):
            raise refuse(f"{self.u.what}: refusing SETITEM on {_describe(target)}")
        self.charge_keys(items[::2])
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def add_items(self, target: Any, items: list) -> None:
        if type(target) is Opaque:
            return
        if not self._may_fill(target, set):
            raise refuse(f"{self.u.what}: refusing ADDITEMS on {_describe(target)}")
        self.charge_keys(items)
        target.update(items)

    def charge_keys(self, keys: Any) -> None:
        """Hashing a key costs its size: charge it, so memo reuse stays linear."""
        cost = 0
        for key in keys:
            kind = type(key)
            if kind is tuple:
                entry = self.tuples.get(id(key))
                cost += entry[1] if entry is not None and entry[0] is key else len(key) + 1
            elif kind is int:
                cost += key.bit_length() // 64 + 1
            else:
                cost += 1
        self.u.charge_work(cost)

    def new_tuple(self, items: tuple) -> tuple:
        weight, depth = len(items) + 1, 1
        for item in items:
            if type(item) is tuple:
                entry = self.tuples.get(id(item))
                if entry is not None and entry[0] is item:
                    weight += entry[1]
                    depth = max(depth, entry[2] + 1)
                else:  # a flat tuple (not kept in the table)
                    weight += len(item) + 1
                    depth = max(depth, 2)
        if depth > 200:
            raise LoadLimitError(f"{self.u.what}: tuples nested deeper than 200 levels")
        if depth > 1 or weight > 64:
            self.tuples[id(items)] = (items, weight, depth)
        return items

    def memoized(self, index: int, value: Any) -> None:
        if type(value) is Pending:
            value.memo_keys.append(index)

    def settle(self, pending: Pending, value: Any) -> Any:
        """``pending`` became ``value`` at its BUILD: so do the memo entries naming it."""
        memo = self.u.memo
        for key in pending.memo_keys:
            if memo.get(key) is pending:
                memo[key] = value
        return value

    def finish(self) -> None:
        """Objects still waiting for state are left as created (pickle does the same)."""
        self.fresh.clear()


def _describe(obj: Any) -> str:
    if isinstance(obj, type):
        return f"the class {qualified(obj)}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__}"


def _resolve_default(module: str, name: str) -> Any:
    # numpy 2 moved numpy.core to numpy._core (the old name warns): same objects.
    if module.startswith("numpy.core.") or module == "numpy.core":
        try:
            return resolve("numpy._core" + module[len("numpy.core") :], name)
        except UnsafeLoadError:  # not there under the new name: the old name decides
            pass
    return resolve(module, name)


def _exact_call(state: LoadState, func: Any, args: tuple) -> Any:
    """A name listed exactly: the caller trusts its code with the file's arguments."""
    value = func(*args)
    if not isinstance(value, (type, types.ModuleType)):
        state.add_fresh(value, trusted_build)
        state.owned[id(value)] = value
    return value


def _exact_new(state: LoadState, cls: Any, args: tuple, kwargs: dict) -> Any:
    value = cls.__new__(cls, *args, **kwargs)
    if isinstance(value, (type, types.ModuleType)):
        raise refuse(f"refusing '{qualified(cls)}': its __new__ returned a class")
    state.owned[id(value)] = value
    return state.add_fresh(value, trusted_build)


_PLAIN_NEW = {object.__new__: object, dict.__new__: dict, list.__new__: list, set.__new__: set}


def rebuild_new(state: LoadState, cls: Any, args: tuple, kwargs: dict) -> Any:
    """Create ``cls`` the way pickle does for a plain object, running none of its code."""
    if args or kwargs:
        raise not_callable(
            qualified(cls),
            "a module prefix lets a class be rebuilt without arguments only (arguments "
            "would go to its __new__)",
        )
    base = _PLAIN_NEW.get(cls.__new__)
    if base is None or not issubclass(cls, base) or issubclass(cls, type):
        raise not_callable(
            qualified(cls), "it has a __new__ of its own, which a module prefix does not trust"
        )
    value = base.__new__(cls)
    state.owned[id(value)] = value
    return state.add_fresh(value, trusted_build)


def trusted_build(state: LoadState, inst: Any, st: Any) -> Any:
    """State for an instance of a trusted class: its ``__setstate__``, else its ``__dict__``."""
    cls = type(inst)
    if isinstance(inst, (type, types.ModuleType)):
        raise refuse(f"refusing BUILD on {_describe(inst)}")
    # The class is trusted (listed, or under a listed prefix): so is the
    # __setstate__ it has, wherever in its bases that is defined.
    setstate = getattr(cls, "__setstate__", None)
    if setstate is not None:
        setstate(inst, st)
        return inst
    slots = None
    if isinstance(st, tuple) and len(st) == 2:
        st, slots = st
    if st:
        if type(st) is not dict:
            raise CorruptFileError(f"{state.u.what}: state of {_describe(inst)} is not a dict")
        target = object.__getattribute__(inst, "__dict__")
        for key, value in st.items():
            if type(key) is not str:
                raise CorruptFileError(f"{state.u.what}: attribute names must be str")
            target[sys.intern(key)] = value
    if slots:
        if type(slots) is not dict:
            raise CorruptFileError(f"{state.u.what}: slot state of {_describe(inst)}")
        for key, value in slots.items():
            if type(key) is not str:
                raise CorruptFileError(f"{state.u.what}: attribute names must be str")
            setattr(inst, key, value)
    return inst
