"""How the cluster commands reach the cluster: the connection flags, the API calls, their errors.

``kondukt get|describe|watch|graph`` and the operations find the cluster by the standard kubeconfig rules
(``--kubeconfig``, else ``$KUBECONFIG``, else ``~/.kube/config``; ``--context``; the namespace from
``-n``, else the context's, else ``default``), or by the pod's service account when run inside a cluster
without a kubeconfig. :class:`WorkflowApi` makes the handful of calls they need and turns every failure
(no kubeconfig, an unreachable server, not found, forbidden) into a :class:`ClusterError` whose message
says what went wrong and where.

This module never writes a Workflow's ``status`` and never retries an operation on its own.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kondukt.errors import KonduktError
from kondukt.kube.resources import GROUP, VERSION, WORKFLOW_PLURAL, WORKFLOWDEF_PLURAL

WORKFLOWS = WORKFLOW_PLURAL
WORKFLOW_DEFS = WORKFLOWDEF_PLURAL
DEFAULT_REQUEST_TIMEOUT_SECONDS = 30.0
IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ClusterError(KonduktError):
    """The cluster could not be used as asked (no kubeconfig, unreachable, not found, forbidden): exit 2.

    Exit code 1 stays unambiguous: ``kondukt watch`` uses it for a workflow that ended unsuccessfully.
    """

    exit_code = 2


# ============================================================================================ API access
def _api_error(exc: Any, what: str, namespace: str | None) -> ClusterError:
    """A clear message for an ApiException raised while acting on `what` (e.g. 'workflow "x"')."""
    status = getattr(exc, "status", None)
    body: dict[str, Any] = {}
    raw = getattr(exc, "body", None)
    if raw:
        try:
            decoded = json.loads(raw)
            body = decoded if isinstance(decoded, dict) else {}
        except (TypeError, ValueError):
            body = {}
    message = str(body.get("message") or getattr(exc, "reason", "") or "no details").strip()
    where = f" in namespace {namespace}" if namespace else ""
    if status == 404:
        details = body.get("details") if isinstance(body.get("details"), dict) else {}
        if details and details.get("name"):
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
    """The handful of API calls the CLI makes, each failure turned into a KonduktError.

    ``namespace`` is the default namespace (from ``-n``, else the kubeconfig context's, else the pod's).
    """

    def __init__(
        self, api_client: Any, namespace: str, request_timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    ):
        # The kubernetes client is imported where it is used: importing it takes over half a second,
        # which every other `kondukt` command (run, validate, graph FILE, --help) would pay for nothing.
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def close(self) -> None:
        """Release the connections (the commands close their WorkflowApi when done)."""
        self.api_client.close()

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    @classmethod
    def connect(cls, connection: Connection) -> WorkflowApi:
        from kubernetes import client, config

        configuration = client.Configuration()
        namespace = connection.namespace
        config_file = connection.kubeconfig or os.environ.get("KUBECONFIG")
        default_file = Path("~/.kube/config").expanduser()
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if config_file is None and not default_file.exists() and in_cluster and connection.context is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException as exc:
                raise ClusterError(f"cannot use the in-cluster service account: {exc}") from exc
            if namespace is None:
                try:
                    namespace = IN_CLUSTER_NAMESPACE_FILE.read_text().strip() or "default"
                except OSError:
                    namespace = "default"
        else:
            path = config_file or str(default_file)
            if not any(Path(p).expanduser().is_file() for p in path.split(os.pathsep) if p):
                raise ClusterError(
                    f"no kubeconfig found at {path}: pass --kubeconfig FILE, set KUBECONFIG, "
                    "or run inside a cluster"
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
                    raise ClusterError(
                        f"context {connection.context!r} not found in {path} (contexts: {known})"
                    )
                chosen = matches[0]
            if not chosen:
                raise ClusterError(f"the kubeconfig {path} has no current context: pass --context NAME")
            try:
                config.load_kube_config(
                    config_file=path,
                    context=connection.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
            except (config.ConfigException, OSError, KeyError, TypeError, ValueError) as exc:
                raise ClusterError(f"cannot use the kubeconfig {path}: {exc}") from exc
            if namespace is None:
                namespace = str((chosen.get("context") or {}).get("namespace") or "default")
        configuration.retries = 1
        return cls(client.ApiClient(configuration), namespace, connection.request_timeout)

    # -- calls
    def _call(self, what: str, namespace: str | None, call: Callable[[], Any]) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            return call()
        except ApiException as exc:
            raise _api_error(exc, what, namespace) from exc
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(f"cannot reach the Kubernetes API server at {self.host}: {reason}") from exc

    def get_workflow(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = namespace or self.namespace
        obj = self._call(
            f'workflow "{name}"',
            ns,
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, ns, WORKFLOWS, name, _request_timeout=self.request_timeout
            ),
        )
        return dict(obj)

    def list_workflows(
        self, namespace: str | None = None, all_namespaces: bool = False
    ) -> list[dict[str, Any]]:
        if all_namespaces:
            result = self._call(
                "workflows",
                None,
                lambda: self.custom.list_cluster_custom_object(
                    GROUP, VERSION, WORKFLOWS, _request_timeout=self.request_timeout
                ),
            )
        else:
            ns = namespace or self.namespace
            result = self._call(
                "workflows",
                ns,
                lambda: self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, ns, WORKFLOWS, _request_timeout=self.request_timeout
                ),
            )
        return [dict(item) for item in result.get("items") or []]

    def list_workflow_defs(self, namespace: str | None = None) -> list[dict[str, Any]]:
        ns = namespace or self.namespace
        result = self._call(
            "workflowdefs",
            ns,
            lambda: self.custom.list_namespaced_custom_object(
                GROUP, VERSION, ns, WORKFLOW_DEFS, _request_timeout=self.request_timeout
            ),
        )
        return [dict(item) for item in result.get("items") or []]

    def merge_patch_workflow(
        self, name: str, patch: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        ns = namespace or self.namespace
        obj = self._call(
            f'workflow "{name}"',
            ns,
            lambda: self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                WORKFLOWS,
                name,
                dict(patch),
                _content_type="application/merge-patch+json",
                _request_timeout=self.request_timeout,
            ),
        )
        return dict(obj)

    def events_for(self, obj: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Events whose involvedObject is this Workflow (matched by uid when it has one)."""
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or self.namespace)
        selector = (
            f"involvedObject.name={meta.get('name')},involvedObject.kind={obj.get('kind') or 'Workflow'}"
        )
        if meta.get("uid"):
            selector += f",involvedObject.uid={meta['uid']}"
        response = self._call(
            "events",
            ns,
            lambda: self.core.list_namespaced_event(
                ns, field_selector=selector, _preload_content=False, _request_timeout=self.request_timeout
            ),
        )
        decoded = json.loads(response.data)
        return [dict(item) for item in decoded.get("items") or []]

    def watch_workflow(
        self, name: str, resource_version: str | None, timeout_seconds: int, namespace: str | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, object) pairs for one Workflow until the server ends the watch (≤ timeout_seconds).

        An expired resource version (HTTP 410) just ends the iteration: the caller re-reads and watches again.
        """
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        ns = namespace or self.namespace
        watcher = watch.Watch()
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": max(1, timeout_seconds),
            "_request_timeout": (self.request_timeout, max(1, timeout_seconds) + self.request_timeout),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in watcher.stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, ns, WORKFLOWS, **kwargs
            ):
                yield str(event.get("type")), dict(event.get("raw_object") or {})
        except ApiException as exc:
            if exc.status == 410:
                return
            raise _api_error(exc, f'workflow "{name}"', ns) from exc
        except (Urllib3Error, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ClusterError(
                f"lost the watch on the Kubernetes API server at {self.host}: {reason}"
            ) from exc
        finally:
            watcher.stop()


def connection_from_args(args: argparse.Namespace) -> Connection:
    """The connection the cluster flags ask for (see :func:`kondukt.cli.app.add_cluster_options`)."""
    return Connection(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
    )


#: How commands reach the cluster; tests may replace it to point elsewhere.
connect: Callable[[Connection], WorkflowApi] = WorkflowApi.connect
