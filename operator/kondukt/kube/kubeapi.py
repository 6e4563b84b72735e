"""The few Kubernetes API calls Kondukt makes, over one pooled aiohttp session: the operator's and the CLI's.

Configuration (server, CA, client certificate, token — refreshed for in-cluster and exec credentials)
comes from ``kubernetes_asyncio``'s kubeconfig / in-cluster loaders; requests are plain JSON over aiohttp
so nothing is deserialised into generated model classes (the Workflow of a 2,000-branch fork is a
large object, and the reconcile only needs dicts). Every call is async: the event loop never blocks.

Errors come out classified, because the reconcile reacts differently to each:
:class:`NotFound` (404), :class:`AlreadyExists` (409 on create), :class:`Conflict` (409 on update: stale
resourceVersion), :class:`Invalid` (400/422: the object itself is wrong, retrying cannot help) and
:class:`TransientApiError` (5xx, 429, 403, timeouts, connection problems — status 0: retry with backoff).
Each error keeps the status's ``details`` (e.g. the name of what was not found), which the CLI's messages
use. ``kondukt get|describe|watch|...`` (:mod:`kondukt.cli.cluster`) make their calls through this same
client, from synchronous code.

A client may carry a *fence* (:attr:`KubeClient.fence`): with several replicas, the reconciler's client is
fenced by the leader election (:mod:`kondukt.kube.leader`), and a write — anything but GET — is refused
with :class:`NotLeader` unless this replica leads at the moment it is handed to the HTTP session. So a
replica that lost the Lease in the middle of a reconcile sends nothing more, whatever the reconcile does.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.parse
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import config as kube_config
from kubernetes_asyncio.client import Configuration

from kondukt.kube import resources as r

DEFAULT_TIMEOUT_SECONDS = 30.0
#: A LIST answered with the objects' metadata only (what client-go's metadata informers ask for).
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json;q=0.9"
#: Objects per page of :meth:`KubeClient.list_names`, and at most how many pages it reads.
LIST_PAGE = 500
MAX_LIST_PAGES = 1_000


class ApiError(Exception):
    def __init__(
        self, status: int, reason: str, message: str, what: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{what}: HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.api_message = message
        self.what = what
        #: The Status object's ``details`` (``name``, ``kind``, ``causes``), when the server sent one.
        self.details: Mapping[str, Any] = details or {}
        #: Seconds the server asked us to wait before retrying (its ``Retry-After`` header on 429/503), if any.
        self.retry_after: float | None = None


class NotFound(ApiError):
    pass


class AlreadyExists(ApiError):
    pass


class Conflict(ApiError):
    pass


class Invalid(ApiError):
    """The request's object is invalid (schema, CEL, admission): the same request will fail again."""


class TooLarge(ApiError):
    """The API server (or etcd behind it) refused the request for its size: the same request fails again."""


#: How the API server and etcd say a request is too large (413 from the API server; etcd's refusals come
#: back as 500 "etcdserver: request is too large" or gRPC's "trying to send message larger than max").
_TOO_LARGE_MARKERS = ("request is too large", "larger than max", "entity too large", "too long: must have at most")


class TransientApiError(ApiError):
    """Worth retrying: server errors, throttling, timeouts, refused connections, missing permissions."""


#: The longest ``Retry-After`` honoured (a misbehaving proxy must not park a workflow for hours).
MAX_RETRY_AFTER_SECONDS = 60.0


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the API server sends whole seconds), capped; None if absent or
    not a number (the HTTP-date form is not used by the API server)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def exceeded_quota(error: ApiError) -> bool:
    """A create refused by a ResourceQuota (403 ``exceeded quota: ...``): it succeeds only once objects counted
    against the quota are deleted."""
    return error.status == 403 and "exceeded quota" in str(error.api_message)


class NotLeader(TransientApiError):
    """A write refused before it was sent: this replica does not lead (it stands by, or lost the Lease)."""


