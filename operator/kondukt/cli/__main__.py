"""``python -m kondukt.cli``: the ``kondukt`` command, for environments without the console script."""

from __future__ import annotations

import sys

from kondukt.cli.app import main

sys.exit(main())
