"""`python -m streams.cli ...`: the `tokenplan` command (worker subprocesses start it this way)."""
import sys

from streams.cli import main

sys.exit(main())
