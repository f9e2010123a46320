"""`python -m launcher` (what `make run` runs)."""

import sys

from .run import main

sys.exit(main())
