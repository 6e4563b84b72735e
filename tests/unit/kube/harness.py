"""An in-memory API server (``FakeCluster``) and a ``Harness`` that reconciles Workflows against it.

The fake speaks the paths the operator uses with the API server's semantics that matter to the reconcile —
resourceVersion conflicts on the status PUT, AlreadyExists on a second create, uids, generations, merge
patches — and a fake "kubelet" gives a Job's pod a termination state. Its view runs the same ``index_*``
functions the operator's watches run.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from typing import Any

from kondukt.kube import cache
from kondukt.kube.builders import JobOptions
from kondukt.kube.events import EventRecorder
from kondukt.kube.kubeapi import (
    AlreadyExists,
    Conflict,
    Invalid,
    KubeClient,
    NotFound,
    TooLarge,
    TransientApiError,
)
from kondukt.kube.metrics import Metrics
from kondukt.kube.reconcile import Reconciler, ReconcileSettings
from kondukt.kube.status import tasks_from_status

GROUP_PATH = "/apis/kondukt.io/v1alpha1/namespaces/"


class Crash(Exception):
    """Raised by the fake to simulate the operator dying at a chosen call."""


class FakeCluster(KubeClient):
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}  # collection path + "/" + name -> object
        self.calls: list[tuple[str, str]] = []
        self.lists: list[tuple[str, str, int]] = []  # collection GETs: (path, label selector, items returned)
        self.events: list[dict[str, Any]] = []
        self.created_jobs: list[str] = []
        self.crash_on: tuple[str, str] | None = None  # (method, path prefix) to raise Crash once
        self.time_out_creates: set[int] = set()  # these Job creates (1: the first) time out without being made
        self.reject: dict[str, str] = {}  # collection path -> message of a 422
        self.max_status_bytes: int | None = None  # a larger status PUT is refused as etcd refuses it
        self._rv = itertools.count(1)
        self.server = "https://fake"

    # -------------------------------------------------------------------------------- API surface
    async def request(self, method: str, path: str, *, what: str, body: Any = None, params: Any = None,
                      content_type: str = "application/json", on_conflict: type = Conflict,
                      accept: str = "application/json") -> Any:
        self.calls.append((method, path))
        if self.crash_on is not None and method == self.crash_on[0] and path.startswith(self.crash_on[1]):
            self.crash_on = None
            raise Crash(f"crash at {method} {path}")
        body = copy.deepcopy(body)
        if method == "GET":
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            return self._list(path, dict(params or {}), accept, what)
        if method == "POST":
            if path.endswith("/events"):
                self.events.append(body)
                return body
            if path in self.reject:
                raise Invalid(422, "Invalid", self.reject[path], what)
            key = f"{path}/{body['metadata']['name']}"
            if path.endswith("/jobs") and sum(1 for m, p in self.calls if m == "POST" and p == path) in \
                    self.time_out_creates:
                raise TransientApiError(0, "TimeoutError", "", what)
            if key in self.objects:
                raise AlreadyExists(409, "AlreadyExists", f"{key} already exists", what)
            meta = body["metadata"]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(next(self._rv))
            meta.setdefault("generation", 1)
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            meta.setdefault("namespace", path.split("/namespaces/")[1].split("/")[0])
            self.objects[key] = body
            if "/jobs" in path:
                self.created_jobs.append(meta["name"])
            return copy.deepcopy(body)
        if method == "PUT" and path.endswith("/status"):
            key = path[: -len("/status")]
            current = self.objects.get(key)
            if current is None:
                raise NotFound(404, "NotFound", key, what)
            if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "the object has been modified", what)
            if self.max_status_bytes is not None and len(json.dumps(body)) > self.max_status_bytes:
                raise TooLarge(500, "InternalError", "rpc error: code = ResourceExhausted desc = trying to send "
                               "message larger than max (2621751 vs. 2097152)", what)
            current["status"] = json.loads(json.dumps(body["status"]))
            current["metadata"]["resourceVersion"] = str(next(self._rv))
            return copy.deepcopy(current)
        if method == "PUT":  # any other object (limit claim Leases): replaced when the version read is current
            current = self.objects.get(path)
            if current is None:
                raise NotFound(404, "NotFound", path, what)
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "the object has been modified", what)
            body["metadata"] = {**current["metadata"], **body["metadata"], "resourceVersion": str(next(self._rv))}
            self.objects[path] = body
            return copy.deepcopy(body)
        if method == "PATCH":
            current = self.objects.get(path)
            if current is None:
                raise NotFound(404, "NotFound", path, what)
            _merge(current, body)
            current["metadata"]["resourceVersion"] = str(next(self._rv))
            if "spec" in body:
                current["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
            return copy.deepcopy(current)
        if method == "DELETE":
            if path not in self.objects:
                raise NotFound(404, "NotFound", path, what)
            del self.objects[path]
            for pod_path in [p for p, o in self.objects.items() if "/pods/" in p and
                             o["metadata"]["labels"].get("batch.kubernetes.io/job-name") == path.rsplit("/", 1)[1]]:
                del self.objects[pod_path]
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    def _list(self, path: str, params: dict[str, str], accept: str, what: str) -> dict[str, Any]:
        """A collection GET: one ``key=value`` label selector, pages (``limit`` / ``continue``), and metadata
        only when the Accept header asks for PartialObjectMetadataList."""
        items = [o for p, o in self.objects.items() if p.rsplit("/", 1)[0] == path]
        if not items and not path.endswith(("jobs", "workflowdefs", "taskdefs", "workflows")):
            raise NotFound(404, "NotFound", f"{path} not found", what)
        key, _, value = params.get("labelSelector", "").partition("=")
        if key:
            items = [o for o in items if (o["metadata"].get("labels") or {}).get(key) == value]
        start = int(params.get("continue") or 0)
        end = start + int(params["limit"]) if params.get("limit") else len(items)
        page = [{"metadata": o["metadata"]} if "PartialObjectMetadataList" in accept else o for o in items[start:end]]
        self.lists.append((path, params.get("labelSelector", ""), len(page)))
        return {"items": copy.deepcopy(page), "metadata": {"continue": str(end)} if end < len(items) else {}}

    async def close(self) -> None:
        return None

    # ----------------------------------------------------------------------------- test helpers
    def apply(self, manifest: dict[str, Any], namespace: str = "ns") -> dict[str, Any]:
        kind = manifest["kind"]
        plural = {"TaskDef": "taskdefs", "WorkflowDef": "workflowdefs", "Workflow": "workflows"}[kind]
        path = f"{GROUP_PATH}{namespace}/{plural}"
        body = copy.deepcopy(manifest)
        body.setdefault("metadata", {})["namespace"] = namespace
        body["metadata"]["uid"] = str(uuid.uuid4())
        body["metadata"]["resourceVersion"] = str(next(self._rv))
        body["metadata"]["generation"] = 1
        body["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects[f"{path}/{body['metadata']['name']}"] = body
        return body

    def workflow(self, name: str, namespace: str = "ns") -> dict[str, Any]:
        return self.objects[f"{GROUP_PATH}{namespace}/workflows/{name}"]

    def edit_workflow(self, name: str, *, spec: dict[str, Any] | None = None,
                      annotations: dict[str, str] | None = None, namespace: str = "ns") -> None:
        obj = self.workflow(name, namespace)
        if spec:
            obj["spec"].update(spec)
            obj["metadata"]["generation"] += 1
        if annotations:
            obj["metadata"].setdefault("annotations", {}).update(annotations)
        obj["metadata"]["resourceVersion"] = str(next(self._rv))

    def jobs(self, namespace: str = "ns") -> dict[str, dict[str, Any]]:
        prefix = f"/apis/batch/v1/namespaces/{namespace}/jobs/"
        return {p[len(prefix):]: o for p, o in self.objects.items() if p.startswith(prefix)}

    def start_pod(self, job_name: str, namespace: str = "ns") -> None:
        self._pod(job_name, namespace, {"running": {"startedAt": "now"}}, "Running")

    def finish(self, job_name: str, *, exit_code: int = 0, message: str | None = None, namespace: str = "ns") -> None:
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}
        if message is not None:
            terminated["message"] = message
        self._pod(job_name, namespace, {"terminated": terminated}, "Succeeded" if exit_code == 0 else "Failed")

    def echo(self, job_name: str, namespace: str = "ns") -> None:
        """Finish like kwok's echo stage: the output is the Job's KONDUKT_INPUT."""
        job = self.jobs(namespace)[job_name]
        env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        self.finish(job_name, message=json.dumps({"outputData": json.loads(env["KONDUKT_INPUT"])}),
                    namespace=namespace)

    def fail_job(self, job_name: str, reason: str, namespace: str = "ns") -> None:
        job = self.jobs(namespace)[job_name]
        job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": reason, "message": reason}]}

    def _pod(self, job_name: str, namespace: str, state: dict[str, Any], phase: str) -> None:
        job = self.jobs(namespace)[job_name]
        template = job["spec"]["template"]["metadata"]
        pod = {
            "metadata": {
                "name": f"{job_name}-pod", "namespace": namespace,
                "labels": {**template["labels"], "batch.kubernetes.io/job-name": job_name},
                "annotations": dict(template["annotations"]),
            },
            "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]},
        }
        self.objects[f"/api/v1/namespaces/{namespace}/pods/{job_name}-pod"] = pod

    def view(self) -> cache.ClusterView:
        """The objects through the operator's own index functions (what Kopf's indexes would hold)."""
        fake = self

        class LiveIndex:
            def __init__(self, function: Any, where: str) -> None:
                self.function, self.where = function, where

            def _all(self) -> dict[Any, list[Any]]:
                out: dict[Any, list[Any]] = {}
                for path, obj in fake.objects.items():
                    if self.where in path:
                        for key, value in self.function(obj).items():
                            out.setdefault(key, []).append(value)
                return out

            def __contains__(self, key: object) -> bool:
                return key in self._all()

            def __getitem__(self, key: Any) -> list[Any]:
                return self._all()[key]

        return cache.ClusterView({
            cache.JOBS_INDEX: LiveIndex(cache.index_job, "/jobs/"),
            cache.PODS_INDEX: LiveIndex(cache.index_pod, "/pods/"),
            cache.CHILDREN_INDEX: LiveIndex(cache.index_child, "/workflows/"),
            cache.TASKDEFS_INDEX: LiveIndex(cache.index_taskdef, "/taskdefs/"),
            cache.WORKFLOWDEFS_INDEX: LiveIndex(cache.index_workflowdef, "/workflowdefs/"),
        })


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms


ECHO = {"apiVersion": "kondukt.io/v1alpha1", "kind": "TaskDef", "metadata": {"name": "echo"},
        "spec": {"retryCount": 1, "retryDelaySeconds": 0, "template": {"image": "worker:1"}}}


def chain(name: str = "chain", steps: int = 2) -> dict[str, Any]:
    tasks = [{"name": "echo", "taskReferenceName": "s0", "inputParameters": {"v": "${workflow.input.v}"}}]
    tasks += [{"name": "echo", "taskReferenceName": f"s{i}", "inputParameters": {"v": f"${{s{i - 1}.output.v}}"}}
              for i in range(1, steps)]
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": name},
            "spec": {"name": name, "tasks": tasks, "outputParameters": {"v": f"${{s{steps - 1}.output.v}}"}}}


def run_of(name: str, definition: str = "chain", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"workflowDefRef": {"name": definition}, "input": {"v": 7}, **spec}}


class Harness:
    def __init__(self, cluster: FakeCluster | None = None, clock: Clock | None = None,
                 payload_settings: Any = None) -> None:
        self.cluster = cluster or FakeCluster()
        self.clock = clock or Clock()
        self.payload_settings = payload_settings
        self.reconciler = self.new_reconciler()
        #: Reconciles run by the work queue of :meth:`settle`, and the reconciler whose queue runs.
        self.reconciles = 0
        self._counted: Reconciler | None = None

    def new_reconciler(self) -> Reconciler:
        """A fresh operator process: no memory of the previous one."""
        metrics = Metrics()
        settings = ReconcileSettings(job_options=JobOptions(), payload_settings=self.payload_settings)
        return Reconciler(self.cluster, self.cluster.view(), settings, metrics, EventRecorder(self.cluster, metrics),
                          clock=self.clock, workers=1)

    async def reconcile(self, name: str, *, watched: bool = True) -> Any:
        """One reconcile; ``watched``: the watch delivered the current object first (as Kopf does)."""
        if watched:
            self.reconciler.observe(copy.deepcopy(self.cluster.workflow(name)))
        return await self.reconciler.reconcile(("ns", name))

    async def settle(self, name: str, *, limit: int = 20) -> int:
        """Add the workflow to the reconciler's own work queue once — as a watch event or a new leader does —
        and let the queue run until it is idle; returns how many reconciles ran. Nothing else adds it
        meanwhile, so every reconcile after the first is one the reconciler asked for itself (a timer due
        at once). Stops waiting at ``limit`` reconciles: more is a hot loop, whatever the test expects.
        The queue keeps running afterwards: :meth:`stop` ends it."""
        reconciler = self.reconciler
        if reconciler is not self._counted:
            reconcile = reconciler.reconcile

            async def counted(key: tuple[str, str]) -> Any:
                self.reconciles += 1
                return await reconcile(key)

            reconciler.reconcile = counted  # type: ignore[method-assign]
            reconciler.queue.start()
            self._counted = reconciler
        before = self.reconciles
        reconciler.enqueue(("ns", name))
        for _ in range(10_000):  # bounded: a hot loop ends at the limit, a stuck queue here
            await asyncio.sleep(0.001)
            ran = self.reconciles - before
            if ran >= limit or (ran and reconciler.queue.idle()):
                return ran
        raise AssertionError(f"the work queue never became idle ({self.reconciles - before} reconciles)")

    async def stop(self) -> None:
        """Stop the work queue :meth:`settle` started."""
        if self._counted is not None:
            await self._counted.queue.stop()

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.cluster.workflow(name).get("status") or {})

    def tasks(self, name: str) -> list[dict[str, Any]]:
        return tasks_from_status(self.status(name))

    def only_new_job(self, before: set[str]) -> str:
        new = set(self.cluster.jobs()) - before
        assert len(new) == 1, new
        return new.pop()
