"""The peers benchmark's own logic (bench/bench_peers.py, bench/peers_figures.py) on recorded events, with no
control plane: the figures every system is judged by, the floor's reactions, how pods map to steps. No
benchmark timing is asserted: the times below are made-up arrival stamps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench import bench_peers
from bench import peers_figures as figures
from bench.peers_figures import PodRecord


def pod(workflow: str, step: str, seen: float, succeeded: float | None) -> PodRecord:
    return PodRecord(workflow, step, seen=seen, succeeded=succeeded)


def test_chain_latency_is_previous_succeeded_to_next_seen() -> None:
    chain = [pod("c", "s0", 0.0, 1.0), pod("c", "s1", 1.010, 2.0), pod("c", "s2", 2.030, 3.0)]
    other = [pod("d", "s0", 10.0, 11.0), pod("d", "s1", 11.020, 12.5), pod("d", "s2", 12.540, 13.0)]
    found = figures.chain_figures({"c": list(reversed(chain)), "d": other}, steps=3)
    # latencies 10, 30, 20, 40 ms
    assert found["step_p50_ms"] in (20.0, 30.0)
    assert found["step_p95_ms"] == 40.0
    assert found["step_max_ms"] == 40.0
    assert found["chain_runs"] == 2
    assert found["chain_wall_s"] == 3.0


def test_chain_with_missing_steps_or_unfinished_step_is_an_error() -> None:
    with pytest.raises(ValueError, match="chain c: 2 pods seen, expected 3"):
        figures.chain_figures({"c": [pod("c", "s0", 0, 1), pod("c", "s1", 1.1, 2)]}, steps=3)
    with pytest.raises(ValueError, match="step s0 was never seen Succeeded"):
        figures.chain_figures({"c": [pod("c", "s0", 0, None), pod("c", "s1", 1.1, 2)]}, steps=2)


def test_fanout_spread_join_and_total() -> None:
    branches = [pod("f", f"b{i}", 1.0 + i * 0.1, 2.0 + i * 0.1) for i in range(5)]
    after = pod("f", figures.JOIN_STEP, 2.4 + 0.075, 2.6)
    found = figures.fanout_figures([*branches, after], created=0.5, done=2.7)
    assert found == {"branches": 5, "total_s": 2.2, "spread_s": 0.4, "join_ms": 75.0, "first_branch_ms": 500.0}


def test_fanout_without_the_join_step_or_with_an_unfinished_branch_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected one 'after' step, saw 0"):
        figures.fanout_figures([pod("f", "b0", 0, 1)], created=0, done=1)
    with pytest.raises(ValueError, match="1 branches never seen Succeeded"):
        figures.fanout_figures([pod("f", "b0", 0, None), pod("f", "after", 2, 3)], created=0, done=3)


def test_throughput_per_minute_and_create_to_done() -> None:
    created = {f"w{i}": 10.0 + i * 0.01 for i in range(100)}
    done = {f"w{i}": 12.0 + i * 0.08 for i in range(100)}
    found = figures.throughput_figures(created, done)
    elapsed = done["w99"] - created["w0"]
    assert found["workflows"] == 100
    assert found["workflows_per_min"] == round(100 / elapsed * 60, 1)
    assert found["create_done_p50_ms"] < found["create_done_p95_ms"]
    with pytest.raises(ValueError, match="1 workflows never done"):
        figures.throughput_figures({"a": 1.0, "b": 1.0}, {"a": 2.0})


METRICS_BEFORE = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="batch",resource="jobs",scope="resource",subresource="",verb="POST",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="status",verb="PATCH",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="kondukt.io",resource="workflows",scope="resource",subresource="status",verb="PUT",version="v1alpha1"} 2
apiserver_request_duration_seconds_bucket{resource="jobs",verb="POST",le="0.1"} 99
"""
METRICS_AFTER = METRICS_BEFORE.replace("} 10\n", "} 40\n").replace("} 3\n", "} 9\n").replace("} 7\n", "} 67\n") \
    .replace("} 2\n", "} 32\n") + \
    'apiserver_request_total{code="201",group="",resource="events",subresource="",verb="POST",version="v1"} 15\n' \
    'apiserver_request_total{code="201",group="events.k8s.io",resource="events",subresource="",verb="POST"} 5\n' \
    'apiserver_request_total{code="200",group="batch",resource="jobs",subresource="",verb="LIST"} 1.0\n'


def test_api_requests_are_diffed_by_kind_without_watches() -> None:
    before = figures.parse_request_totals(METRICS_BEFORE)
    after = figures.parse_request_totals(METRICS_AFTER)
    assert before[("jobs", "", "POST")] == 10
    assert ("pods", "", "WATCH") in before
    found = figures.request_figures(before, after, workflows=10)
    assert found["api_jobs"] == 31  # 30 creates + 1 list
    assert found["api_pods"] == 60  # the status patches; watches are not counted
    assert found["api_status_writes"] == 90  # pods/status and workflows/status
    assert found["api_events"] == 20  # both Events APIs
    assert found["api_workflows"] == 30
    assert found["api_total"] == 31 + 60 + 30 + 20
    assert found["api_writes"] == found["api_total"] - 1
    assert found["api_total_per_workflow"] == 14.1
    assert found["api_top"] == {"pods/status PATCH": 60, "workflows/status PUT": 30, "jobs POST": 30,
                                "events POST": 20, "jobs LIST": 1}


