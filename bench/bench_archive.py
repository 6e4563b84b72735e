"""What the workflow archive costs: writes, rewrites, listing and pruning on a real PostgreSQL server.

A throwaway server (tests/postgres.py, on 127.0.0.1) and one :class:`~kondukt.archive.store.ArchiveStore`, as
one operator replica has: its writes are sequential on one connection. Each record is a realistic finished
workflow (12 attempts with inputs and outputs, about 6 KB of JSON). Figures:
- ``writes_per_second``: new workflows archived one after another (the operator's steady state; 1,000
  workflows a minute need 17 a second);
- ``rewrites_per_second``: the same uids written again (a restarted operator's replays: still one row each);
- ``list_ms_p50``: ``kondukt get --archived -l team=t3 --phase FAILED`` over all rows, median of 20;
- ``prune_rows_per_second``: the retention period removing every row.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from typing import Any

from tests.postgres import PostgresServer

from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.selectors import ArchiveQuery
from kondukt.archive.store import ArchiveStore

T0 = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)


def _record(i: int) -> ArchivedWorkflow:
    uid = f"00000000-0000-0000-0000-{i:012d}"
    tasks = [{"taskId": f"{uid}-{n}", "referenceTaskName": f"step_{n}", "taskType": "SIMPLE", "taskDefName": "echo",
              "status": "COMPLETED", "retryCount": 0, "startTime": 1_765_000_000_000 + n * 1000,
              "endTime": 1_765_000_000_500 + n * 1000,
              "inputData": {"fileLocation": f"s3://bucket/in/{i}/{n}.jpg", "width": 300 + n, "height": 200},
              "outputData": {"fileLocation": f"s3://bucket/out/{i}/{n}.png", "bytes": 40_000 + n}} for n in range(12)]
    phase = "FAILED" if i % 10 == 0 else "COMPLETED"
    labels = {"team": f"t{i % 7}", "app": "images"}
    workflow = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": f"wf-{i}", "namespace": "bench", "uid": uid, "labels": labels},
                "spec": {"workflowDefRef": {"name": "images"}, "input": {"fileLocation": f"s3://bucket/in/{i}"}},
                "status": {"phase": phase, "tasks": tasks, "output": {"count": 12}}}
    return ArchivedWorkflow(uid=uid, namespace="bench", name=f"wf-{i}", phase=phase,
                            finished_at=T0 + dt.timedelta(seconds=i), definition_name="images", definition_version=1,
                            labels=labels, started_at=T0 + dt.timedelta(seconds=i - 12), workflow=workflow)


async def _measure(dsn: str, count: int) -> dict[str, Any]:
    records = [_record(i) for i in range(count)]
    store = ArchiveStore(dsn)
    try:
        await store.schema_version()
        started = time.perf_counter()
        for record in records:
            await store.archive(record)
        writes = count / (time.perf_counter() - started)
        started = time.perf_counter()
        for record in records:
            await store.archive(record)
        rewrites = count / (time.perf_counter() - started)
        rows = await store.count()
        timings = []
        for _round in range(20):
            started = time.perf_counter()
            await store.find(ArchiveQuery(selector="team=t3", phases=("FAILED",)))
            timings.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        pruned = await store.prune(T0 + dt.timedelta(days=1))
        prune_rate = pruned / (time.perf_counter() - started)
    finally:
        await store.close()
    return {
        "workflows": count,
        "record_json_bytes": len(json.dumps(dict(records[0].workflow), separators=(",", ":"))),
        "writes_per_second": round(writes, 1),
        "rewrites_per_second": round(rewrites, 1),
        "rows_after_rewrites": rows,
        "list_ms_p50": round(statistics.median(timings), 2),
        "prune_rows_per_second": round(prune_rate, 1),
    }


def run(quick: bool = False) -> dict[str, object]:
    server = PostgresServer().start()
    try:
        return asyncio.run(_measure(server.create_database("bench"), 200 if quick else 5000))
    finally:
        server.destroy()
