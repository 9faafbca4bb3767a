"""Backend plumbing behind :mod:`oxjob.backends` (the public face).

``base`` holds the backend classes, their registry, CPU counting and the
thread-local settings stack; :mod:`oxjob._config` and :mod:`oxjob._resolve`
build on it, and :mod:`oxjob.backends` re-exports all three.
"""
