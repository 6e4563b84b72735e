"""The figures of the peers benchmark (``bench/bench_peers.py``), computed from what its watcher recorded.

Kept apart from the runner, and free of any I/O, so that the arithmetic every system is judged by can be
tested on recorded events (``tests/unit/bench/test_peers_figures.py``) without a control plane.

Times are the watcher's arrival times (``time.monotonic()`` seconds) of pod events on one watch stream:
a pod is *seen* when its first event arrives, *succeeded* when the first event showing phase Succeeded
arrives. Both travel the same path (API server watch cache -> the watcher), so the delivery delay cancels
out to first order.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

JOIN_STEP = "after"  # every fan-out's step after the join has this name, in every system

MUTATING_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY", "CREATE", "UPDATE", "DELETECOLLECTION"})
READ_VERBS = frozenset({"GET", "LIST"})


@dataclass
class PodRecord:
    """One pod as the watcher saw it: which workflow and step it belongs to, and when."""

    workflow: str
    step: str
    seen: float
    succeeded: float | None = None
    failed: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile (q in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def by_workflow(records: Iterable[PodRecord]) -> dict[str, list[PodRecord]]:
    """The pods of each workflow, in the order they were seen."""
    groups: dict[str, list[PodRecord]] = {}
    for record in records:
        groups.setdefault(record.workflow, []).append(record)
    for pods in groups.values():
        pods.sort(key=lambda r: r.seen)
    return groups


def chain_latencies_ms(pods: Sequence[PodRecord]) -> list[float]:
    """Pod-to-pod step latencies of one chain: for each pod after the first, the time from the previous pod
    seen Succeeded to this pod seen (what a user sees between two steps). ``pods`` in the order seen."""
    ordered = sorted(pods, key=lambda r: r.seen)
    latencies = []
    for previous, current in itertools.pairwise(ordered):
        if previous.succeeded is None:
            raise ValueError(f"chain {previous.workflow}: step {previous.step} was never seen Succeeded")
        latencies.append((current.seen - previous.succeeded) * 1000)
    return latencies


def chain_figures(chains: Mapping[str, Sequence[PodRecord]], steps: int) -> dict[str, object]:
    """Step latency over every chain (each must have ``steps`` pods, all Succeeded)."""
    latencies: list[float] = []
    walls: list[float] = []
    for name, pods in sorted(chains.items()):
        if len(pods) != steps:
            raise ValueError(f"chain {name}: {len(pods)} pods seen, expected {steps}")
        latencies += chain_latencies_ms(pods)
        last = max(pods, key=lambda r: r.seen)
        if last.succeeded is None:
            raise ValueError(f"chain {name}: the last step was never seen Succeeded")
        walls.append(last.succeeded - min(r.seen for r in pods))
    if not latencies:
        raise ValueError("no chain step latencies (chains of one step?)")
    return {
        "chain_runs": len(chains),
        "chain_steps": steps,
        "step_p50_ms": round(percentile(latencies, 0.50), 1),
        "step_p95_ms": round(percentile(latencies, 0.95), 1),
        "step_max_ms": round(max(latencies), 1),
        "chain_wall_s": round(percentile(walls, 0.5), 2),
    }


def fanout_figures(pods: Sequence[PodRecord], created: float, done: float) -> dict[str, object]:
    """One fan-out with a join: the branches (every pod but the ``after`` step) and the step after the join.

    spread: first branch seen -> last branch seen; join: last branch seen Succeeded -> ``after`` seen;
    total: create sent -> workflow done (as the system reports it)."""
    after = [r for r in pods if r.step == JOIN_STEP]
    branches = [r for r in pods if r.step != JOIN_STEP]
    if len(after) != 1:
        raise ValueError(f"expected one '{JOIN_STEP}' step, saw {len(after)}")
    if not branches:
        raise ValueError("no branch pods seen")
    unfinished = [r.step for r in branches if r.succeeded is None]
    if unfinished:
        raise ValueError(f"{len(unfinished)} branches never seen Succeeded (e.g. {unfinished[0]})")
    last_branch = max(r.succeeded for r in branches if r.succeeded is not None)
    return {
        "branches": len(branches),
        "total_s": round(done - created, 2),
        "spread_s": round(max(r.seen for r in branches) - min(r.seen for r in branches), 2),
        "join_ms": round((after[0].seen - last_branch) * 1000, 1),
        "first_branch_ms": round((min(r.seen for r in branches) - created) * 1000, 1),
    }


def max_active(pods: Sequence[PodRecord]) -> int:
    """The most pods active at once (seen, not yet seen Succeeded or Failed); a pod never seen ending counts
    as active to the end."""
    edges = []
    for record in pods:
        edges.append((record.seen, 1))
        end = record.succeeded if record.succeeded is not None else record.failed
        if end is not None:
            edges.append((end, -1))
    active = most = 0
    for _, step in sorted(edges):  # at equal times an end (-1) sorts first
        active += step
        most = max(most, active)
    return most


def throughput_figures(created: Mapping[str, float], done: Mapping[str, float]) -> dict[str, object]:
    """N workflows created at once: per minute (N / (last done - first create sent)) and create -> done."""
    missing = sorted(set(created) - set(done))
    if missing:
        raise ValueError(f"{len(missing)} workflows never done (e.g. {missing[0]})")
    spans = [(done[name] - created[name]) * 1000 for name in created]
    elapsed = max(done[n] for n in created) - min(created.values())
    return {
        "workflows": len(created),
        "workflows_per_min": round(len(created) / elapsed * 60, 1),
        "create_done_p50_ms": round(percentile(spans, 0.50), 1),
        "create_done_p95_ms": round(percentile(spans, 0.95), 1),
        "wall_s": round(elapsed, 2),
    }


# ------------------------------------------------------------------------------------ API server metrics
_SAMPLE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

RequestKey = tuple[str, str, str]  # (resource, subresource, verb)


def parse_request_totals(text: str) -> Counter[RequestKey]:
    """``apiserver_request_total`` from the API server's /metrics, summed by (resource, subresource, verb)."""
    totals: Counter[RequestKey] = Counter()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match["labels"]))
        key = (labels.get("resource", ""), labels.get("subresource", ""), labels.get("verb", ""))
        totals[key] += int(float(match["value"]))
    return totals


