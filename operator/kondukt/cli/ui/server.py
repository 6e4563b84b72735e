"""The HTTP server of ``kondukt ui``: the built static files, a small JSON API, and live pushes.

Every request the browser makes becomes requests to the Kubernetes API server made with the user's own
credentials (the kubeconfig ``kondukt ui`` was started with, through the CLI's client
:mod:`kondukt.kube.kubeapi`): the API server authorizes each one, so the UI can do nothing its user could
not do with ``kubectl`` or ``kondukt``. A refusal comes back as the CLI words it (``forbidden: ...``) with
the API server's status code. Operations are the CLI's: the same :class:`OperationRequest` built from the
same fields, checked by :func:`~kondukt.cli.operations.check_operation`, sent as the same merge patch.

In read-only mode (``--read-only``, the chart's in-cluster Deployment) the server reads with its own
ServiceAccount, which may only read; an operation is sent with the bearer token the user pastes into the
page (``Authorization`` header), never with the server's credentials, and refused without one.

The local server must not be usable by other web pages the user has open:

- it listens on 127.0.0.1 unless told otherwise;
- a request whose ``Host`` is not one of this server's own names is refused (DNS rebinding: a page on
  ``evil.example`` that resolves to 127.0.0.1 still sends ``Host: evil.example``);
- a state-changing request needs the ``X-Kondukt-Token`` header carrying a random token the server put into
  its own page (another origin cannot read that page, and cannot send a custom header without a CORS
  preflight this server never grants), and an ``Origin``, when sent, must be this server's;
- responses forbid framing and inline scripts (Content-Security-Policy) and carry no CORS headers.

A workflow page is live: ``GET .../stream`` (Server-Sent Events) watches that one Workflow on the API
server and pushes its new view on every change (at most one push per ``PUSH_INTERVAL_SECONDS``). Every watch
is bounded by the API server's ``timeoutSeconds`` and renewed; it ends when the browser goes away.

The workflows list is live too: ``GET /api/workflows/stream`` (the list's query) pushes the page again whenever a
change touches it, from one watch of the Workflow list per namespace and label selector that every open list
page of this server shares (:mod:`kondukt.cli.ui.listwatch`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import html
import json
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from kondukt.archive import DSN_ENV
from kondukt.archive.errors import ArchiveError, ArchiveUnavailable
from kondukt.archive.records import ArchivedWorkflow
from kondukt.archive.selectors import PHASES as ARCHIVED_PHASES
from kondukt.archive.selectors import ArchiveQuery
from kondukt.cli import cluster
from kondukt.cli.archived import parse_time
from kondukt.cli.operations import COMPLETABLE_STATUSES, check_operation, operation_from_args
from kondukt.cli.ui import views
from kondukt.cli.ui.listwatch import ListWatch, ListWatches, Scope
from kondukt.cli.workflows import meta_of, parse_definition, spec_of
from kondukt.errors import KonduktError, KonduktUserError
from kondukt.kube import resources as kr
from kondukt.kube.kubeapi import ApiError, KubeClient

if TYPE_CHECKING:  # psycopg is imported only when the archive is read
    from kondukt.archive.store import ArchiveStore

T = TypeVar("T")
logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Kondukt-Token"
#: The longest a browser waits between two pushes of a busy workflow (its changes are coalesced).
PUSH_INTERVAL_SECONDS = 0.5
#: How long one watch of the API server lasts before it is renewed (its ``timeoutSeconds``); at each
#: renewal the stream sends a comment line, so a browser that went away is noticed within this time.
WATCH_SECONDS = 30
#: How long a refused or broken watch waits before the workflow is read again.
WATCH_RETRY_SECONDS = 5
#: Log lines fetched per pod (the end of the log).
LOG_TAIL_LINES = 2000
LOG_LIMIT_BYTES = 512 * 1024
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_dir() -> Any:
    """The built front end inside the package (``hack/ui/build.sh`` writes it; ``make setup`` runs that)."""
    return resources.files("kondukt.cli.ui").joinpath("static")


def check_static_files() -> None:
    missing = [name for name in ("index.html", *STATIC_FILES) if not static_dir().joinpath(name).is_file()]
    if missing:
        raise KonduktUserError(
            f"the web UI's front end is not built (missing {', '.join(missing)} in {static_dir()}): "
            "run `make setup` (or `bash hack/ui/build.sh`) in a Kondukt checkout; it needs npm"
        )


class HttpProblem(Exception):
    """A request answered with an error: its HTTP status and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UiSettings:
    namespace: str
    all_namespaces: bool = False
    read_only: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    max_branches: int = 20
    #: The workflow archive's connection string (``--archive-dsn`` / $KONDUKT_ARCHIVE_DSN); empty: no archive page.
    archive_dsn: str = field(default="", repr=False)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


