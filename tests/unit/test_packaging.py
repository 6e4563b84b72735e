"""The two distributions: ``kondukt-workers`` (workers/pyproject.toml, the worker SDK) stands alone, and
``kondukt`` (the operator and ``kondukt run``) depends on it.

Writing a worker must not pull in the operator's dependencies: the SDK is run here by an interpreter that
sees the standard library and ``workers/`` only (``python -S``: no site-packages at all), as a worker image
built from ``pip install kondukt-workers`` would, and the installed distributions' metadata is checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
OPERATOR_DEPENDENCIES = {"kondukt", "kopf", "kubernetes", "kubernetes-asyncio", "aiohttp", "moto"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(name: str) -> metadata.Distribution:
    """The distribution as pip installed it into this environment (a stale ``*.egg-info`` of an older
    layout in the working tree is on ``sys.path`` too; the site-packages copy is the truth)."""
    found = list(metadata.distributions(name=name, path=[sysconfig.get_paths()["purelib"]]))
    return found[0] if found else metadata.distribution(name)


def closure(name: str, extras: set[str]) -> set[str]:
    """A distribution with ``extras`` and everything it requires here (markers evaluated, names normalised)."""
    todo: list[tuple[str, set[str]]] = [(norm(name), extras)]
    seen: set[str] = set()
    while todo:
        current, wanted = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for text in installed(current).requires or []:
            requirement = Requirement(text)
            if requirement.marker and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in wanted | {""}
            ):
                continue
            todo.append((norm(requirement.name), set(requirement.extras)))
    return seen


def test_the_worker_sdk_requires_nothing_and_no_extra_brings_the_operator() -> None:
    requirements = installed("kondukt-workers").requires or []
    assert not [r for r in requirements if "extra ==" not in r], f"the SDK must need only Python: {requirements}"
    for extra in ("s3", "builtin"):
        pulled = closure("kondukt-workers", {extra}) & OPERATOR_DEPENDENCIES
        assert not pulled, f"kondukt-workers[{extra}] pulls in the operator's {pulled}"
    assert {"boto3", "pillow"} <= closure("kondukt-workers", {"builtin"})


def test_kondukt_depends_on_the_complete_workers_distribution() -> None:
    assert "kondukt-workers" in closure("kondukt", set())
    assert {"pillow", "boto3", "moto"} <= closure("kondukt", set())


def test_each_console_script_belongs_to_its_distribution() -> None:
    def scripts(distribution: str) -> dict[str, str]:
        return {e.name: e.value for e in installed(distribution).entry_points if e.group == "console_scripts"}

    assert scripts("kondukt-workers") == {"kondukt-worker": "kondukt_workers.cli:main"}
    assert scripts("kondukt") == {"kondukt": "kondukt.cli:main"}


# --------------------------------------------------------------------------------------------------
# The SDK with the standard library only
# --------------------------------------------------------------------------------------------------

WORKER_MODULE = '''
from kondukt_workers import read_uri, worker_task


@worker_task(task_definition_name="greet")
def greet(task_input: dict) -> dict:
    return {"greeting": "Hello " + task_input["name"]}


@worker_task(task_definition_name="read")
def read(task_input: dict) -> dict:
    return {"size": len(read_uri(task_input["uri"]))}
'''


def run_worker(tmp_path: Path, *arguments: str, task_input: dict[str, Any]) -> dict[str, Any]:
    """``kondukt-worker ARGUMENTS`` under the worker protocol, by an interpreter without site-packages."""
    (tmp_path / "sdk_only_workers.py").write_text(WORKER_MODULE)
    result_file = tmp_path / "result.json"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": os.pathsep.join([str(REPO / "workers"), str(tmp_path)]),
        "KONDUKT_INPUT": json.dumps(task_input),
        "KONDUKT_OUTPUT_FILE": str(result_file),
        "KONDUKT_WORKFLOW_ID": "wf-sdk",
        "KONDUKT_TASK_ID": "t-sdk",
        "KONDUKT_TASK_REF": "sdk_ref",
        "KONDUKT_OUTPUT_PREFIX": (tmp_path / "outputs").as_uri() + "/",
    }
    done = subprocess.run(
        [sys.executable, "-S", "-m", "kondukt_workers.cli", "--import", "sdk_only_workers", *arguments],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def test_the_standard_library_alone_runs_a_worker(tmp_path: Path) -> None:
    checked = subprocess.run(
        [sys.executable, "-S", "-c", "import PIL"], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode != 0, "python -S still sees site-packages: this test would prove nothing"
    result = run_worker(tmp_path, "greet", task_input={"name": "Ada"})
    assert result["status"] == "COMPLETED"
    assert result["outputData"] == {"greeting": "Hello Ada"}


def test_a_file_uri_is_read_without_boto3(tmp_path: Path) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(b"12345")
    result = run_worker(tmp_path, "read", task_input={"uri": source.as_uri()})
    assert result["status"] == "COMPLETED" and result["outputData"] == {"size": 5}


def test_an_s3_uri_without_boto3_fails_terminally_naming_the_extra(tmp_path: Path) -> None:
    result = run_worker(tmp_path, "read", task_input={"uri": "s3://bucket/key.json"})
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    assert "kondukt-workers[s3]" in result["reasonForIncompletion"]


@pytest.mark.parametrize(("worker", "missing"), [("image_convert_resize", "Pillow"), ("upload_toS3", "boto3")])
def test_a_builtin_worker_without_its_extra_fails_terminally_naming_it(
    tmp_path: Path, worker: str, missing: str
) -> None:
    task_input = {"fileLocation": (tmp_path / "x.jpg").as_uri(), "bucket": "b"}
    result = run_worker(tmp_path, worker, task_input=task_input)
    assert result["status"] == "FAILED_WITH_TERMINAL_ERROR"
    reason = result["reasonForIncompletion"]
    assert missing in reason and "kondukt-workers[" in reason, reason
