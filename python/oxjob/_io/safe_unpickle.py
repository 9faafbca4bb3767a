"""The pickle opcode interpreter of safe loads (``load(trusted=...)``) and ``inspect``.

Python's ``Unpickler`` calls whatever a stream names once ``find_class`` lets a name
through: ``REDUCE`` calls it with the file's arguments, ``NEWOBJ`` runs its
``__new__``, ``BUILD`` runs ``__setstate__`` or ``setattr`` on whatever is on the
stack, a class object included. Hooks cannot tell these uses apart, so safe loads
interpret the opcodes here instead (as PyTorch's ``weights_only`` loader does):
globals resolve through :class:`~oxjob._io.safe.Policy`, and each of ``REDUCE``,
``NEWOBJ`` and ``BUILD`` asks ``safe_rules`` what it may do with that object.
Every opcode costs O(1) plus the bytes it reads, and every byte read is charged to
a budget, so memory and time stay proportional to the file.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import CorruptFileError, LoadLimitError, UnsafeLoadError
from . import safe_rules as rules
from .safe import Policy

_CHUNK = 1 << 20
# Longest decimal text an INT, LONG or FLOAT opcode may hold: int() of text is
# quadratic (Python 3.11 caps it at 4300 digits by default, older ones do not).
MAX_DIGITS = 4300
# Nesting of tuples: hashing a tuple recurses in C without a depth check.
MAX_TUPLE_DEPTH = 200


class SafeUnpickler:
    """Reads one pickle stream from ``file`` under ``policy``, running none of its code.

    ``record=True`` is ``inspect``'s mode: a global that would need ``trusted``
    becomes an inert :class:`rules.Opaque` and is only recorded.
    """

    def __init__(
        self,
        file: Any,
        policy: Policy,
        *,
        what: str,
        max_bytes: int,
        buffers: Any = None,
        record: bool = False,
        context: Any = None,
    ) -> None:
        self.file = file
        self._read_raw = file.read
        self._readline_raw = file.readline
        self.policy = policy
        self.what = what
        self.max_bytes = max_bytes
        self.used = 0
        self.work = 0
        self.given_buffers = list(buffers) if buffers is not None else []
        self.buffers = iter(self.given_buffers) if buffers is not None else None
        self.record = record
        self.context = context  # joblib's reading options (dirname, native)
        self.seen: dict[str, bool] = {}
        self.memo: dict[int, Any] = {}
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.state = rules.LoadState(self)
        self.proto = 0
        self.offset = 0
        self.value: Any = None

    # -- budgets -------------------------------------------------------------------
    def charge(self, nbytes: int, what: str = "data") -> None:
        """Count ``nbytes`` of memory against ``max_bytes``, before allocating it."""
        self.used += nbytes
        if self.used > self.max_bytes:
            raise LoadLimitError(
                f"{self.what}: the file asks for more than max_bytes={self.max_bytes} bytes "
                f"of {what} (at least {self.used}); pass a larger max_bytes= to load() if "
                "you expect a file this large"
            )

    def charge_work(self, units: int) -> None:
        """Count work that is not reading (hashing keys): bounded by the stream's size."""
        self.work += units
        if self.work > self.max_bytes + 64 * self.offset + (1 << 20):
            raise LoadLimitError(
                f"{self.what}: the stream asks for more work (hashing, comparing) than its "
                f"size allows ({self.work} units for {self.offset} bytes); refusing it"
            )

    def read(self, n: int, what: str = "data") -> bytes:
        if n < 0:
            raise CorruptFileError(f"{self.what}: negative length in the pickle stream")
        self.charge(n, what)
        if n <= _CHUNK:
            data = self._read_raw(n)
        else:  # a hostile length costs only what the file holds
            parts, left = [], n
            while left:
                part = self._read_raw(min(left, _CHUNK))
                if not part:
                    break
                parts.append(part)
                left -= len(part)
            data = b"".join(parts)
        if len(data) != n:
            raise CorruptFileError(f"{self.what}: the pickle stream is truncated")
        self.offset += n
        return data

    def readline(self, limit: int = MAX_DIGITS) -> bytes:
        """One text argument; numbers and names may not be longer than ``limit``."""
        parts, size = [], 0
        while True:
            part = self._readline_raw(min(limit + 2 - size, _CHUNK))
            size += len(part)
            self.charge(len(part), "text")
            parts.append(part)
            if not part or part.endswith(b"\n") or size > limit + 1:
                break
        line = b"".join(parts)
        if size > limit + 1:
            raise LoadLimitError(
                f"{self.what}: a number or name in a text opcode is longer than {limit} "
                "characters (converting longer text takes time that grows faster than it)"
            )
        if not line.endswith(b"\n"):
            raise CorruptFileError(f"{self.what}: the pickle stream is truncated")
        self.offset += size
        return line[:-1]

    # -- the loop --------------------------------------------------------------------
    def load(self) -> Any:
        # safe_scalars adds its opcodes to _DISPATCH when imported: importing it here
        # (not at the end of safe_opcodes) completes the table without an import circle.
        from . import safe_scalars  # noqa: F401
        from .safe_opcodes import _DISPATCH as dispatch
        from .safe_opcodes import _STOP

        read = self._read_raw
        try:
            while True:
                key = read(1)
                if not key:
                    raise self._bad_start("Ran out of input", "the pickle stream is truncated")
                self.offset += 1
                op = dispatch.get(key[0])
                if op is None:
                    raise self._bad_start(
                        f"invalid load key, {key!r}.",
                        f"invalid load key, {key!r} (not a pickle opcode this loader accepts)",
                    )
                if op(self) is _STOP:
                    value = self.stack.pop()
                    self.state.finish()
                    return value
        except (UnsafeLoadError, CorruptFileError, MemoryError):
            raise
        except RecursionError:
            raise CorruptFileError(f"{self.what}: the pickle stream nests too deeply") from None
        except Exception as exc:  # numpy's or a trusted class's own checks refusing state
            raise CorruptFileError(
                f"{self.what}: invalid pickle stream near byte {self.offset}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _bad_start(self, first: str, later: str) -> CorruptFileError:
        if self.offset <= 1:  # not a pickle at all: the message plain loads give
            return CorruptFileError(
                f"{self.what}: not an oxjob, joblib or pickle file (bad magic, then {first})"
            )
        return CorruptFileError(f"{self.what}: {later}")

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def global_(self, module: str, name: str) -> Any:
        return self.state.find_global(module, name)


def load_stream(
    file: Any,
    policy: Policy,
    what: str,
    *,
    stored: int | None = None,
    codec: str | None = None,
    buffers: Any = None,
    context: Any = None,
    record: bool = False,
) -> SafeUnpickler:
    """Run a safe load of one stream; the unpickler (with ``value`` and ``seen``)."""
    from .safe import budget

    unpickler = SafeUnpickler(
        file,
        policy,
        what=what,
        max_bytes=budget(policy, stored, codec),
        buffers=buffers,
        record=record,
        context=context,
    )
    unpickler.value = unpickler.load()
    return unpickler
