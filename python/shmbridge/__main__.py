"""``python -m shmbridge``: the ``shmbridge`` command line (see :mod:`shmbridge.cli`)."""

from .cli import main

raise SystemExit(main())
