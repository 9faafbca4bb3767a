"""Command line: the private plumbing behind :mod:`oxjob.cli` and ``python -m oxjob``.

``commands`` parses the arguments and runs a command; ``demo`` times oxjob's main
jobs (joblib's beside them), ``inspect`` tells a file's format and the types it
needs without running any of its code. Nothing imports this room.
"""
