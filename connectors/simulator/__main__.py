"""``python -m connectors.simulator [SCENARIO]``: the same as ``hedgewatch simulate``."""

import sys

from hedgewatch.connectors.simulator.cli import main

raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else None))
