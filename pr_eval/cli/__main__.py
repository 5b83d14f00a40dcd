"""`python -m pr_eval.cli`: the same as `pr-eval`."""

import sys

from . import main

sys.exit(main())