def error_from_response(
    status: int, text: str, what: str, on_conflict: type[ApiError] = Conflict
) -> ApiError:
    """The error for a failed response: its class from the status (and reason), its message from the body."""
    reason, message, details = "", text[:2000], None
    try:
        document = json.loads(text)
        reason = str(document.get("reason") or "")
        message = str(document.get("message") or message)
        details = document.get("details") if isinstance(document.get("details"), dict) else None
    except (ValueError, AttributeError):
        pass
    if status == 413 or any(marker in message.lower() for marker in _TOO_LARGE_MARKERS):
        return TooLarge(status, reason, message, what, details)
    if status == 404:
        return NotFound(status, reason, message, what, details)
    if status == 409:
        error = AlreadyExists if reason == "AlreadyExists" else on_conflict
        return error(status, reason, message, what, details)
    if status in (400, 422):
        return Invalid(status, reason, message, what, details)
    return TransientApiError(status, reason, message, what, details)


@dataclass(frozen=True)
class Connection:
    server: str
    ca_file: str | None
    verify: bool
    cert_file: str | None
    key_file: str | None
    default_namespace: str | None


async def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    """The client configuration: in-cluster when running in a pod (and no kubeconfig given), else kubeconfig."""
    configuration = Configuration()
    if kubeconfig is None:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
        except kube_config.ConfigException:
            pass
    await kube_config.load_kube_config(config_file=kubeconfig, context=context,
                                       client_configuration=configuration)
    return configuration


