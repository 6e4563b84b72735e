"""Values too large for a Workflow's status, kept in external payload storage instead.

A task's input or output, or the workflow's, larger than ``inline_value_bytes`` goes to
``s3://<bucket>/<prefix><workflow uid>/status/<task id>-<field>.json`` when the operator has payload
storage; the status then holds a pointer (:data:`kondukt.kube.status.POINTERS`) and a reconcile reads the
values back before it decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from kondukt.engine.models import Workflow
from kondukt.engine.payloads import MAX_STORED_VALUE_BYTES, json_size
from kondukt.kube.builders import OwnerRef
from kondukt.kube.memo import Memo, ReconcileSettings, TransientError
from kondukt.kube.status import WORKFLOW_KEY, StatusError, StoredStatus
from kondukt_workers.storage import StorageError, read_uri, write_uri


def payload_uri(settings: Any, owner: OwnerRef, key: str, name: str) -> str:
    prefix = str(getattr(settings, "payload_prefix", "") or "")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"s3://{settings.payload_bucket}/{prefix}{owner.uid}/status/{key or 'workflow'}-{name}.json"

async def offload(settings: ReconcileSettings, owner: OwnerRef, workflow: Workflow, memo: Memo) -> None:
    """Store every task input / output and the workflow's input / output too large for the status in
    external payload storage (when configured); ``memo.external`` then names them for build_status."""
    limit = settings.inline_value_bytes
    payload_settings = settings.payload_settings
    if not getattr(payload_settings, "payload_bucket", None):
        return
    values: list[tuple[str, str, Any]] = [(WORKFLOW_KEY, "output", workflow.output),
                                          (WORKFLOW_KEY, "input", workflow.input)]
    # A Task object is never changed (the engine replaces it): one measured already needs nothing. In a fork of
    # 10,000 branches, looking at its two values one by one in every reconcile was a fifth of the operator's time.
    fresh = [task for task in workflow.tasks if memo.measured_tasks.get(task.taskId) is not task]
    for task in fresh:
        values += [(task.taskId, "outputData", task.outputData), (task.taskId, "inputData", task.inputData)]
    for key, name, value in values:
        if memo.measured.get((key, name)) is value:
            continue  # this very value was measured (and stored when it had to be) already
        stored = memo.external.get(key, {})
        if value and json_size(value) > limit:
            uri = payload_uri(payload_settings, owner, key, name)
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            await asyncio.to_thread(write_uri, uri, data, "application/json", settings=payload_settings)
            memo.external.setdefault(key, {})[name] = uri
        elif name in stored:
            memo.external[key] = {k: v for k, v in stored.items() if k != name}
        memo.measured[(key, name)] = value
    memo.measured_tasks.update((task.taskId, task) for task in fresh)

async def fetch_external(payload_settings: Any, stored: StoredStatus) -> StoredStatus:
    """The status's workflow with the values stored outside it read back (see kube.status.POINTERS)."""
    if not stored.external or stored.workflow is None:
        return stored
    def fetch(uri: str) -> Any:
        return json.loads(read_uri(uri, max_bytes=2 * MAX_STORED_VALUE_BYTES, settings=payload_settings))

    values: dict[tuple[str, str], Any] = {}
    for key, fields in stored.external.items():
        for name, uri in fields.items():
            try:
                values[(key, name)] = await asyncio.to_thread(fetch, uri)
            except StorageError as err:
                if not err.terminal:
                    raise TransientError(f"reading {uri}: {err}") from err
                raise StatusError(f"the value stored at {uri} cannot be read: {err}") from err
            except ValueError as err:
                raise StatusError(f"the value stored at {uri} is not JSON: {err}") from err
    workflow = stored.workflow
    tasks = [task.model_copy(update={name: values[(task.taskId, name)]
                                     for name in stored.external.get(task.taskId, {})})
             if task.taskId in stored.external else task for task in workflow.tasks]
    top = {name: values[(WORKFLOW_KEY, name)] for name in stored.external.get(WORKFLOW_KEY, {})}
    return dataclasses.replace(stored, workflow=workflow.model_copy(update={"tasks": tasks, **top}))
