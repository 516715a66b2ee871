"""``python -m orchestrator.cli``: the command line."""

import sys

from orchestrator.cli import main

sys.exit(main())
