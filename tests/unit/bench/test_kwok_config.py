"""kwok's configuration of the local control plane (hack/control-plane/kwok-config.yaml) and the benchmark that
compares it with kwok's defaults (bench/bench_kwok.py). kwok applies no defaults to a KwokConfiguration it reads
from a file, so an option left out is 0: a parallelism of 0 makes kwok exit or start no worker."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench import bench_kwok

from tests.e2e.controlplane import KWOK_CONFIG_FILE, ControlPlane

PARALLELISMS = ("podPlayStageParallelism", "nodePlayStageParallelism", "nodeLeaseParallelism",
                "podsOnNodeSyncParallelism")


def test_every_parallelism_is_written_out_and_positive() -> None:
    document = yaml.safe_load(KWOK_CONFIG_FILE.read_text())
    assert document["apiVersion"] == "config.kwok.x-k8s.io/v1alpha1"
    assert document["kind"] == "KwokConfiguration"
    options = document["options"]
    for option in PARALLELISMS:
        assert isinstance(options[option], int) and options[option] > 0, option
    assert options["podPlayStageParallelism"] > 4  # kwok's default, too few on a busy API server
    # kwok's other defaults, written out because kwok does not apply them to a file it reads
    assert options["enablePodsOnNodeSyncListPager"] is True
    assert options["manageAllNodes"] is False


def test_the_benchmarks_baseline_differs_only_in_the_pod_workers() -> None:
    ours = yaml.safe_load(KWOK_CONFIG_FILE.read_text())
    baseline = yaml.safe_load(bench_kwok.KWOK_DEFAULTS)
    assert baseline["options"]["podPlayStageParallelism"] == 4
    ours["options"].pop("podPlayStageParallelism")
    baseline["options"].pop("podPlayStageParallelism")
    assert ours == baseline


def test_the_control_plane_passes_it_to_kwok_before_the_stages(tmp_path: Path) -> None:
    spawned: list[list[str]] = []

    class Recording(ControlPlane):
        def _spawn(self, name: str, args: object) -> None:
            spawned.append([name, *args])  # type: ignore[misc]

    Recording(workdir=tmp_path, binaries=tmp_path)._start_kwok()
    (name, *args), = spawned
    configs = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    assert name == "kwok"
    assert configs[0] == str(KWOK_CONFIG_FILE)
    assert configs[1].endswith("kwok-stages.yaml")
    assert "--node-ip=127.0.0.2" in args
