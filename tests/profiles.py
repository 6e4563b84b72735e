"""How many examples a property or fuzz test tries, under the loaded hypothesis profile (tests/conftest.py).

``examples(n)``: ``n`` derandomized examples under the ``ci`` profile (the default); the ``dev`` profile's
number of random ones under ``dev``. One mechanism for every property test, so that CI is reproducible and
a deeper local search is one environment variable (``HYPOTHESIS_PROFILE=dev``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings


def examples(ci_examples: int, **extra: Any) -> settings:
    profile = settings.default
    if profile.derandomize:
        return settings(max_examples=ci_examples, derandomize=True, deadline=None, **extra)
    return settings(max_examples=max(ci_examples, profile.max_examples), derandomize=False, deadline=None, **extra)
