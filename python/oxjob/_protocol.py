"""Frame kinds and the pickling used between the caller and its workers.

Both sides use these helpers, so the rules live in one place: pickle protocol 5,
out-of-band buffers of at least ``max_nbytes`` leave the stream (the engine moves
them in memfds), everything else stays in-band.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

FUNCTION, BATCH, RESULT, ERROR, END_CALL, SHUTDOWN, READY, INIT = 1, 2, 3, 4, 5, 6, 7, 8

#: Default ``max_nbytes``: out-of-band buffers from this size travel in shared memory.
DEFAULT_MAX_NBYTES = 1 << 20


def dumps(obj: Any, max_nbytes: int | None, by_value: bool = False) -> tuple[Any, list]:
    """Pickle ``obj``; return the stream and the large out-of-band buffers.

    ``by_value`` uses cloudpickle, which also handles lambdas, closures and
    functions or classes defined in ``__main__``.
    """
    buffers: list = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        raw = buffer.raw()
        if max_nbytes is None or raw.nbytes < max_nbytes:
            return True
        buffers.append(raw)
        return False

    stream = io.BytesIO()
    if by_value:
        import cloudpickle

        pickler: pickle.Pickler = cloudpickle.Pickler(
            stream, protocol=5, buffer_callback=out_of_band
        )
    else:
        pickler = pickle.Pickler(stream, protocol=5, buffer_callback=out_of_band)
    pickler.dump(obj)
    return stream.getbuffer(), buffers


def loads(body: Any, buffers: list) -> Any:
    """Unpickle a stream with its out-of-band buffers."""
    return pickle.loads(body, buffers=buffers)
