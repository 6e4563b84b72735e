"""Hypothesis profiles: property tests are reproducible by default, wider exploration is asked for.

- ``ci`` (the default, and always when ``CI`` is set): derandomized, so every run of ``make test`` on any
  clone tries the same examples; a property test cannot pass in CI and fail on a fresh clone.
- ``dev`` (``HYPOTHESIS_PROFILE=dev``): random examples, five times as many, for local exploration. An example
  it finds becomes an explicit test (an ``@example`` or a named case), never only a database entry.

Tests that set ``max_examples`` themselves keep their number; both profiles set no deadline (timing is
not what these tests check).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, max_examples=100, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", derandomize=False, max_examples=500, deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))
