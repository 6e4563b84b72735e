"""The hypothesis profiles (tests/conftest.py, tests/profiles.py): CI is reproducible, dev searches wider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = "import tests.conftest\nfrom tests.profiles import examples\ns = examples(60)\nprint(s.max_examples, s.derandomize)"


@pytest.mark.parametrize(("env", "expected"), [
    pytest.param({}, "60 True", id="default-is-ci"),
    pytest.param({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}, "60 True", id="ci-wins-over-dev"),
    pytest.param({"HYPOTHESIS_PROFILE": "dev", "HYPOTHESIS_EXAMPLES": "70"}, "70 False", id="dev-searches-wider"),
    pytest.param({"HYPOTHESIS_PROFILE": "dev", "HYPOTHESIS_EXAMPLES": "10"}, "60 False", id="dev-never-fewer"),
])
def test_profile_selection(env: dict[str, str], expected: str) -> None:
    clean = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE", "HYPOTHESIS_EXAMPLES")}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env={**clean, **env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
