"""``python -m oxjob``: see :mod:`oxjob.cli`."""

import sys

from .cli import main

sys.exit(main())
