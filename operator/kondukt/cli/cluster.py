"""How the cluster commands reach the cluster: the connection flags, the API calls, their errors.

``kondukt get|describe|watch|graph`` and the operations find the cluster by the standard kubeconfig rules
(``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; ``--context``; the namespace from
``-n``, else the context's, else ``default``), or by the pod's service account when run inside a cluster
without a kubeconfig. :class:`WorkflowApi` makes the handful of calls they need through the client the
operator uses (:mod:`kondukt.kube.kubeapi`, the one wrapper of the Kubernetes API) and turns every failure
(no kubeconfig, an unreachable server, not found, forbidden) into a :class:`ClusterError` whose message
says what went wrong and where. The Kubernetes clients are imported only when a command connects.

This module never writes a Workflow's ``status`` and never retries an operation on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from kondukt.errors import KonduktError
from kondukt.kube.resources import CRONWORKFLOW_PLURAL, GROUP, VERSION, WORKFLOW_PLURAL, WORKFLOWDEF_PLURAL

WORKFLOWS = WORKFLOW_PLURAL
WORKFLOW_DEFS = WORKFLOWDEF_PLURAL
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

if TYPE_CHECKING:
    from kondukt.kube.kubeapi import ApiError, KubeClient

T = TypeVar("T")


class ClusterError(KonduktError):
    """The cluster could not be used as asked (no kubeconfig, unreachable, not found, forbidden): exit 2.

    Exit code 1 stays unambiguous: ``kondukt watch`` uses it for a workflow that ended unsuccessfully.
    """

    exit_code = 2


# ============================================================================================ API access
def api_error(exc: ApiError, what: str, namespace: str | None, host: str) -> ClusterError:
    """A clear message for an API error raised while acting on `what` (e.g. 'workflow "x"')."""
    status = exc.status
    message = (exc.api_message or exc.reason or "no details").strip()
    where = f" in namespace {namespace}" if namespace else ""
    if status == 0:  # no answer: refused, reset, timed out
        return ClusterError(f"cannot reach the Kubernetes API server at {host}: {message}")
    if status == 404:
        if exc.details.get("name"):
            return ClusterError(f"{what} not found{where}")
        return ClusterError(
            f"the cluster does not serve {GROUP}/{VERSION} ({message}): install Kondukt's CRDs "
            "(`kubectl apply -f crds/`) or its Helm chart"
        )
    if status == 403:
        return ClusterError(f"forbidden: {message}")
    if status == 401:
        return ClusterError(
            f"unauthorized: the cluster rejected the credentials of this kubeconfig ({message})"
        )
    if status == 410:
        return ClusterError(f"the cluster expired the watch of {what}: {message}")
    return ClusterError(f"the cluster refused the request on {what}{where} (HTTP {status}): {message}")


@dataclass(frozen=True)
class Connection:
    """Where to find the cluster: the standard kubeconfig rules, or the pod's service account."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS


