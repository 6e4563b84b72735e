"""The peers benchmark harness (bench/bench_peers.py) end to end on tiny sizes: the floor and Kondukt, each on
its own control plane, through the same watcher, /proc and API-server-metrics code as the real run. It checks
that every figure is produced, never what it is (timings are for `python -m bench peers`, not for tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import bench_peers

pytestmark = pytest.mark.e2e

TINY = {"chain_steps": 3, "chain_repeats": 1, "fanout_small": 3, "fanout_large": 4,
        "throughput_small": 3, "throughput_large": 4, "fork": 5}


def check_common(found: dict[str, object]) -> None:
    assert "error" not in found, found.get("error")
    for key in ("step_p50_ms", "step_p95_ms", "workflows_per_min", "join_ms", "create_done_p95_ms",
                "fanout_small_total_s", "fanout_large_join_ms", "fork_total_s", "control_plane_cpu_s"):
        assert isinstance(found[key], float), (key, found[key])
    assert found["chain_runs"] == 1 and found["chain_steps"] == 3
    assert found["fanout_small_branches"] == 3 and found["fork_branches"] == 5
    assert found["workflows"] == 3 and found["throughput_large_workflows"] == 4
    # Every pod is created, bound and completed through the API server: at least 3 requests per pod.
    assert isinstance(found["api_pods_per_workflow"], float) and found["api_pods_per_workflow"] >= 3


def test_floor_of_bare_pods(tmp_path: Path) -> None:
    found = bench_peers.run_system("floor", quick=True, scratch=tmp_path, sizes=TINY)
    check_common(found)
    assert found["cpu_s_per_workflow"] is None and found["rss_mib"] is None  # no controller process


def test_kondukt(tmp_path: Path) -> None:
    found = bench_peers.run_system("kondukt", quick=True, scratch=tmp_path, sizes=TINY)
    check_common(found)
    assert isinstance(found["cpu_s_per_workflow"], float) and found["cpu_s_per_workflow"] > 0
    assert isinstance(found["rss_mib"], float) and found["rss_mib"] > 0
    assert isinstance(found["fork_object_kib"], float) and found["fork_object_kib"] > 0
    assert str(found["version"]).startswith("kondukt ")
