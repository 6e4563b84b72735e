"""Fixtures shared by every e2e test: one real control plane per session, one namespace per test.

    def test_something(control_plane, namespace):
        control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=manifest)

`control_plane` is a tests.e2e.controlplane.ControlPlane: `.kubeconfig`, `.server`, `.token`, `.ca_file`,
`.bin(name)`, `.kubectl(*args, input=None, check=True)`, `.helm(...)`, `.api(method, path, body)`.
Missing binaries FAIL the tests (run `make control-plane`); they are never skipped.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest

from tests.e2e.controlplane import ControlPlane, ControlPlaneError, kondukt_crds, start, wait_for


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's cluster. Kondukt's CRDs (crds/*.yaml) are installed before kube-controller-manager
    starts, so that its garbage collector watches Workflows from the start (see ControlPlane.crds)."""
    try:
        cp = start(crds=kondukt_crds())
    except ControlPlaneError as e:
        pytest.fail(f"cannot start the e2e control plane: {e}", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


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

