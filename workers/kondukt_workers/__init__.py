"""Kondukt's worker SDK and built-in workers.

A Kondukt task attempt is a process (a Kubernetes Job's container, or a local process under
``kondukt run``) that follows the worker protocol (docs/worker-protocol.md): it reads its input from the
environment and writes a Conductor-style TaskResult to a file. This package hides the protocol behind a decorator,
as Conductor's Python SDK does::

    from kondukt_workers import TerminalError, worker_task

    @worker_task(task_definition_name="greet")
    def greet(task_input: dict) -> dict:
        if "name" not in task_input:
            raise TerminalError("input name is required")   # FAILED_WITH_TERMINAL_ERROR: not retried
        return {"greeting": f"Hello {task_input['name']}"}   # COMPLETED with this outputData

and runs it with ``kondukt-worker --import mymodule greet`` (a TaskDef's ``template.command``). A worker
returns a dict (its ``outputData``), a :class:`TaskResult`, or None; raising :class:`TerminalError` (or an
exception whose ``terminal`` attribute is true) fails the task without retries; any other exception
fails it with ``FAILED`` (retried by the TaskDef's policy) and a one-line reason, the traceback going to
the log. It never imports the operator (``kondukt``), kopf or kubernetes.

Public API: :func:`worker_task`, :class:`TaskResult`, :class:`TerminalError`, :func:`current_task` /
:class:`TaskContext`, :func:`output_uri`, :func:`read_uri`, :func:`write_uri`, :class:`StorageError`,
:func:`heartbeat`, :func:`log_event`, :func:`resolve_result_payload`, :func:`encode_task_input`,
:func:`execute` (run a worker in-process), :func:`run_attempt` (the whole protocol, for one process).

Environment variables
=====================
Set by the driver for every attempt (the worker protocol):

``KONDUKT_INPUT``
    The task's ``inputData`` as a JSON object, or ``{"externalInputPayloadStoragePath": "s3://..."}``
    pointing to it when it is too large for a variable.
``KONDUKT_OUTPUT_FILE``
    Where the TaskResult JSON is written (default ``/dev/termination-log``; ``-`` = stdout).
``KONDUKT_WORKFLOW_ID``, ``KONDUKT_TASK_ID``, ``KONDUKT_TASK_REF``, ``KONDUKT_TASK_NAME``, ``KONDUKT_RETRY_COUNT``, ``KONDUKT_ITERATION``
    The attempt's identity; outputs and payloads are named from them (never randomly).

Results and payloads:

``KONDUKT_MAX_RESULT_BYTES`` (default 4096, the termination-message limit)
    A larger result has its ``outputData`` stored externally; the file then holds
    ``{"externalOutputPayloadStoragePath": "s3://...", "status": ...}``.
``KONDUKT_PAYLOAD_BUCKET``, ``KONDUKT_PAYLOAD_PREFIX`` (default ``payloads/``)
    External payload storage (S3). Without a bucket, a result too large fails the task with a reason
    saying so (never truncated).
``KONDUKT_OUTPUT_PREFIX``
    URI prefix where workers write their files (``s3://bucket/outputs/``, ``file:///tmp/kondukt/``);
    an input ``outputLocation`` overrides it. Objects are named
    ``<prefix><workflow id>/<task ref>/iter<N>-retry<M>/<file>``.
``KONDUKT_HEARTBEAT_FILE``
    When set, :func:`heartbeat` rewrites this file with the current time; otherwise it does nothing.
``KONDUKT_WORKER_MODULES``
    Comma-separated modules ``kondukt-worker`` imports before looking up the worker name.

Object storage and downloads:

``KONDUKT_S3_ENDPOINT`` (else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``)
    An S3-compatible endpoint (MinIO, Ceph, the local mode's embedded server); path-style addressing.
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``)
    Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` ..., ``AWS_PROFILE``, IAM roles);
    retries from ``AWS_MAX_ATTEMPTS`` / ``AWS_RETRY_MODE``.
``KONDUKT_MAX_READ_BYTES`` (default 104857600 = 100 MiB)
    The largest file :func:`read_uri` fetches (inputs, payloads, images).
``KONDUKT_HTTP_TIMEOUT_SECONDS`` (default 30)
    Timeout of each connect and each read of http(s) reads and writes.
``KONDUKT_FETCH_TIMEOUT_SECONDS`` (default 300)
    The longest one whole :func:`read_uri` of http(s) or s3 may take (a slow server cannot hold a
    worker for ever): at most this, plus one read timeout.

Egress (set by the operator on every task pod from its ``--egress-*`` flags; see
:mod:`kondukt_workers.egress` and SECURITY.md):

``KONDUKT_EGRESS`` (``cluster`` or ``local``; unset: ``cluster`` inside a Kubernetes pod, else ``local``)
    ``cluster`` refuses ``file://`` URIs and http(s) to link-local, loopback, unspecified, multicast,
    reserved, private (or the given service/pod ranges) and API server addresses; ``local`` keeps
    ``file://`` and refuses link-local, unspecified, multicast and reserved addresses only.
``KONDUKT_EGRESS_ALLOW``, ``KONDUKT_EGRESS_DENY``
    Comma-separated hosts (exact, ``*.suffix``) and CIDRs allowed despite the rules / refused too.
``KONDUKT_SERVICE_CIDRS``, ``KONDUKT_POD_CIDRS``, ``KONDUKT_API_SERVER_ADDRESSES``
    The cluster's ranges and the API server's addresses (``cluster`` only).

Built-in workers:

``KONDUKT_MAX_IMAGE_PIXELS`` (default 50000000)
    ``image_convert_resize`` rejects larger images (decompression bombs) and larger outputs.
``KONDUKT_S3_BUCKET``, ``KONDUKT_S3_PREFIX``
    ``upload_toS3``'s target when the input gives no ``bucket`` / ``prefix``.
"""

from kondukt_workers.context import TaskContext, current_task, output_uri
from kondukt_workers.heartbeat import heartbeat
from kondukt_workers.logs import log_event
from kondukt_workers.payloads import encode_task_input, resolve_result_payload
from kondukt_workers.registry import worker_task
from kondukt_workers.results import TaskResult, TerminalError
from kondukt_workers.runner import execute, run_attempt
from kondukt_workers.storage import StorageError, read_uri, write_uri

__all__ = [
    "StorageError",
    "TaskContext",
    "TaskResult",
    "TerminalError",
    "current_task",
    "encode_task_input",
    "execute",
    "heartbeat",
    "log_event",
    "output_uri",
    "read_uri",
    "resolve_result_payload",
    "run_attempt",
    "worker_task",
    "write_uri",
]