def request_figures(before: Counter[RequestKey], after: Counter[RequestKey], workflows: int) -> dict[str, object]:
    """The API requests a workload cost (every client: controllers, kube components, kwok; watches not
    counted: they are long-lived), in total and per workflow by kind."""
    diff = Counter({k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0})

    def count(predicate: object) -> int:
        assert callable(predicate)
        return sum(v for k, v in diff.items() if k[2] not in ("WATCH", "CONNECT") and predicate(*k))

    kinds = {
        "total": count(lambda r, s, v: True),
        "writes": count(lambda r, s, v: v in MUTATING_VERBS),
        "jobs": count(lambda r, s, v: r == "jobs"),
        "pods": count(lambda r, s, v: r == "pods"),
        "status_writes": count(lambda r, s, v: s == "status" and v in MUTATING_VERBS),
        "events": count(lambda r, s, v: r == "events"),
        "workflows": count(lambda r, s, v: r == "workflows"),
    }
    figures: dict[str, object] = {f"api_{k}": v for k, v in kinds.items()}
    per = max(workflows, 1)
    figures.update({f"api_{k}_per_workflow": round(v / per, 1) for k, v in kinds.items()})
    top = sorted(((v, f"{r}{'/' + s if s else ''} {v_}") for (r, s, v_), v in diff.items()
                  if v_ not in ("WATCH", "CONNECT")), reverse=True)[:8]
    figures["api_top"] = {name: value for value, name in top}
    return figures