class WorkflowApi:
    """The handful of API calls the CLI makes, each failure turned into a :class:`ClusterError`.

    The calls go through the operator's client (:class:`~kondukt.kube.kubeapi.KubeClient`), run to
    completion one at a time on an event loop this object owns: the commands are synchronous.
    ``namespace`` is the default namespace (from ``-n``, else the kubeconfig context's, else the pod's).
    Close it when done (the commands use ``contextlib.closing``).
    """

    def __init__(self, client: KubeClient, namespace: str, loop: asyncio.AbstractEventLoop | None = None):
        self.client = client
        self.namespace = namespace
        self._loop = loop

    @property
    def host(self) -> str:
        return self.client.server

    def close(self) -> None:
        """Release the connections and the event loop."""
        if self._loop is not None:
            self._loop.run_until_complete(self.client.close())
            self._loop.close()
            self._loop = None

    def _run(self, awaitable: Awaitable[T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(awaitable)

    @classmethod
    def connect(cls, connection: Connection) -> WorkflowApi:
        # The Kubernetes clients are imported where they are used: importing them takes a good part of a
        # second, which every other `kondukt` command (run, validate, graph FILE, --help) would pay for nothing.
        from kubernetes_asyncio import config
        from kubernetes_asyncio.client import Configuration

        from kondukt.kube.kubeapi import KubeClient

        configuration = Configuration()
        namespace = connection.namespace
        config_file = connection.kubeconfig or os.environ.get("KUBECONFIG")
        default_file = Path("~/.kube/config").expanduser()
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if config_file is None and not default_file.exists() and in_cluster and connection.context is None:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except config.ConfigException as exc:
                raise ClusterError(f"cannot use the in-cluster service account: {exc}") from exc
            if namespace is None:
                try:
                    namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
                except OSError:
                    namespace = "default"
        else:
            namespace = cls._load_kubeconfig(configuration, connection, config_file or str(default_file))
        return cls(KubeClient(configuration, timeout=connection.request_timeout, connections=4), namespace)

    @staticmethod
    def _load_kubeconfig(configuration: Any, connection: Connection, path: str) -> str:
        """Fill ``configuration`` from the kubeconfig at ``path``; the namespace to use."""
        from kubernetes_asyncio import config

        if not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
            raise ClusterError(
                f"no kubeconfig found at {path}: pass --kubeconfig FILE, set KUBECONFIG, or run inside a cluster"
            )
        try:
            contexts, current = config.list_kube_config_contexts(config_file=path)
        except (config.ConfigException, yaml.YAMLError, OSError, KeyError, TypeError) as exc:
            raise ClusterError(f"cannot read the kubeconfig {path}: {exc}") from exc
        chosen = current
        if connection.context is not None:
            matches = [c for c in contexts or [] if c.get("name") == connection.context]
            if not matches:
                known = ", ".join(sorted(str(c.get("name")) for c in contexts or [])) or "none"
                raise ClusterError(f"context {connection.context!r} not found in {path} (contexts: {known})")
            chosen = matches[0]
        if not chosen:
            raise ClusterError(f"the kubeconfig {path} has no current context: pass --context NAME")
        try:
            asyncio.run(  # a loop of its own: the calls' loop is made when the first call is
                config.load_kube_config(
                    config_file=path,
                    context=connection.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            )
        except (config.ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
            raise ClusterError(f"cannot use the kubeconfig {path}: {exc}") from exc
        if connection.namespace is not None:
            return connection.namespace
        return str((chosen.get("context") or {}).get("namespace") or "default")

    # -- calls
    def _call(
        self, what: str, namespace: str | None, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        from kondukt.kube.kubeapi import ApiError

        try:
            found = self._run(self.client.request(method, path, what=what, **kwargs))
        except ApiError as exc:
            raise api_error(exc, what, namespace, self.host) from exc
        return dict(found or {})

    def get_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        return self._call(f'workflow "{name}"', ns, "GET", collection_path(ns, WORKFLOWS, name))

    def list_workflows(
        self, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[dict[str, Any]]:
        if all_namespaces:
            result = self._call("workflows", None, "GET", collection_path(None, WORKFLOWS))
        else:
            ns = namespace or self.namespace
            result = self._call("workflows", ns, "GET", collection_path(ns, WORKFLOWS))
        return [dict(item) for item in result.get("items") or []]

    def list_workflow_defs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        result = self._call("workflowdefs", ns, "GET", collection_path(ns, WORKFLOW_DEFS))
        return [dict(item) for item in result.get("items") or []]

    def list_cron_workflows(
        self, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[dict[str, Any]]:
        ns = None if all_namespaces else (namespace or self.namespace)
        result = self._call("cronworkflows", ns, "GET", collection_path(ns, CRONWORKFLOW_PLURAL))
        return [dict(item) for item in result.get("items") or []]

    def get_cron_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        return self._call(f'cronworkflow "{name}"', ns, "GET", collection_path(ns, CRONWORKFLOW_PLURAL, name))

    def create_workflow(self, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        name = (body.get("metadata") or {}).get("name")
        return self._call(f'workflow "{name}"', ns, "POST", collection_path(ns, WORKFLOWS), body=dict(body))

    def merge_patch_workflow(
        self, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or self.namespace
        return self._call(
            f'workflow "{name}"', ns, "PATCH", collection_path(ns, WORKFLOWS, name),
            body=dict(patch), content_type="application/merge-patch+json",
        )

    def events_for(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Events whose involvedObject is this Workflow (matched by uid when it has one)."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or self.namespace)
        selector = (
            f"involvedObject.name={meta.get('name')},involvedObject.kind={obj.get('kind') or 'Workflow'}"
        )
        if meta.get("uid"):
            selector += f",involvedObject.uid={meta['uid']}"
        path = f"/api/v1/namespaces/{urllib.parse.quote(ns)}/events"
        result = self._call("events", ns, "GET", path, params={"fieldSelector": selector})
        return [dict(item) for item in result.get("items") or []]

    def watch_workflow(
        self, name: str, resource_version: str | None, timeout_seconds: int, namespace: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) pairs for one Workflow until the server ends the watch (≤ timeout_seconds).

        An expired resource version (HTTP 410) just ends the iteration: the caller re-reads and watches again.
        """
        from kondukt.kube.kubeapi import ApiError

        ns = namespace or self.namespace
        what = f'workflow "{name}"'
        params = {"fieldSelector": f"metadata.name={name}", "timeoutSeconds": str(max(1, timeout_seconds))}
        if resource_version:
            params["resourceVersion"] = resource_version
        read_timeout = max(1, timeout_seconds) + self.client.timeout_seconds
        events = self.client.watch(collection_path(ns, WORKFLOWS), what=what, params=params, read_timeout=read_timeout)
        try:
            while True:
                try:
                    event = self._run(anext(events))
                except StopAsyncIteration:
                    return
                except ApiError as exc:
                    if exc.status == 410:
                        return
                    if exc.status == 0:
                        raise ClusterError(
                            f"lost the watch on the Kubernetes API server at {self.host}: {exc.api_message}"
                        ) from exc
                    raise api_error(exc, what, ns, self.host) from exc
                found = event.get("object")
                obj: dict[str, Any] = found if isinstance(found, dict) else {}
                if event.get("type") == "ERROR":  # the server ended the watch with a Status
                    if obj.get("code") == 410:
                        return
                    status = int(obj.get("code") or 0)
                    error = ApiError(status, str(obj.get("reason") or ""), str(obj.get("message") or ""), what)
                    raise api_error(error, what, ns, self.host)
                yield str(event.get("type")), dict(obj)
        finally:
            self._run(events.aclose())


def collection_path(namespace: str | None, plural: str, name: str | None = None) -> str:
    """The API path of Kondukt's resources of one kind (in a namespace, or in all), or of one of them."""
    path = f"/apis/{GROUP}/{VERSION}"
    if namespace is not None:
        path += f"/namespaces/{urllib.parse.quote(namespace)}"
    path += f"/{plural}"
    return path + f"/{urllib.parse.quote(name)}" if name else path


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The connection the cluster flags ask for (see :func:`kondukt.cli.app.add_cluster_options`)."""
    return Connection(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
    )


#: How commands reach the cluster; tests may replace it to point elsewhere.
connect: Callable[[Connection], WorkflowApi] = WorkflowApi.connect