def test_the_table_shows_every_system_and_marks_what_is_missing() -> None:
    results: dict[str, dict[str, object]] = {
        "floor": {"size_fanout_small": 100, "size_throughput_small": 300, "step_p50_ms": 3.3, "step_p95_ms": 5.9,
                  "workflows_per_min": 7246.0},
        "kondukt": {"size_fanout_small": 100, "step_p50_ms": 11.9, "step_p95_ms": 33.1, "rss_mib": 169.0},
        "argo_tuned": {"error": {"chain": "TimeoutError: ..."}},
    }
    table = figures.markdown_table(results)
    lines = table.splitlines()
    assert lines[0] == "| figure | bare pods | Kondukt | Argo tuned |"
    assert "| chain: pod-to-pod step p50 / p95 | 3.30 ms / 5.90 ms | 11.9 ms / 33.1 ms | failed |" in lines
    assert "| 300 one-task workflows: per minute | 7,246 | — | failed |" in lines
    assert "| controller peak RSS | — | 169 MiB | failed |" in lines


def test_kwok_stages_complete_argo_and_bare_pods() -> None:
    stages = {d["metadata"]["name"]: d for d in yaml.safe_load_all(bench_peers.stages_yaml())}
    owner = next(e for e in stages["pod-complete"]["spec"]["selector"]["matchExpressions"]
                 if e["key"] == ".metadata.ownerReferences.[].kind")
    assert owner["values"] == ["Job", "Workflow"]
    bare = stages["pod-complete-bare"]["spec"]
    assert {"key": '.metadata.labels["bench.kondukt.io/bare"]', "operator": "In", "values": ["true"]} in \
        bare["selector"]["matchExpressions"]
    assert not any("ownerReferences" in e["key"] for e in bare["selector"]["matchExpressions"])
    assert bare["next"] == stages["pod-complete"]["spec"]["next"]


def test_pods_map_to_workflow_and_step_in_every_system() -> None:
    argo_pod = {"metadata": {"labels": {"workflows.argoproj.io/workflow": "fanout-100"},
                             "annotations": {"workflows.argoproj.io/node-name": "fanout-100.b(3:3)"}}}
    assert bench_peers.Argo().identify(argo_pod) == ("fanout-100", "b(3:3)")
    argo_one = {"metadata": {"labels": {"workflows.argoproj.io/workflow": "one-3"},
                             "annotations": {"workflows.argoproj.io/node-name": "one-3"}}}
    assert bench_peers.Argo().identify(argo_one) == ("one-3", "main")
    kondukt_pod = {"metadata": {"name": "x", "annotations": {"kondukt.io/workflow-name": "chain-0",
                                                             "kondukt.io/task-ref": "s4"}}}
    assert bench_peers.Kondukt().identify(kondukt_pod) == ("chain-0", "s4")
    assert bench_peers.Kondukt().identify({"metadata": {"name": "unrelated"}}) is None
    floor = bench_peers.Floor()
    try:
        _, document = floor.document("fork-5", "b2")
        assert floor.identify(document) == ("fork-5", "b2")
        assert document["metadata"]["labels"][bench_peers.BARE_LABEL] == "true"
    finally:
        floor.stop()