# ------------------------------------------------------------------------------------------ the table
SYSTEMS = ("floor", "floor_jobs", "kondukt", "argo_stock", "argo_tuned")
HEADERS = {"floor": "bare pods", "floor_jobs": "bare Jobs", "kondukt": "Kondukt", "argo_stock": "Argo stock",
           "argo_tuned": "Argo tuned"}


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = (f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}" if abs(value) >= 10 else
                f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3f}")
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        return str(value)
    return f"{text}{unit}"


def markdown_table(results: Mapping[str, Mapping[str, object]]) -> str:
    """The side-by-side table of the systems' summaries (a system or figure that is missing shows —)."""
    systems = [s for s in SYSTEMS if s in results]

    def cell(system: str, *keys_units: tuple[str, str]) -> str:
        figures = results[system]
        if "error" in figures and not any(figures.get(k) is not None for k, _ in keys_units):
            return "failed"
        return " / ".join(_fmt(figures.get(k), u) for k, u in keys_units)

    rows: list[tuple[str, tuple[tuple[str, str], ...]]] = [
        ("chain: pod-to-pod step p50 / p95", (("step_p50_ms", " ms"), ("step_p95_ms", " ms"))),
        ("fan-out {fanout_small}: total / join", (("fanout_small_total_s", " s"), ("fanout_small_join_ms", " ms"))),
        ("fan-out {fanout_small}: spread", (("fanout_small_spread_s", " s"),)),
        ("fan-out {fanout_large}: total / join", (("fanout_large_total_s", " s"), ("fanout_large_join_ms", " ms"))),
        ("fan-out {fanout_large}: Workflow object", (("fanout_large_object_kib", " KiB"),)),
        ("{throughput_small} one-task workflows: per minute", (("workflows_per_min", ""),)),
        ("{throughput_small} one-task: create→done p50 / p95",
         (("create_done_p50_ms", " ms"), ("create_done_p95_ms", " ms"))),
        ("{throughput_large} one-task workflows: per minute", (("throughput_large_workflows_per_min", ""),)),
        ("dynamic fork {fork}: total / join", (("fork_total_s", " s"), ("fork_join_ms", " ms"))),
        ("dynamic fork {fork}: Workflow object", (("fork_object_kib", " KiB"),)),
        ("dynamic fork {fork}: API requests per branch", (("fork_api_total_per_branch", ""),)),
        ("dynamic fork {fork}: controller peak RSS (branches active then)",
         (("fork_rss_mib", " MiB"), ("fork_rss_active_branches", ""))),
        ("API requests per workflow: fan-out {fanout_small} / {throughput_small} one-task",
         (("fanout_small_api_total_per_workflow", ""), ("api_total_per_workflow", ""))),
        ("… of them Jobs / pods / status writes / Events ({throughput_small} one-task)",
         (("api_jobs_per_workflow", ""), ("api_pods_per_workflow", ""), ("api_status_writes_per_workflow", ""),
          ("api_events_per_workflow", ""))),
        ("controller CPU per workflow ({throughput_small} one-task)", (("cpu_s_per_workflow", " s"),)),
        ("control-plane CPU: fan-out {fanout_small} / {throughput_small} one-task",
         (("fanout_small_control_plane_cpu_s", " s"), ("control_plane_cpu_s", " s"))),
        ("controller peak RSS", (("rss_mib", " MiB"),)),
    ]
    sizes: dict[str, object] = {}
    for system in systems:
        for key in ("fanout_small", "fanout_large", "throughput_small", "throughput_large", "fork"):
            sizes.setdefault(key, results[system].get(f"size_{key}"))
    lines = ["| figure | " + " | ".join(HEADERS[s] for s in systems) + " |",
             "|---|" + "---|" * len(systems)]
    for label, keys in rows:
        title = label.format(**{k: _fmt(v) for k, v in sizes.items()})
        lines.append(f"| {title} | " + " | ".join(cell(s, *keys) for s in systems) + " |")
    return "\n".join(lines) + "\n"
