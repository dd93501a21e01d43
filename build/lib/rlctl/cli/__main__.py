"""``python -m rlctl.cli``: the ``rlctl`` command without its console script (``bench uav`` starts its training
runs this way, and the CLI tests run it so)."""

from __future__ import annotations

import sys

from rlctl.cli import main

sys.exit(main())
