"""Defaults and byte sizes shared by the front ends and the workers: written once here.

Imports nothing of oxjob's, so any module may import it.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: Arguments and results from this size travel in shared memory (joblib's ``'1M'``).
DEFAULT_MAX_NBYTES = 1 << 20
DEFAULT_MAX_NBYTES_TEXT = "1M"
#: Seconds after which an idle worker of a ``Parallel`` call exits (loky's 300).
DEFAULT_IDLE_TIMEOUT = 300.0

_BYTE_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: Any, name: str) -> int:
    """Bytes from an int or a string such as ``'1G'``/``'500M'`` (joblib's units, and
    ``T``, an optional ``B``); the one size parser (``bytes_limit``, ``max_nbytes``).

    Raises
    ------
    ValueError
        Naming ``name`` and the value, for anything else or a negative size.
    """
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", value.upper())
        if not match:
            raise ValueError(
                f"Invalid {name} {value!r}: use an int or a string like '500M' or '1G'"
            )
        return int(float(match.group(1)) * _BYTE_UNITS.get(match.group(2), 1))
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative int or a string, got {value!r}")
    return value
