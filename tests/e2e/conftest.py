"""Fixtures shared by every e2e test: one real control plane per session, one namespace per test.

    def test_something(control_plane, namespace):
        control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=manifest)

`control_plane` is a tests.e2e.controlplane.ControlPlane: `.kubeconfig`, `.server`, `.token`, `.ca_file`,
`.bin(name)`, `.kubectl(*args, input=None, check=True)`, `.helm(...)`, `.api(method, path, body)`.
Missing binaries FAIL the tests (run `make control-plane`); they are never skipped.

When the session has tests marked `realnode`, the control plane gets a real node too (tests/e2e/realnode.py):
its API server then listens on the node's bridge address, and `real_namespace` gives a namespace whose pods
all run there. Without such tests no real node is started (the kwok tier needs none).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.controlplane import ControlPlane, ControlPlaneError, kondukt_crds, start, wait_for
from tests.e2e.realnode import API_PORT, GATEWAY, SERVICE_CIDR, RealNode, annotate_for_real_node

REAL_NODE = pytest.StashKey[RealNode]()


def _wants_real_node(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("realnode") for item in session.items)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """The session's cluster. Kondukt's CRDs (crds/*.yaml) are installed before kube-controller-manager
    starts, so that its garbage collector watches Workflows from the start (see ControlPlane.crds)."""
    node: RealNode | None = None
    options: dict[str, Any] = {}
    try:
        if _wants_real_node(request.session):
            node = RealNode().prepare()
            options = {"bind_address": GATEWAY, "secure_port": API_PORT, "service_cidr": SERVICE_CIDR,
                       "extra_tokens": [node.node_token_line()]}
        cp = start(crds=kondukt_crds(), **options)
    except ControlPlaneError as e:
        if node is not None:
            node.stop()
        pytest.fail(f"cannot start the e2e control plane: {e}", pytrace=False)
    try:
        if node is not None:
            try:
                node.start(cp)
            except ControlPlaneError as e:
                pytest.fail(f"cannot start the real node: {e}", pytrace=False)
            request.config.stash[REAL_NODE] = node
        yield cp
    finally:
        if node is not None:
            node.stop()
        cp.stop()


@pytest.fixture(scope="session")
def real_node(control_plane: ControlPlane, request: pytest.FixtureRequest) -> RealNode:
    """The session's real node (only for tests marked `realnode`)."""
    node = request.config.stash.get(REAL_NODE, None)
    if node is None:
        pytest.fail("the real node runs only for tests marked `realnode`", pytrace=False)
    return node


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for this test (its `default` ServiceAccount exists), deleted afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 'test'}-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    wait_for(
        lambda: control_plane.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")[0] == 200,
        f"the default ServiceAccount of namespace {name}", timeout=30,
    )
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def real_namespace(control_plane: ControlPlane, real_node: RealNode, namespace: str) -> str:
    """A fresh namespace whose pods all run on the real node."""
    annotate_for_real_node(control_plane, namespace)
    return namespace
