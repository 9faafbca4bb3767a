"""joblib: the private plumbing behind :mod:`oxjob.joblib_backend`.

``hook`` registers the ``"oxjob"`` joblib backend once joblib is imported (without
importing it), ``jobs`` runs around each of joblib's batches (the runner the workers
call, the future joblib holds, its callbacks' thread), and ``bridge`` carries an
``oxjob.parallel_config`` into joblib's own settings.
"""
