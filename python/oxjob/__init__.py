"""oxjob: joblib's API on a Rust engine.

``import oxjob as joblib`` works for the parts implemented so far: ``dump``,
``load``, ``hash`` and ``register_compressor``.
"""

from . import exceptions
from .compressors import register_compressor
from .hashing import hash
from .persistence import dump, load

__version__ = "0.1.0"

__all__ = ["dump", "load", "hash", "register_compressor", "exceptions", "__version__"]
