"""Files: the private plumbing behind :mod:`oxjob.persistence` and :mod:`oxjob.compressors`.

``container`` is oxjob's own format, ``streams`` the standard compressed streams,
``joblib_read``/``joblib_write`` joblib's format, ``load`` tells formats apart,
``safe*`` the safe loader (``load(trusted=...)``) and its allowlists, ``atomic``
writes a file under its name only once complete, and ``old_paths`` says where
modules that files name by an older path live now.
"""
