"""Hypothesis profiles: the one mechanism that says how property and fuzz tests pick their examples.

- ``ci`` (the default, and always when ``CI`` is set): derandomized, so every run of ``make test`` on any
  clone tries the same examples; a property test cannot pass in CI and fail on a fresh clone.
- ``dev`` (``HYPOTHESIS_PROFILE=dev``): random examples, ``HYPOTHESIS_EXAMPLES`` per property (default
  500), for local exploration. An example it finds becomes an explicit test (an ``@example`` or a named
  case), never only a database entry.

Each property states its CI number through ``tests.profiles.examples(n)``; under ``dev`` every property
runs the dev number instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", derandomize=False, deadline=None, print_blob=True,
                          max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "500")))
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))