class KubeClient:
    """A minimal async JSON client for the Kubernetes API."""

    def __init__(self, configuration: Configuration, *, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 connections: int = 64) -> None:
        self.configuration = configuration
        self.server = str(configuration.host).rstrip("/")
        self.timeout_seconds = timeout
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        #: Whether writes may be sent now (None: always); see the module's docstring.
        self.fence: Callable[[], bool] | None = None
        #: Called with every transient failure of a request or watch (5xx, 429, timeouts, broken connections:
        #: the API misbehaving, not answers such as 404 or 409) — the operator counts them in
        #: ``kondukt_api_errors_total``. Never called for :class:`NotLeader` (nothing was sent).
        self.on_error: Callable[[TransientApiError], None] | None = None
        #: Called with (method, seconds) when a request (not a watch) ends, however it ended: the operator's
        #: ``kondukt_api_request_duration_seconds{method}`` — a slow API server shows there.
        self.on_done: Callable[[str, float], None] | None = None

    def _failed(self, error: ApiError) -> ApiError:
        if self.on_error is not None and isinstance(error, TransientApiError):
            self.on_error(error)
        return error

    def _ssl(self) -> ssl.SSLContext | bool:
        cfg = self.configuration
        if not self.server.startswith("https"):
            return False
        if not cfg.verify_ssl:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=cfg.ssl_ca_cert) if cfg.ssl_ca_cert else \
                ssl.create_default_context()
        if cfg.cert_file and cfg.key_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        return context

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl())
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def token(self) -> str | None:
        auth = await self.configuration.auth_settings()
        bearer = auth.get("BearerToken")
        return str(bearer["value"]) if bearer else None

    async def connection(self) -> Connection:
        cfg = self.configuration
        return Connection(server=self.server, ca_file=cfg.ssl_ca_cert, verify=bool(cfg.verify_ssl),
                          cert_file=cfg.cert_file, key_file=cfg.key_file, default_namespace=None)

    # ------------------------------------------------------------------------------------------ calls
    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        on_conflict: type[ApiError] = Conflict,
        accept: str = "application/json",
    ) -> Any:
        headers = {"Accept": accept}
        token = await self.token()
        if token:
            headers["Authorization"] = token
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        url = self.server + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        session = await self.session()
        if self.fence is not None and method != "GET" and not self.fence():
            raise NotLeader(0, "NotLeader", "this replica does not lead (it stands by or lost the lease)", what)
        started = time.monotonic()
        try:
            async with session.request(method, url, data=data, headers=headers) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise self._failed(TransientApiError(0, type(err).__name__, str(err) or repr(err), what)) from err
        finally:
            if self.on_done is not None:
                self.on_done(method, time.monotonic() - started)
        if 200 <= status < 300:
            return json.loads(text) if text else None
        error = error_from_response(status, text, what, on_conflict)
        error.retry_after = retry_after_seconds(retry_after)
        raise self._failed(error)

    async def watch(
        self, path: str, *, what: str, params: Mapping[str, str], read_timeout: float
    ) -> AsyncGenerator[dict[str, Any], None]:
        """The events (``{"type": ..., "object": ...}``) of a watch on a collection, until the server ends it.

        ``ERROR`` events (e.g. 410 Gone: the resourceVersion is too old) are yielded like the others; a
        refused watch raises its :class:`ApiError`, a broken connection :class:`TransientApiError`.
        """
        headers = {"Accept": "application/json"}
        token = await self.token()
        if token:
            headers["Authorization"] = token
        session = await self.session()
        timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout)
        try:
            async with session.get(self.server + path, params={**params, "watch": "1"}, headers=headers,
                                   timeout=timeout) as response:
                if response.status != 200:
                    error = error_from_response(response.status, await response.text(), what)
                    error.retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    raise self._failed(error)
                pending = b""
                async for chunk in response.content.iter_any():
                    *lines, pending = (pending + chunk).split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise self._failed(TransientApiError(0, type(err).__name__, str(err) or repr(err), what)) from err

    # --------------------------------------------------------------------------------------- helpers
    @staticmethod
    def workflow_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        path = f"/apis/{r.GROUP}/{r.VERSION}/namespaces/{namespace}/{r.WORKFLOW_PLURAL}"
        if name:
            path += f"/{urllib.parse.quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path

    @staticmethod
    def job_path(namespace: str, name: str | None = None) -> str:
        path = f"/apis/batch/v1/namespaces/{namespace}/jobs"
        return path + f"/{urllib.parse.quote(name)}" if name else path

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.request("GET", path, what=what)
            return found
        except NotFound:
            return None

    async def create(self, path: str, body: Mapping[str, Any], what: str) -> dict[str, Any] | None:
        """POST; None when the object already exists (idempotent creation)."""
        try:
            created: dict[str, Any] = await self.request("POST", path, body=body, what=what)
            return created
        except AlreadyExists:
            return None

    async def delete(self, path: str, what: str, propagation: str = "Background") -> bool:
        """DELETE; False when it was already gone."""
        try:
            await self.request("DELETE", path, what=what,
                               body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
            return True
        except NotFound:
            return False

    async def merge_patch(self, path: str, patch: Mapping[str, Any], what: str) -> dict[str, Any]:
        patched: dict[str, Any] = await self.request("PATCH", path, body=patch, what=what,
                                                     content_type="application/merge-patch+json")
        return patched

    async def replace_status(self, namespace: str, name: str, resource_version: str,
                             status: Mapping[str, Any]) -> dict[str, Any]:
        """PUT the whole status with optimistic concurrency (:class:`Conflict` when it moved on)."""
        body = {
            "apiVersion": r.API_VERSION,
            "kind": r.WORKFLOW_KIND,
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
            "status": status,
        }
        replaced: dict[str, Any] = await self.request(
            "PUT", self.workflow_path(namespace, name, "status"), body=body,
            what=f"workflow {namespace}/{name} status",
        )
        return replaced

    async def list_names(self, path: str, what: str, label_selector: str | None = None,
                         page: int = LIST_PAGE) -> set[str]:
        """The names of a collection's objects (matching ``label_selector``): metadata only, in pages of ``page``,
        so that asking about thousands of objects costs a few small responses, not a request each."""
        found: set[str] = set()
        params = {"limit": str(page), **({"labelSelector": label_selector} if label_selector else {})}
        for _ in range(MAX_LIST_PAGES):
            listed = await self.request("GET", path, what=what, params=params, accept=METADATA_LIST)
            listed = listed if isinstance(listed, dict) else {}
            found.update(name for item in listed.get("items") or []
                         if isinstance(name := (item.get("metadata") or {}).get("name"), str))
            token = (listed.get("metadata") or {}).get("continue")
            if not token:
                return found
            params["continue"] = str(token)
        raise TransientApiError(0, "TooManyPages", f"more than {MAX_LIST_PAGES} pages of {page}", what)

    async def list_items(self, path: str, what: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        listed = await self.request("GET", path, what=what, params=params)
        items = listed.get("items") if isinstance(listed, dict) else None
        return list(items or [])
