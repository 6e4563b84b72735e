"""The web UI (``kondukt ui``) in a real headless Chromium, against the real control plane and operator.

Each test starts ``kondukt ui`` as a process with a kubeconfig (the admin's, or a limited user's) and
drives Debian's Chromium through Playwright's Python API (``executable_path``: Playwright's own browser
download is never used; ``.ci/install-browser`` installs the package). The browser resolves nothing but
127.0.0.1 and has its background networking, component updates and sync off: it talks to the test's
server only. Every wait is bounded (Playwright's locator waits and ``expect``, never ``wait_for_function``: its string
predicates are evaluated with ``eval``, which the UI's Content-Security-Policy forbids); screenshots go to ``$KONDUKT_TEST_ARTIFACTS`` (default
``out/test-artifacts``), under ``ui/``.

kwok's pods have no containers: asking for their logs, the API server tries the fake node's kubelet (a
loopback address where nothing listens) and answers with an error, which the page must show as it is.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from kondukt.archive.store import ArchiveStore
from tests.e2e.controlplane import ControlPlane, free_port, wait_for, write_kubeconfig
from tests.e2e.test_operator_support import (  # noqa: F401 (fixtures)
    ECHO,
    Cluster,
    cluster_fixture,
    operator_fixture,
    taskdef,
    workflow,
)
from tests.unit.cli.test_archived import archived

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("KONDUKT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("KONDUKT_TEST_ARTIFACTS", REPO / "out" / "test-artifacts")) / "ui"
#: Chromium's switches: talk to the test server only (see the module docstring).
BROWSER_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--no-first-run",
    "--metrics-recording-only",
]
WAIT_MS = 60_000


def expect(locator: Any) -> Any:
    """Playwright's assertions, imported when a test runs: collecting this module (``pytest -m "not e2e"``
    collects every file) needs no Playwright."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


