"""Backend plumbing behind :mod:`oxjob.backends` (the public face).

``base`` holds the backend classes, their registry, CPU counting and the
thread-local settings stack; ``config`` (``parallel_config``, ``parallel_backend``)
and ``resolve`` (the backend a call uses) build on it, and :mod:`oxjob.backends`
re-exports all three.
"""
