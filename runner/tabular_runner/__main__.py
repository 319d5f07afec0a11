"""``python -m tabular_runner`` is ``tabular-runner``."""

import sys

from tabular_runner.cli import main

sys.exit(main())