class UiProcess:
    """``kondukt ui`` on a free loopback port, with the given kubeconfig, in its own process group."""

    def __init__(self, kubeconfig: Path, namespace: str, log: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        script = Path(sys.executable).with_name("kondukt")
        program = [str(script)] if script.exists() else [sys.executable, "-m", "kondukt.cli"]
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*program, "ui", "--kubeconfig", str(kubeconfig), "-n", namespace, "--port", str(self.port), *extra],
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        wait_for(lambda: "kondukt ui" in log.read_text() or self.proc.poll() is not None, "kondukt ui to listen", 60)
        assert self.proc.poll() is None, log.read_text()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `bash .ci/install-browser` (Debian's chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    tab = context.new_page()
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.set_default_timeout(WAIT_MS)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def ui(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[UiProcess]:
    process = UiProcess(control_plane.kubeconfig, namespace, tmp_path / "ui.log")
    try:
        yield process
    finally:
        process.stop()


def chain(*steps: str, name: str = "chain") -> dict[str, Any]:
    return {"name": name, "tasks": [{"name": step, "taskReferenceName": f"{step}_{i}", "inputParameters": {"i": i}}
                                    for i, step in enumerate(steps)]}


# ---------------------------------------------------------------------------------------------- the list
def test_the_list_filters_and_opens_a_workflow_from_the_keyboard(cluster: Cluster, ui: UiProcess, page: Any) -> None:
    cluster.apply(taskdef("echo"), taskdef("broken", annotations={"kwok.kondukt.io/fail": "true"}),
                  {"apiVersion": "kondukt.io/v1alpha1", "kind": "WorkflowDef", "metadata": {"name": "pipeline"},
                   "spec": chain("echo", "broken", name="pipeline")})
    for name in ("alpha-ok", "beta-ok"):
        cluster.apply(workflow(name, definition=chain("echo")))
    cluster.apply(workflow("gamma-bad", definition=chain("echo", "broken")))
    for name in ("alpha-ok", "beta-ok", "gamma-bad"):
        cluster.wait_phase(name)

    page.goto(ui.url)
    page.wait_for_selector('#workflows tr[data-name="gamma-bad"]')
    page.wait_for_selector('[data-phase="FAILED"]:has-text("FAILED 1")')
    names = page.locator("#workflows tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert sorted(names) == ["alpha-ok", "beta-ok", "gamma-bad"]
    assert page.locator('#workflows tr[data-name="gamma-bad"] .phase').inner_text() == "FAILED"
    assert page.locator('#workflows tr[data-name="beta-ok"] td').nth(2).inner_text() == "1/1"
    screenshot(page, "list")

    # The phase filter: only the failed one.
    page.click('[data-phase="FAILED"]')
    expect(page.locator("#workflows tbody tr")).to_have_count(1, timeout=WAIT_MS)
    assert page.locator("#workflows tbody tr").get_attribute("data-name") == "gamma-bad"
    page.click('[data-phase="FAILED"]')
    expect(page.locator("#workflows tbody tr")).to_have_count(3, timeout=WAIT_MS)

    # Keyboard: "/" focuses the text filter; Enter applies it; Esc leaves the field; j/k move; Enter opens.
    page.locator("body").press("/")
    assert page.evaluate("document.activeElement.id") == "filter-text"
    page.keyboard.type("-ok")
    page.keyboard.press("Enter")
    expect(page.locator("#workflows tbody tr")).to_have_count(2, timeout=WAIT_MS)
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    selected = page.locator("#workflows tr.selected").get_attribute("data-name")
    page.keyboard.press("k")
    first = page.locator("#workflows tr.selected").get_attribute("data-name")
    assert {selected, first} == {"alpha-ok", "beta-ok"} and selected != first
    page.keyboard.press("Enter")
    page.wait_for_selector(f'main[data-phase="COMPLETED"] h1:has-text("{first}")')
    assert page.url.endswith(f"#/wf/{cluster.namespace}/{first}")
    page.keyboard.press("Escape")  # back to the list
    page.wait_for_selector("#workflows")

    # "g d": the definitions; a WorkflowDef opens with its graph.
    page.keyboard.press("g")
    page.keyboard.press("d")
    page.wait_for_selector('#taskdefs td:text-is("broken")')
    assert page.locator("#taskdefs tbody td:first-child").all_inner_texts() == ["broken", "echo"]
    page.click('#workflowdefs a:text-is("pipeline")')
    page.wait_for_selector('#graph [data-ref="broken_1"]')
    assert page.locator("#graph .node").evaluate_all("n => n.map(x => x.dataset.id)") == [
        "wf_start", "t_echo_0", "t_broken_1", "wf_end"]
    screenshot(page, "definition")


def test_the_list_is_pushed_keeping_its_filter_without_reloads_or_polling(
    cluster: Cluster, ui: UiProcess, page: Any
) -> None:
    """A workflow created after the page loaded appears, and its phase changes show, from the server's
    pushes: no reload, no request for the list (the page's only API request is its one stream)."""
    cluster.apply(taskdef("echo"), taskdef("slow", annotations={**ECHO, "kwok.kondukt.io/duration": "6s"}))
    cluster.apply(workflow("early", definition=chain("echo")))
    cluster.wait_phase("early")
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    # A text filter: only names with "late" in them (the filter must hold for pushed changes too).
    page.goto(f"{ui.url}#/?ns={cluster.namespace}&q=late")
    expect(page.locator("#list-summary")).to_have_text(
        f"0\u20130 of 0 matching (1 in namespace {cluster.namespace}), newest first", timeout=WAIT_MS)
    page.evaluate("window.kondukt_not_reloaded = true")

    cluster.apply(workflow("late-one", definition=chain("slow")))
    page.wait_for_selector('#workflows tr[data-name="late-one"] .phase:text-is("RUNNING")')
    screenshot(page, "list-pushed-running")
    page.wait_for_selector('#workflows tr[data-name="late-one"] .phase:text-is("COMPLETED")')
    assert page.locator('#workflows tr[data-name="late-one"] td').nth(2).inner_text() == "1/1"
    cluster.apply(workflow("other", definition=chain("echo")))
    cluster.wait_phase("other")
    cluster.apply(workflow("late-two", definition=chain("echo")))
    cluster.wait_phase("late-two")
    expect(page.locator("#list-summary")).to_have_text(
        f"1\u20132 of 2 matching (4 in namespace {cluster.namespace}), newest first", timeout=WAIT_MS)
    expect(page.locator('#workflows tr[data-name="late-two"] .phase')).to_have_text("COMPLETED", timeout=WAIT_MS)
    assert page.locator("#workflows tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)") == [
        "late-two", "late-one"]  # newest first; "other" is filtered out
    assert page.locator('[data-phase="COMPLETED"]').inner_text() == "COMPLETED 2"
    assert page.locator("#filter-text").input_value() == "late"
    screenshot(page, "list-pushed")

    assert page.evaluate("window.kondukt_not_reloaded") is True
    api = [r.url.removeprefix(ui.url.rstrip("/")) for r in requests if "/api/" in r.url]
    assert [r.resource_type for r in requests].count("document") == 1
    assert len(api) == 1 and api[0].startswith("/api/workflows/stream?"), api


# ---------------------------------------------------------------------------------------------- one workflow, live
def test_a_workflow_completes_live_and_an_attempt_shows_its_details_and_logs(
    cluster: Cluster, ui: UiProcess, page: Any
) -> None:
    cluster.apply(taskdef("echo"), taskdef("slow", annotations={**ECHO, "kwok.kondukt.io/duration": "8s"}))
    definition = chain("echo", "slow")
    definition["tasks"].append({"name": "child", "taskReferenceName": "child", "type": "SUB_WORKFLOW",
                                "subWorkflowParam": {"name": "child", "workflowDefinition": chain("echo", name="child")}})
    cluster.apply(workflow("live", definition=definition, input={"who": "browser"}))
    cluster.wait_until(lambda: any(t["referenceTaskName"] == "slow_1" and t["status"] == "IN_PROGRESS"
                                   for t in cluster.tasks("live")), "the slow step to run")

    page.goto(f"{ui.url}#/wf/{cluster.namespace}/live")
    page.wait_for_selector('main[data-phase="RUNNING"]')
    node = page.locator('#graph [data-ref="slow_1"]')
    assert node.get_attribute("data-status") == "IN_PROGRESS"
    assert page.locator('#graph [data-ref="echo_0"]').get_attribute("data-status") == "COMPLETED"
    # kondukt graph's colours: IN_PROGRESS is drawn #d6e6ff / #1565c0.
    assert node.locator("rect").get_attribute("fill") == "#d6e6ff"
    screenshot(page, "workflow-running")

    # Pushed by the server as the operator records the end: no reload.
    page.wait_for_selector('main[data-phase="COMPLETED"]')
    page.wait_for_selector('#graph [data-ref="slow_1"][data-status="COMPLETED"]')
    assert page.locator('#graph [data-id="wf_end"] text').all_text_contents() == ["end", "COMPLETED"]

    # An attempt: open it from the graph with the keyboard, then its details and logs.
    page.locator('#graph [data-ref="slow_1"]').focus()
    page.keyboard.press("Enter")
    panel = page.locator("#panel")
    panel.wait_for()
    assert "Task slow_1" in panel.locator("h2").inner_text()
    panel.locator('[data-action="details"]').click()
    page.wait_for_selector("#panel pre.output")
    task = next(t for t in cluster.tasks("live") if t["referenceTaskName"] == "slow_1")
    assert '"i": 1' in panel.locator("pre.input").inner_text()
    assert '"i": 1' in panel.locator("pre.output").inner_text()  # the echo worker's output
    assert task["taskId"] in panel.inner_text()
    # The log: the API server's own answer about this kwok pod (no kubelet behind it), word for word.
    page.wait_for_selector("#panel .pod pre")
    pods = cluster.list("pods", "v1", selector=f"kondukt.io/task-id={task['taskId']}")
    assert len(pods) == 1
    pod = pods[0]["metadata"]["name"]
    status, body = cluster.cp.api("GET", f"/api/v1/namespaces/{cluster.namespace}/pods/{pod}/log")
    assert status >= 400
    shown = panel.locator(".pod pre").inner_text()
    assert f"pod {pod}" in panel.locator(".pod").inner_text()
    assert shown.startswith("the API server refused the log: ")
    assert isinstance(body, dict) and body["message"].split('": ', 1)[-1] in shown, (body, shown)
    screenshot(page, "workflow-attempt")
    page.keyboard.press("Escape")
    assert page.locator("#panel").is_hidden()

    # The sub-workflow is one click away: its own page, live too.
    page.click('#graph a.child-link[data-child="child"]')
    page.wait_for_selector('main[data-phase="COMPLETED"] #graph [data-ref="echo_0"][data-status="COMPLETED"]')
    child = next(t for t in cluster.tasks("live") if t["referenceTaskName"] == "child")
    children = [w for w in cluster.list("workflows") if w["metadata"]["uid"] == child["subWorkflowId"]]
    assert len(children) == 1 and page.url.endswith(f"#/wf/{cluster.namespace}/{children[0]['metadata']['name']}")


# ---------------------------------------------------------------------------------------------- operations
def test_retry_of_a_failed_workflow_from_its_page(cluster: Cluster, ui: UiProcess, page: Any) -> None:
    cluster.apply(taskdef("echo"), taskdef("fragile", annotations={"kwok.kondukt.io/fail": "true"}))
    cluster.apply(workflow("retried", definition=chain("echo", "fragile")))
    cluster.wait_phase("retried")

    page.goto(f"{ui.url}#/wf/{cluster.namespace}/retried")
    page.wait_for_selector('main[data-phase="FAILED"]')
    assert page.locator('#graph [data-ref="fragile_1"]').get_attribute("data-status") == "FAILED"
    assert page.locator(".ops [data-op]").evaluate_all("b => b.map(x => x.dataset.op)") == ["retry", "restart"]
    cluster.apply(taskdef("fragile"))  # the cause is fixed: attempts of this TaskDef now succeed
    page.click('.ops [data-op="retry"]')
    page.wait_for_selector("#banner.ok")
    assert page.locator("#banner").inner_text().startswith(
        f"workflow.kondukt.io/retried ({cluster.namespace}): retry requested (annotation ops.kondukt.io/retry, nonce ")
    page.wait_for_selector('main[data-phase="COMPLETED"]')
    page.wait_for_selector('#graph [data-ref="fragile_1"][data-status="COMPLETED"]')
    # Retries are visible: both attempts of the task, the failed one and the new one.
    page.locator('#graph [data-ref="fragile_1"]').click()
    expect(page.locator("#panel .attempt")).to_have_count(2, timeout=WAIT_MS)
    statuses = page.locator("#panel .attempt .phase").all_inner_texts()
    assert statuses == ["COMPLETED", "FAILED"]  # newest first
    nonce = page.locator("#banner").inner_text().split("nonce ")[1].split(")")[0].split(",")[0]
    assert nonce in cluster.status("retried")["appliedOperations"]
    screenshot(page, "workflow-retried")


def test_an_operation_refused_by_rbac_is_shown_with_what_was_refused(
    control_plane: ControlPlane, namespace: str, page: Any, tmp_path: Path
) -> None:
    """A user who may read workflows but not change them: the page says what the API server refused."""
    definition = {"name": "wait", "tasks": [{"name": "approve", "taskReferenceName": "approve", "type": "HUMAN"}]}
    cluster = Cluster(control_plane, namespace)
    cluster.apply(workflow("guarded", definition=definition))
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "viewer"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "read-workflows"},
         "rules": [{"apiGroups": ["kondukt.io"], "resources": ["workflows"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "viewer"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-workflows"},
         "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}]},
    ]
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    token = control_plane.kubectl("-n", namespace, "create", "token", "viewer", "--duration=10m").stdout.strip()
    limited = tmp_path / "viewer.kubeconfig"
    write_kubeconfig(limited, control_plane.server, control_plane.ca_file, token, user="viewer")
    user = f"system:serviceaccount:{namespace}:viewer"
    wait_for(lambda: control_plane.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows",
                                       token=token)[0] == 200, "the viewer's Role to apply", 30)
    viewer_ui = UiProcess(limited, namespace, tmp_path / "ui.log")
    try:
        page.goto(f"{viewer_ui.url}#/wf/{namespace}/guarded")
        page.wait_for_selector("#graph [data-ref='approve']")
        page.on("dialog", lambda dialog: dialog.accept())  # "Terminate workflow guarded?"
        page.click('.ops [data-op="terminate"]')
        page.wait_for_selector("#banner.error")
        message = page.locator("#banner").inner_text()
        assert message.startswith(
            f'terminate refused: forbidden: workflows.kondukt.io "guarded" is forbidden: User "{user}" '
            'cannot patch resource "workflows" in API group "kondukt.io"'), message
        screenshot(page, "operation-refused")
        # A task operation too: completing the HUMAN task is a patch the viewer may not make either.
        page.locator("#graph [data-ref='approve']").click()
        page.fill("#op-output", '{"approved": true}')
        page.click('#panel [data-op="complete"]')
        page.wait_for_selector('#banner.error:has-text("complete refused: forbidden")')
        # A bad request is refused by the CLI's own checks before it reaches the cluster.
        page.fill("#op-output", "[1, 2]")
        page.click('#panel [data-op="complete"]')
        page.wait_for_selector('#banner.error:has-text("--output [1, 2]: expected a JSON object, got list")')
    finally:
        viewer_ui.stop()
    spec = cluster.workflow("guarded")["spec"]
    assert "terminate" not in spec
    assert not any(k.startswith("ops.kondukt.io/")
                   for k in (cluster.workflow("guarded")["metadata"].get("annotations") or {}))


def test_read_only_mode_sends_an_operation_only_with_the_users_own_token(
    control_plane: ControlPlane, namespace: str, page: Any, tmp_path: Path
) -> None:
    """The chart's in-cluster mode: the UI reads with a ServiceAccount that may only read (the chart's rules);
    an operation goes out with the bearer token the user pastes, and is refused without one."""
    cluster = Cluster(control_plane, namespace)
    cluster.apply(workflow("shared", definition=chain("echo")))
    docs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "ui-reader"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "alice"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "ui-read"},
         "rules": [{"apiGroups": ["kondukt.io"], "resources": ["taskdefs", "workflowdefs", "workflows"],
                    "verbs": ["get", "list", "watch"]},
                   {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
                   {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "operate"},
         "rules": [{"apiGroups": ["kondukt.io"], "resources": ["workflows"], "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "ui-reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ui-read"},
         "subjects": [{"kind": "ServiceAccount", "name": "ui-reader", "namespace": namespace}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "alice"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "operate"},
         "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": namespace}]},
    ]
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    tokens = {sa: control_plane.kubectl("-n", namespace, "create", "token", sa, "--duration=10m").stdout.strip()
              for sa in ("ui-reader", "alice")}
    reader = tmp_path / "reader.kubeconfig"
    write_kubeconfig(reader, control_plane.server, control_plane.ca_file, tokens["ui-reader"], user="ui-reader")
    wait_for(lambda: control_plane.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows",
                                       token=tokens["ui-reader"])[0] == 200, "the reader's Role to apply", 30)
    wait_for(lambda: control_plane.api("GET", f"/apis/kondukt.io/v1alpha1/namespaces/{namespace}/workflows/shared",
                                       token=tokens["alice"])[0] == 200, "alice's Role to apply", 30)
    read_only = UiProcess(reader, namespace, tmp_path / "ui.log", "--read-only")
    answers = ["", tokens["alice"]]  # the page asks for a token: first none is given, then alice's
    page.on("dialog", lambda dialog: dialog.accept(answers.pop(0)) if dialog.type == "prompt" else dialog.accept())
    try:
        page.goto(f"{read_only.url}#/wf/{namespace}/shared")
        page.wait_for_selector("#graph [data-ref='echo_0']")
        assert page.locator("#mode").inner_text() == "read-only: operations need your token"
        page.click('.ops [data-op="suspend"]')
        page.wait_for_selector("#banner.error")
        assert page.locator("#banner").inner_text().startswith("suspend refused: this UI is read-only: an operation "
                                                                "needs your own bearer token")
        assert "suspend" not in cluster.workflow("shared")["spec"]
        page.click('.ops [data-op="suspend"]')
        page.wait_for_selector("#banner.ok")
        assert page.locator("#banner").inner_text() == (
            f"workflow.kondukt.io/shared ({namespace}): suspend requested (spec.suspend=true)")
        screenshot(page, "read-only-operation")
    finally:
        read_only.stop()
    assert cluster.workflow("shared")["spec"]["suspend"] is True
    assert answers == []


# ---------------------------------------------------------------------------------------------- the archive
def test_the_archive_page_lists_finished_runs_and_opens_one(
    control_plane: ControlPlane, namespace: str, archive_dsn: str, page: Any, tmp_path: Path
) -> None:
    """Workflows archived in PostgreSQL (the operator's archive, read back as `kondukt get --archived` does)."""
    async def fill() -> None:
        store = ArchiveStore(archive_dsn)
        await store.archive(archived("uid-a", "nightly", "COMPLETED", 0, labels={"team": "a"}))
        await store.archive(archived("uid-b", "nightly", "FAILED", 10, labels={"team": "b"}))
        await store.archive(archived("uid-c", "adhoc", "COMPLETED", 20, namespace="team-b"))
        await store.close()

    with ThreadPoolExecutor(1) as pool:  # sync Playwright keeps an event loop running in this thread
        pool.submit(asyncio.run, fill()).result(timeout=60)
    process = UiProcess(control_plane.kubeconfig, namespace, tmp_path / "ui.log",
                        env={"KONDUKT_ARCHIVE_DSN": archive_dsn})
    try:
        page.goto(f"{process.url}#/")
        page.locator("#nav-archive").click()
        page.wait_for_selector("#archived")
        expect(page.locator("#archived tbody tr")).to_have_count(0, timeout=WAIT_MS)  # none in this namespace
        page.check("#archive-all")
        expect(page.locator("#archived tbody tr")).to_have_count(3, timeout=WAIT_MS)
        assert page.locator("#archived tbody tr").evaluate_all("r => r.map(x => x.dataset.uid)") == [
            "uid-c", "uid-b", "uid-a"]
        page.click('#archive-label')
        page.keyboard.type("team=b")
        page.keyboard.press("Enter")
        expect(page.locator("#archived tbody tr")).to_have_count(1, timeout=WAIT_MS)
        page.keyboard.press("Escape")
        page.keyboard.press("Enter")  # the selected (first) row
        page.wait_for_selector('main[data-phase="FAILED"] #graph [data-ref="second"][data-status="FAILED"]')
        assert page.locator("#live").inner_text() == "archived"
        assert page.locator(".ops [data-op]").count() == 0  # nothing to operate on
        page.locator('#graph [data-ref="second"]').click()
        page.locator('#panel [data-action="details"]').click()
        page.wait_for_selector('#panel .logs:has-text("logs are not archived")')
        assert "boom" in page.locator("#panel").inner_text()
        assert page.locator("#panel .form").count() == 0 and "null" not in page.locator("#panel").inner_text()
        screenshot(page, "archived-workflow")
    finally:
        process.stop()
