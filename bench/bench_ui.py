"""The web UI (``kondukt ui``) in headless Chromium: a 2,000-branch workflow's page, and a list of 2,000 workflows.

Starts its own control plane (``tests.e2e.controlplane``; no operator: the Workflows' statuses are written
directly, as the operator would write them) and ``kondukt ui`` as a subprocess, and drives Debian's Chromium
through Playwright, with the same switches as the browser tests (it talks to 127.0.0.1 only).

The fork: a Workflow whose dynamic fork spawned ``BRANCHES`` branches (a mix of COMPLETED, FAILED and
IN_PROGRESS attempts; its status is about 0.7 MB). Figures, each the median of ``RUNS`` page loads in fresh
browser contexts:

- ``fork_page_render_ms``: from the start of the navigation to the first complete render of the workflow
  page (header, graph laid out by dagre and drawn, the first 100 rows of the attempts table), as the page
  records it (``performance.now()`` when the first pushed view has been drawn; ``main[data-rendered]``);
- ``fork_view_api_ms`` and ``fork_view_bytes``: the server's JSON view of that workflow (read from the API
  server, graph built, attempts summarized), timed from this process;
- ``fork_graph_nodes``: nodes drawn (the branches collapse beyond ``--max-branches``, 20);
- ``fork_update_render_ms``: one branch's status changes on the API server -> the page shows it (watch,
  push, redraw), timed from the status write to the page noticing the new resourceVersion.

The list: ``LIST_SIZE`` Workflows; ``list_page_render_ms`` from navigation to the first page of 100 rows on
screen (the server filters and pages), ``list_filter_ms`` for a text filter applied to all of them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.controlplane import ControlPlane, bin_dir, check_binaries, free_port, kondukt_crds  # noqa: E402

BRANCHES = 2000
LIST_SIZE = 2000
RUNS = 5
NAMESPACE = "bench-ui"
CHROMIUM = Path(os.environ.get("KONDUKT_CHROMIUM", "/usr/bin/chromium"))
BROWSER_ARGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def fork_workflow(branches: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Workflow (spec) and the status the operator would have written after spawning the branches."""
    definition = {"name": "fan-out", "tasks": [
        {"name": "plan", "taskReferenceName": "plan", "type": "INLINE",
         "inputParameters": {"evaluatorType": "javascript", "expression": "1"}},
        {"name": "fan", "taskReferenceName": "fan", "type": "FORK_JOIN_DYNAMIC",
         "dynamicForkTasksParam": "tasks", "dynamicForkTasksInputParamName": "inputs"},
        {"name": "join", "taskReferenceName": "join", "type": "JOIN"}]}
    started = 1_796_000_000_000
    tasks: list[dict[str, Any]] = [
        {"taskId": "plan-1", "taskType": "INLINE", "referenceTaskName": "plan", "taskDefName": "plan",
         "status": "COMPLETED", "seq": 1, "startTime": started, "endTime": started + 5},
        {"taskId": "fan-2", "taskType": "FORK_JOIN_DYNAMIC", "referenceTaskName": "fan", "taskDefName": "fan",
         "status": "COMPLETED", "seq": 2, "startTime": started + 5, "endTime": started + 6}]
    for i in range(branches):
        status = "FAILED" if i % 97 == 0 else "IN_PROGRESS" if i % 5 == 0 else "COMPLETED"
        tasks.append({
            "taskId": f"branch-{i}", "taskType": "echo", "referenceTaskName": f"branch_{i}", "taskDefName": "echo",
            "status": status, "seq": 3 + i, "parentTaskRef": "fan", "inputData": {"index": i},
            "outputData": {"index": i} if status == "COMPLETED" else {},
            "startTime": started + 10 + i, "endTime": started + 2000 + i if status != "IN_PROGRESS" else 0,
            "reasonForIncompletion": "the worker exited with code 1" if status == "FAILED" else None})
    tasks.append({"taskId": "join-x", "taskType": "JOIN", "referenceTaskName": "join", "taskDefName": "join",
                  "status": "IN_PROGRESS", "seq": 3 + branches})
    spec = {"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "fork-2000"},
            "spec": {"definition": definition}}
    status = {"phase": "RUNNING", "progress": f"{sum(t['status'] == 'COMPLETED' for t in tasks)}/{len(tasks)}",
              "definition": definition, "tasks": tasks, "startTime": started}
    return spec, status


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def run(quick: bool = False) -> dict[str, object]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} not found: run `bash .ci/install-browser`")
    from playwright.sync_api import expect, sync_playwright

    branches, list_size, runs = (200, 200, 2) if quick else (BRANCHES, LIST_SIZE, RUNS)
    results: dict[str, object] = {"branches": branches, "list_size": list_size, "runs": runs}
    binaries = bin_dir()
    check_binaries(binaries)
    with tempfile.TemporaryDirectory(prefix="kondukt-bench-ui-") as scratch:
        workdir = Path(scratch)
        (workdir / "owner.pid").write_text(str(os.getpid()))
        cp = ControlPlane(workdir=workdir, binaries=binaries, nodes=1, crds=kondukt_crds()).start(timeout=180)
        ui: subprocess.Popen[bytes] | None = None
        try:
            cp.kubectl("create", "namespace", NAMESPACE)
            spec, status = fork_workflow(branches)
            cp.kubectl("-n", NAMESPACE, "apply", "-f", "-", input=json.dumps(spec))
            path = f"/apis/kondukt.io/v1alpha1/namespaces/{NAMESPACE}/workflows/fork-2000/status"
            code, body = cp.api("PATCH", path, {"status": status}, content_type="application/merge-patch+json",
                                timeout=60)
            if code != 200:
                raise RuntimeError(f"writing the fork's status failed: HTTP {code}: {str(body)[:300]}")
            results["fork_status_bytes"] = len(json.dumps(body, separators=(",", ":")))
            items = [{"apiVersion": "kondukt.io/v1alpha1", "kind": "Workflow", "metadata": {"name": f"run-{i:05}"},
                      "spec": {"definition": {"name": "one", "tasks": [{"name": "echo", "taskReferenceName": "a"}]},
                               "correlationId": f"order-{i}"}} for i in range(list_size)]
            cp.kubectl("-n", NAMESPACE, "create", "-f", "-", timeout=600,
                       input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

            port = free_port()
            log = (workdir / "ui.log").open("wb")
            script = Path(sys.executable).with_name("kondukt")
            ui = subprocess.Popen([str(script), "ui", "--kubeconfig", str(cp.kubeconfig), "-n", NAMESPACE,
                                   "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            base = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 60
            while "kondukt ui" not in (workdir / "ui.log").read_text():
                if time.monotonic() > deadline or ui.poll() is not None:
                    raise RuntimeError("kondukt ui did not start: " + (workdir / "ui.log").read_text())
                time.sleep(0.1)

            view_times = []
            for _ in range(runs):
                began = time.perf_counter()
                with urllib.request.urlopen(f"{base}api/namespaces/{NAMESPACE}/workflows/fork-2000", timeout=60) as r:
                    payload = r.read()
                view_times.append((time.perf_counter() - began) * 1000)
            view = json.loads(payload)
            results["fork_view_api_ms"] = median_ms(view_times)
            results["fork_view_bytes"] = len(payload)
            results["fork_graph_nodes"] = len(view["graph"]["nodes"])

            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
                try:
                    renders, list_renders, filters = [], [], []
                    for _ in range(runs):
                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        page = context.new_page()
                        page.goto(f"{base}#/wf/{NAMESPACE}/fork-2000")
                        page.wait_for_selector("main[data-rendered]", timeout=120_000)
                        renders.append(float(page.get_attribute("main", "data-rendered") or "nan"))
                        rows = page.locator("#attempts tbody tr").count()
                        context.close()

                        context = browser.new_context(viewport={"width": 1400, "height": 900})
                        page = context.new_page()
                        page.goto(f"{base}#/?ns={NAMESPACE}")
                        expect(page.locator("#workflows tbody tr")).to_have_count(100, timeout=120_000)
                        list_renders.append(page.evaluate("performance.now()"))
                        began = time.perf_counter()
                        page.fill("#filter-text", "order-1999")
                        page.keyboard.press("Enter")
                        expect(page.locator("#workflows tbody tr")).to_have_count(1, timeout=120_000)
                        filters.append((time.perf_counter() - began) * 1000)
                        context.close()
                    results["fork_page_render_ms"] = median_ms(renders)
                    results["fork_page_render_ms_all"] = [round(v) for v in renders]
                    results["fork_attempt_rows_drawn"] = rows
                    results["list_page_render_ms"] = median_ms(list_renders)
                    results["list_filter_ms"] = median_ms(filters)

                    # A pushed change: one branch fails; time until the page has drawn the new version.
                    context = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = context.new_page()
                    page.goto(f"{base}#/wf/{NAMESPACE}/fork-2000")
                    page.wait_for_selector("main[data-rendered]", timeout=120_000)
                    before = page.get_attribute("main", "data-resource-version")
                    tasks = status["tasks"]
                    tasks[3]["status"] = "FAILED"
                    began = time.perf_counter()
                    cp.api("PATCH", path, {"status": {"tasks": tasks}}, content_type="application/merge-patch+json",
                           timeout=60)
                    expect(page.locator("main")).not_to_have_attribute("data-resource-version", before or "",
                                                                       timeout=120_000)
                    results["fork_update_render_ms"] = round((time.perf_counter() - began) * 1000, 1)
                    context.close()
                finally:
                    browser.close()
        finally:
            if ui is not None:
                ui.terminate()
                ui.wait(timeout=30)
            cp.stop()
    return results
