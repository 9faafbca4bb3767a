"""oxjob: joblib's API on a Rust engine.

``import oxjob as joblib`` works for the parts implemented so far: ``dump``,
``load``, ``hash``, ``register_compressor``, ``Memory`` (with ``MemorizedResult``,
``expires_after``, ``register_store_backend``).
"""

from . import exceptions
from .compressors import register_compressor
from .hashing import hash
from .memory import MemorizedResult, Memory, expires_after
from .persistence import dump, load
from .store import register_store_backend

__version__ = "0.1.0"

__all__ = [
    "Memory",
    "MemorizedResult",
    "dump",
    "exceptions",
    "expires_after",
    "hash",
    "load",
    "register_compressor",
    "register_store_backend",
    "__version__",
]