class UiServer:
    """The routes of ``kondukt ui`` over one Kubernetes client (the user's, or the read-only ServiceAccount's)."""

    def __init__(self, client: KubeClient, settings: UiSettings) -> None:
        self.client = client
        self.settings = settings
        self._archive: ArchiveStore | None = None
        self.lists = ListWatches(client, WATCH_SECONDS, WATCH_RETRY_SECONDS,
                                 too_many=lambda message: HttpProblem(503, message))

    # ------------------------------------------------------------------------------------------ app
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=4 * 1024 * 1024)
        routes = [
            web.get("/", self.index),
            web.get("/static/{file}", self.static),
            web.get("/favicon.ico", self.no_icon),
            web.get("/api/info", self.info),
            web.get("/api/workflows", self.list_workflows),
            web.get("/api/workflows/stream", self.stream_workflows),
            web.get("/api/namespaces/{ns}/workflows/{name}", self.get_workflow),
            web.get("/api/namespaces/{ns}/workflows/{name}/stream", self.stream_workflow),
            web.get("/api/namespaces/{ns}/workflows/{name}/attempts/{task_id}", self.get_attempt),
            web.get("/api/namespaces/{ns}/workflows/{name}/attempts/{task_id}/logs", self.get_logs),
            web.post("/api/namespaces/{ns}/workflows/{name}/operations", self.operate),
            web.get("/api/definitions", self.list_definitions),
            web.get("/api/namespaces/{ns}/workflowdefs/{name}", self.get_definition),
            web.get("/api/archive", self.list_archived),
            web.get("/api/archive/{uid}", self.get_archived),
            web.get("/api/archive/{uid}/attempts/{task_id}", self.get_archived_attempt),
        ]
        app.add_routes(routes)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        await self.lists.close()
        await self.client.close()
        if self._archive is not None:
            await self._archive.close()

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            self._check_host(request)
            if request.method not in ("GET", "HEAD"):
                self._check_origin(request)
            response = await handler(request)
        except HttpProblem as problem:
            response = web.json_response({"error": problem.message}, status=problem.status)
        except web.HTTPException as exc:
            response = web.json_response({"error": exc.reason}, status=exc.status)
        except KonduktError as exc:  # e.g. a malformed status.tasks entry, named by the CLI's readers
            response = web.json_response({"error": exc.message}, status=422)
        except Exception as exc:  # a bug: said in one line, never a traceback in the page
            logger.exception("kondukt ui: %s %s failed", request.method, request.path)
            response = web.json_response(
                {"error": f"kondukt ui: internal error: {type(exc).__name__}: {exc}"}, status=500)
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def _own_host_names(self) -> set[str]:
        return {"127.0.0.1", "localhost", "[::1]", "::1", *(h.lower() for h in self.settings.allowed_hosts)}

    def _check_host(self, request: web.Request) -> None:
        """The ``Host`` must name this server (any port: ``kubectl port-forward`` changes it)."""
        host = request.headers.get("Host", "")
        if host_name(host) not in self._own_host_names():
            raise HttpProblem(
                421, f"Host {host!r} is not this server's (start `kondukt ui --allowed-host NAME` to add one)"
            )

    def _check_origin(self, request: web.Request) -> None:
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, ""), self.settings.token):
            raise HttpProblem(403, f"missing or wrong {TOKEN_HEADER} header: reload the page")
        origin = request.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc.lower() != request.headers["Host"].lower():
            raise HttpProblem(403, f"requests from {origin} are not accepted")

    # ------------------------------------------------------------------------------------------ static
    async def index(self, request: web.Request) -> web.Response:
        text = static_dir().joinpath("index.html").read_text(encoding="utf-8")
        config = {
            "token": self.settings.token,
            "namespace": self.settings.namespace,
            "allNamespaces": self.settings.all_namespaces,
            "readOnly": self.settings.read_only,
            "archive": bool(self.settings.archive_dsn),
        }
        meta = f'<meta name="kondukt-config" content="{html.escape(json.dumps(config), quote=True)}">'
        return web.Response(text=text.replace("<!--kondukt-config-->", meta), content_type="text/html")

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in STATIC_FILES:
            raise HttpProblem(404, f"no static file {name!r}")
        return web.Response(body=static_dir().joinpath(name).read_bytes(), content_type=STATIC_FILES[name])

    # ------------------------------------------------------------------------------------------ API
    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "namespace": self.settings.namespace,
            "allNamespaces": self.settings.all_namespaces,
            "readOnly": self.settings.read_only,
            "server": self.client.server,
            "operations": list(views.OPERATIONS),
        })

    async def _call(self, what: str, namespace: str | None, method: str, path: str,
                    client: KubeClient | None = None, **kwargs: Any) -> Any:
        """One API call; a failure becomes the CLI's message with the API server's status code."""
        try:
            return await (client or self.client).request(method, path, what=what, **kwargs)
        except ApiError as exc:
            message = cluster.api_error(exc, what, namespace, self.client.server).message
            raise HttpProblem(exc.status if 400 <= exc.status < 600 else 502, message) from exc

    def _namespace(self, request: web.Request) -> str | None:
        """The namespace a list asks for: ``?namespace=``, else the default; None for all namespaces."""
        if request.query.get("all") == "1":
            return None
        return request.query.get("namespace") or self.settings.namespace

    async def list_workflows(self, request: web.Request) -> web.Response:
        try:
            query = views.ListQuery.from_params(request.query)
        except views.ViewError as exc:
            raise HttpProblem(400, str(exc)) from exc
        namespace = self._namespace(request)
        params = {"labelSelector": request.query["label"]} if request.query.get("label") else None
        listed = await self._call("workflows", namespace, "GET", cluster.collection_path(namespace, cluster.WORKFLOWS),
                                  params=params)
        page = views.workflow_page(listed.get("items") or [], query)
        page["namespace"] = namespace
        return web.json_response(page)

    async def stream_workflows(self, request: web.Request) -> web.StreamResponse:
        """The list page, live: its page now, then again whenever a change of the scope's Workflows alters it.
        A scope the API server refuses is answered with its refusal (an HTTP error, before any event)."""
        try:
            query = views.ListQuery.from_params(request.query)
        except views.ViewError as exc:
            raise HttpProblem(400, str(exc)) from exc
        namespace = self._namespace(request)
        watch = self.lists.acquire(Scope(namespace, request.query.get("label", "")))
        try:
            try:
                await asyncio.wait_for(watch.synced.wait(), self.client.timeout_seconds + WATCH_RETRY_SECONDS)
            except TimeoutError:
                raise HttpProblem(504, f"the API server has not answered the list of workflows in "
                                       f"{watch.scope.describe()} yet: reload the page") from None
            if watch.problem is not None and not watch.rows:
                raise HttpProblem(watch.problem.status, watch.problem.message)
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
            for key, value in _SECURITY_HEADERS.items():
                response.headers.setdefault(key, value)
            await response.prepare(request)
            with contextlib.suppress(ConnectionResetError):  # the browser went away
                await self._push_pages(response, watch, query, namespace)
            return response
        finally:
            self.lists.release(watch)

    async def _push_pages(self, response: web.StreamResponse, watch: ListWatch, query: views.ListQuery,
                          namespace: str | None) -> None:
        sent: Any = None
        while True:
            changed = watch.changed()
            if watch.problem is not None:
                event, data = "problem", {"error": watch.problem.message}
            else:
                page = views.row_page(list(watch.rows.values()), query)
                page["namespace"] = namespace
                event, data = "page", page
            if (event, data) != sent:
                await self._push(response, event, data)
                sent = (event, data)
            try:
                await asyncio.wait_for(changed.wait(), WATCH_SECONDS)
            except TimeoutError:
                await response.write(b": idle\n\n")  # a browser that went away is noticed here
                continue
            await asyncio.sleep(PUSH_INTERVAL_SECONDS)  # the changes of a busy moment in one push

    async def _workflow(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = await self._call(
            f'workflow "{name}"', namespace, "GET", cluster.collection_path(namespace, cluster.WORKFLOWS, name)
        )
        return found

    async def _view(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        definition = views.workflow_definition(obj)
        if definition is None:
            definition = await self._referenced_definition(obj)
        return views.workflow_view(obj, self.settings.max_branches, definition)

    async def _referenced_definition(self, obj: Mapping[str, Any]) -> Any:
        """The WorkflowDef a Workflow refers to, before the operator snapshotted it (None if unreadable)."""
        ref = spec_of(obj).get("workflowDefRef")
        if not isinstance(ref, Mapping) or not ref.get("name"):
            return None
        namespace = str(meta_of(obj).get("namespace") or self.settings.namespace)
        try:
            listed = await self.client.request("GET", cluster.collection_path(namespace, cluster.WORKFLOW_DEFS),
                                               what="workflowdefs")
        except ApiError:
            return None
        best = None
        for item in listed.get("items") or []:
            spec = spec_of(item)
            name = spec.get("name") or meta_of(item).get("name")
            version = int(spec.get("version", 1) or 1)
            if name == ref["name"] and ref.get("version") in (None, version) and (
                best is None or version > int(spec_of(best).get("version", 1) or 1)
            ):
                best = item
        if best is None:
            return None
        raw = dict(spec_of(best))
        raw.setdefault("name", ref["name"])
        return parse_definition(raw, f"WorkflowDef {namespace}/{meta_of(best).get('name')} spec")

    async def get_workflow(self, request: web.Request) -> web.Response:
        obj = await self._workflow(request.match_info["ns"], request.match_info["name"])
        return web.json_response(await self._safe_view(obj))

    async def _safe_view(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await self._view(obj)
        except KonduktError as exc:  # a malformed status or definition: named, never a traceback
            raise HttpProblem(422, exc.message) from exc

    async def stream_workflow(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        obj = await self._workflow(namespace, name)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        for key, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        await response.prepare(request)
        await self._push(response, "workflow", await self._safe_event(obj))
        version: str | None = str(meta_of(obj).get("resourceVersion") or "")
        try:
            while version is not None:
                version = await self._watch_once(response, namespace, name, version)
        except ConnectionResetError:  # the browser went away
            pass
        return response

    async def _watch_once(self, response: web.StreamResponse, namespace: str, name: str, version: str
                          ) -> str | None:
        """Push the Workflow's changes for one watch (at most WATCH_SECONDS); the resourceVersion to watch
        from next, "" to read it again first, None when the stream is over (the Workflow was deleted)."""
        await response.write(b": renew\n\n")
        what = f'workflow "{name}"'
        if not version:
            try:
                obj = await self._workflow(namespace, name)
            except HttpProblem as problem:
                await self._push(response, "problem", {"error": problem.message})
                return None
            await self._push(response, "workflow", await self._safe_event(obj))
            version = str(meta_of(obj).get("resourceVersion") or "")
        params = {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(WATCH_SECONDS),
                  "allowWatchBookmarks": "true", "resourceVersion": version}
        events = self.client.watch(cluster.collection_path(namespace, cluster.WORKFLOWS), what=what, params=params,
                                   read_timeout=WATCH_SECONDS + self.client.timeout_seconds)
        try:
            async for event in events:
                found = event.get("object")
                obj = found if isinstance(found, dict) else {}
                kind = event.get("type")
                if kind == "ERROR":  # expired (410 Gone): read it again, then watch from there
                    return ""
                version = str(meta_of(obj).get("resourceVersion") or version)
                if kind == "DELETED":
                    await self._push(response, "deleted", {"name": name, "namespace": namespace})
                    return None
                if kind in ("ADDED", "MODIFIED"):
                    await self._push(response, "workflow", await self._safe_event(obj))
                    await asyncio.sleep(PUSH_INTERVAL_SECONDS)
        except ApiError as exc:
            message = cluster.api_error(exc, what, namespace, self.client.server).message
            await self._push(response, "problem", {"error": message})
            await asyncio.sleep(WATCH_RETRY_SECONDS)
            return ""
        finally:
            await events.aclose()
        return version

    async def _safe_event(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return await self._view(obj)
        except KonduktError as exc:
            return {"error": exc.message}

    @staticmethod
    async def _push(response: web.StreamResponse, event: str, data: Any) -> None:
        payload = json.dumps(data, separators=(",", ":"), default=str)
        await response.write(f"event: {event}\ndata: {payload}\n\n".encode())

    async def get_attempt(self, request: web.Request) -> web.Response:
        obj = await self._workflow(request.match_info["ns"], request.match_info["name"])
        task_id = request.match_info["task_id"]
        try:
            task = views.find_attempt(obj, task_id)
        except KonduktError as exc:
            raise HttpProblem(422, exc.message) from exc
        if task is None:
            raise HttpProblem(404, f"workflow {request.match_info['name']} has no attempt {task_id}")
        return web.json_response(views.attempt_details(obj, task), dumps=_dumps)

    async def get_logs(self, request: web.Request) -> web.Response:
        """The logs of the pods of one attempt's Job, each as the API server answered: the text, or its
        refusal (e.g. no kubelet to ask, or RBAC refusing ``pods/log``) word for word."""
        namespace = request.match_info["ns"]
        obj = await self._workflow(namespace, request.match_info["name"])
        task = views.find_attempt(obj, request.match_info["task_id"])
        if task is None:
            raise HttpProblem(404, f"no attempt {request.match_info['task_id']}")
        selector = views.attempt_details(obj, task)["podSelector"]
        pods_path = f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods"
        listed = await self._call("pods", namespace, "GET", pods_path, params={"labelSelector": selector})
        pods = []
        for pod in listed.get("items") or []:
            pod_name = str(meta_of(pod).get("name"))
            entry: dict[str, Any] = {
                "name": pod_name,
                "phase": str((pod.get("status") or {}).get("phase") or ""),
                "node": str((pod.get("spec") or {}).get("nodeName") or ""),
            }
            try:
                entry["log"] = await self._log_text(f"{pods_path}/{urllib.parse.quote(pod_name)}/log")
            except ApiError as exc:
                entry["error"] = cluster.api_error(exc, f'the log of pod "{pod_name}"', namespace,
                                                    self.client.server).message
            pods.append(entry)
        return web.json_response({"selector": selector, "pods": pods,
                                  "kind": "pod" if task.taskType not in ("SUB_WORKFLOW",) else "workflow"})

    async def _log_text(self, path: str) -> str:
        params = {"tailLines": str(LOG_TAIL_LINES), "limitBytes": str(LOG_LIMIT_BYTES)}
        headers = {"Accept": "*/*"}  # the log is text/plain; the API server refuses that in Accept
        token = await self.client.token()
        if token:
            headers["Authorization"] = token
        session = await self.client.session()
        try:
            async with session.get(self.client.server + path, params=params, headers=headers) as response:
                text = await response.text(errors="replace")
                if response.status != 200:
                    from kondukt.kube.kubeapi import error_from_response

                    raise error_from_response(response.status, text, "pod log")
                return text
        except (TimeoutError, OSError) as exc:
            from kondukt.kube.kubeapi import TransientApiError

            raise TransientApiError(0, type(exc).__name__, str(exc), "pod log") from exc

    async def operate(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise HttpProblem(400, f"the request body is not JSON: {exc}") from exc
        if not isinstance(body, dict) or body.get("op") not in views.OPERATIONS:
            raise HttpProblem(400, f"op: expected one of {', '.join(views.OPERATIONS)}")
        client = self._operation_client(request)
        args = argparse.Namespace(
            operation=body["op"],
            task=body.get("task") or None,
            task_id=body.get("taskId") or None,
            status=body.get("status") or "COMPLETED",
            output=body.get("output") or None,
            task_input=body.get("taskInput") or None,
            input=body.get("input") or None,
            reason=body.get("reason") or None,
        )
        if args.status not in COMPLETABLE_STATUSES:
            raise HttpProblem(400, f"status: expected one of {', '.join(COMPLETABLE_STATUSES)}")
        try:
            operation = operation_from_args(args)
            obj = await self._workflow(namespace, name)
            warnings = check_operation(obj, operation)
        except KonduktError as exc:
            raise HttpProblem(400, exc.message) from exc
        await self._call(f'workflow "{name}"', namespace, "PATCH",
                         cluster.collection_path(namespace, cluster.WORKFLOWS, name), client=client,
                         body=operation.patch(), content_type="application/merge-patch+json")
        return web.json_response({
            "message": f"workflow.{kr.GROUP}/{name} ({namespace}): {operation.describe()}",
            "warnings": warnings,
        })

    def _operation_client(self, request: web.Request) -> KubeClient | None:
        """The client an operation is sent with: the user's own (None: the server's, which is the user's
        kubeconfig), or in read-only mode one carrying the bearer token the user gave the page."""
        if not self.settings.read_only:
            return None
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise HttpProblem(401, "this UI is read-only: an operation needs your own bearer token "
                                   "(kubectl create token ...), given on the page")
        return BearerClient(self.client, header[7:].strip())

    # ------------------------------------------------------------------------------------------ archive
    def _archive_store(self) -> ArchiveStore:
        if not self.settings.archive_dsn:
            raise HttpProblem(404, "no workflow archive: start `kondukt ui --archive-dsn DSN` "
                                   f"(or set ${DSN_ENV}) to read it")
        if self._archive is None:
            from kondukt.archive.store import ArchiveStore  # psycopg only when an archive is read

            self._archive = ArchiveStore(self.settings.archive_dsn)
        return self._archive

    async def _archive_call(self, operation: Callable[[ArchiveStore], Awaitable[T]]) -> T:
        try:
            return await operation(self._archive_store())
        except ArchiveError as exc:
            raise HttpProblem(503 if isinstance(exc, ArchiveUnavailable) else 400,
                              f"the workflow archive: {exc}") from exc

    async def list_archived(self, request: web.Request) -> web.Response:
        query = archive_query(request.query, self.settings.namespace, dt.datetime.now(dt.UTC))
        records = await self._archive_call(lambda store: store.find(query))
        return web.json_response({"namespace": query.namespace, "limit": query.limit,
                                  "rows": [archived_row(r) for r in records]})

    async def _archived(self, uid: str) -> ArchivedWorkflow:
        records = await self._archive_call(lambda store: store.get(uid, None))
        found = [r for r in records if r.uid == uid]
        if not found:
            raise HttpProblem(404, f"no archived workflow with uid {uid}")
        return found[0]

    async def get_archived(self, request: web.Request) -> web.Response:
        """An archived run as the workflow page shows a live one (no pushes, no operations)."""
        record = await self._archived(request.match_info["uid"])
        view = views.workflow_view(record.workflow, self.settings.max_branches)
        view.update(operations=[], taskOperations=[], archived=archived_row(record))
        return web.json_response(view, dumps=_dumps)

    async def get_archived_attempt(self, request: web.Request) -> web.Response:
        record = await self._archived(request.match_info["uid"])
        task = views.find_attempt(record.workflow, request.match_info["task_id"])
        if task is None:
            raise HttpProblem(404, f"archived workflow {record.name} has no attempt {request.match_info['task_id']}")
        return web.json_response(views.attempt_details(record.workflow, task), dumps=_dumps)

    async def list_definitions(self, request: web.Request) -> web.Response:
        namespace = self._namespace(request)
        wdefs = await self._call("workflowdefs", namespace, "GET",
                                 cluster.collection_path(namespace, cluster.WORKFLOW_DEFS))
        tdefs = await self._call("taskdefs", namespace, "GET", cluster.collection_path(namespace, kr.TASKDEF_PLURAL))
        page = views.definition_rows(wdefs.get("items") or [], tdefs.get("items") or [])
        page["namespace"] = namespace
        return web.json_response(page)

    async def get_definition(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        item = await self._call(f'workflowdef "{name}"', namespace, "GET",
                                cluster.collection_path(namespace, cluster.WORKFLOW_DEFS, name))
        try:
            return web.json_response(views.definition_view(item))
        except KonduktError as exc:
            raise HttpProblem(422, exc.message) from exc


ARCHIVE_PAGE_LIMIT = 500


def archive_query(params: Mapping[str, str], default_namespace: str | None, now: dt.datetime) -> ArchiveQuery:
    """The archive page's filters as the archive's query (the same rules as ``kondukt get --archived``)."""
    phases = tuple(p.strip().upper() for p in params.get("phase", "").split(",") if p.strip())
    unknown = [p for p in phases if p not in ARCHIVED_PHASES]
    if unknown:
        raise HttpProblem(400, f"phase: {unknown[0]} is not a phase of a finished workflow "
                               f"({', '.join(ARCHIVED_PHASES)})")
    try:
        since = parse_time(params["since"], "since", now) if params.get("since") else None
    except KonduktError as exc:
        raise HttpProblem(400, exc.message) from exc
    namespace = None if params.get("all") == "1" else (params.get("namespace") or default_namespace)
    return ArchiveQuery(namespace=namespace, phases=phases, selector=params.get("label") or None,
                        finished_after=since, limit=ARCHIVE_PAGE_LIMIT)


def archived_row(record: ArchivedWorkflow) -> dict[str, Any]:
    definition = (f"{record.definition_name} v{record.definition_version}" if record.definition_version
                  else record.definition_name or "")
    return {
        "uid": record.uid, "namespace": record.namespace, "name": record.name, "phase": record.phase,
        "finished": record.finished_at.isoformat().replace("+00:00", "Z"),
        "started": record.started_at.isoformat().replace("+00:00", "Z") if record.started_at else "",
        "archived": record.archived_at.isoformat().replace("+00:00", "Z") if record.archived_at else "",
        "definition": definition, "labels": dict(record.labels),
    }


def host_name(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` → ``[::1]``, ``localhost:8080`` → ``localhost``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


class BearerClient(KubeClient):
    """The server's client, but sending the user's bearer token and no client certificate of the server's."""

    def __init__(self, base: KubeClient, bearer: str) -> None:
        configuration = copy.copy(base.configuration)
        configuration.cert_file = None
        configuration.key_file = None
        super().__init__(configuration, timeout=base.timeout_seconds, connections=2)
        self._bearer = bearer

    async def token(self) -> str | None:
        return f"Bearer {self._bearer}"

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().request(*args, **kwargs)
        finally:
            await self.close()