class RecordingFloor(bench_peers.Floor):
    """The floor with its API calls recorded instead of sent: what it creates, and when."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, str]] = []

    def create(self, workflow: str, step: str) -> None:
        self.created.append((workflow, step))


def event(workflow: str, step: str, uid: str, phase: str) -> dict[str, Any]:
    return {"type": "MODIFIED", "object": {
        "metadata": {"uid": uid, "name": f"{workflow}-{step}",
                     "labels": {bench_peers.WORKFLOW_LABEL: workflow, bench_peers.STEP_LABEL: step}},
        "status": {"phase": phase}}}


def settle(floor: bench_peers.Floor) -> None:
    floor.pool.shutdown(wait=True)


def test_the_floor_creates_the_next_step_when_it_sees_the_previous_one_succeed() -> None:
    floor = RecordingFloor()
    recorder = bench_peers.Recorder(floor)
    floor.attach(recorder)
    floor.submit("chain-0", "chain", 3)
    assert floor.created == [("chain-0", "s0")]
    recorder.pod_event(event("chain-0", "s0", "u0", "Running"), 1.0)
    recorder.pod_event(event("chain-0", "s0", "u0", "Succeeded"), 2.0)
    recorder.pod_event(event("chain-0", "s0", "u0", "Succeeded"), 2.5)  # seen twice: reacted to once
    recorder.pod_event(event("chain-0", "s1", "u1", "Succeeded"), 3.0)
    assert "chain-0" not in recorder.done
    recorder.pod_event(event("chain-0", "s2", "u2", "Succeeded"), 4.0)
    settle(floor)
    assert floor.created == [("chain-0", "s0"), ("chain-0", "s1"), ("chain-0", "s2")]
    assert recorder.done == {"chain-0": 4.0}
    assert [(r.step, r.seen, r.succeeded) for r in recorder.pods_of("chain-0")] == \
        [("s0", 1.0, 2.0), ("s1", 3.0, 3.0), ("s2", 4.0, 4.0)]


def test_the_floor_joins_a_fanout_when_every_branch_succeeded() -> None:
    floor = RecordingFloor()
    recorder = bench_peers.Recorder(floor)
    floor.attach(recorder)
    floor.submit("fanout-3", "fanout", 3)
    assert sorted(floor.created) == [("fanout-3", "b0"), ("fanout-3", "b1"), ("fanout-3", "b2")]
    for i in range(3):
        recorder.pod_event(event("fanout-3", f"b{i}", f"u{i}", "Succeeded"), 1.0 + i)
    recorder.pod_event(event("fanout-3", "after", "ua", "Pending"), 4.0)
    assert "fanout-3" not in recorder.done
    recorder.pod_event(event("fanout-3", "after", "ua", "Succeeded"), 5.0)
    settle(floor)
    assert floor.created[-1] == ("fanout-3", "after")
    assert recorder.done == {"fanout-3": 5.0}


def test_a_failed_pod_fails_its_workflow_and_the_wait_says_so() -> None:
    floor = RecordingFloor()
    recorder = bench_peers.Recorder(floor)
    floor.attach(recorder)
    recorder.pod_event(event("one-1", "only", "u", "Failed"), 1.0)
    settle(floor)
    with pytest.raises(RuntimeError, match=r"1 workflows failed, e\.g\. one-1: pod one-1-only Failed"):
        recorder.wait_done(["one-1"], timeout=5)


def test_workflow_outcomes() -> None:
    assert bench_peers.Kondukt().outcome({"status": {"phase": "COMPLETED"}}) == "ok"
    assert bench_peers.Kondukt().outcome({"status": {"phase": "RUNNING"}}) is None
    assert bench_peers.Kondukt().outcome({"status": {"phase": "FAILED", "reasonForIncompletion": "x"}}) == \
        "phase FAILED: x"
    assert bench_peers.Argo().outcome({"status": {"phase": "Succeeded"}}) == "ok"
    assert bench_peers.Argo().outcome({"status": {"phase": "Error", "message": "too big"}}) == \
        "phase Error: too big"
    assert bench_peers.Argo().outcome({}) is None


def test_unknown_systems_are_refused_with_their_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_peers.main(["--systems", "floor,airflow"])
    assert "unknown system(s) airflow; known: floor, floor_jobs, kondukt, argo_stock, argo_tuned" in \
        capsys.readouterr().err



def test_a_table_combines_result_files_and_names_their_sources(tmp_path: Path) -> None:
    first = tmp_path / "a.json"
    first.write_text(json.dumps({"floor": {"step_p50_ms": 3.3, "load_before": [1, 1, 1], "load_after": [2, 2, 2]},
                                 "kondukt": {"step_p50_ms": 99.0},
                                 "meta": {"command": "python -m bench peers --systems floor,kondukt"}}))
    second = tmp_path / "b.json"
    second.write_text(json.dumps({"kondukt": {"step_p50_ms": 11.9}, "argo_tuned": {"step_p50_ms": 68.0}}))
    markdown = bench_peers.combine([first, second], tmp_path).read_text()
    assert "- `a.json`: floor, kondukt; command `python -m bench peers --systems floor,kondukt`" in markdown
    assert "- `b.json`: kondukt, argo_tuned; command `?`" in markdown
    assert "| chain: pod-to-pod step p50 / p95 | 3.30 ms / — | 11.9 ms / — | 68.0 ms / — |" in markdown
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"c\.json: no system's figures in it"):
        bench_peers.combine([tmp_path / "c.json"], tmp_path)


def test_the_most_pods_active_at_once() -> None:
    pods = [pod("f", "b0", 0.0, 2.0), pod("f", "b1", 1.0, 3.0), pod("f", "b2", 2.0, 2.5),
            pod("f", "b3", 3.0, None), PodRecord("f", "b4", seen=3.5, failed=4.0)]
    # at 1.0: b0, b1; at 2.0 b0 ends as b2 starts: b1, b2; at 3.5: b3, b4 (b1 ended at 3.0)
    assert figures.max_active(pods) == 2
    assert figures.max_active([]) == 0
    assert figures.max_active([pod("f", f"b{i}", float(i), None) for i in range(5)]) == 5
