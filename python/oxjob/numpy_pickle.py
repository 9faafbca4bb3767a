"""joblib's module name for ``dump`` and ``load``: code that imports them from
``joblib.numpy_pickle`` keeps working under ``import oxjob as joblib``. They are
:func:`oxjob.dump` and :func:`oxjob.load` (see :mod:`oxjob.persistence`)."""

from .persistence import dump, load

__all__ = ["dump", "load"]
