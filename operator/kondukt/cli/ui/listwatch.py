"""The workflows list, live: one watch of the Workflow list per scope, shared by every page that shows it.

A scope is what the API server filters: a namespace (or all of them) and a label selector. The first page that
opens a scope's stream starts its :class:`ListWatch`: it lists the Workflows once, then watches from the list's
resourceVersion; each watch is bounded by the API server's ``timeoutSeconds`` and resumed from the last
resourceVersion it saw (bookmarks included); only an expired one (410 Gone) is listed again. Every other page of
the same scope shares that watch; it stops :data:`LINGER_SECONDS` after the last one left. At most
:data:`MAX_SCOPES` scopes are watched at once.

Nothing is queued per page. The watch keeps the current rows (one small dict per Workflow, the list's columns,
never the objects) and a change counter; each page's stream wakes when the counter moves, cuts its own page
from the rows (its phase and text filters, newest first, its offset: :func:`kondukt.cli.ui.views.row_page`) and
pushes it only if it differs from what that page has, at most once per push interval. A slow browser therefore
skips intermediate states instead of growing a buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kondukt.cli import cluster
from kondukt.cli.ui import views
from kondukt.cli.workflows import meta_of
from kondukt.kube.kubeapi import ApiError, KubeClient

logger = logging.getLogger(__name__)

#: Scopes (namespace, label selector) watched at once by one server; one more is refused while all have pages.
MAX_SCOPES = 16
#: How long a scope's watch outlives its last page (see ListWatches).
LINGER_SECONDS = 30.0


@dataclass(frozen=True)
class Scope:
    namespace: str | None  # None: all namespaces
    selector: str = ""

    def describe(self) -> str:
        where = "all namespaces" if self.namespace is None else f"namespace {self.namespace}"
        return f"{where}, selector {self.selector!r}" if self.selector else where


@dataclass(frozen=True)
class Problem:
    """Why the scope cannot be read right now: the API server's status and the CLI's words for it."""

    status: int
    message: str


class ListWatch:
    """The rows of one scope, kept current by a watch; pages wait on :meth:`changed` and read :attr:`rows`."""

    def __init__(self, client: KubeClient, scope: Scope, watch_seconds: int, retry_seconds: float) -> None:
        self.client = client
        self.scope = scope
        self.watch_seconds = watch_seconds
        self.retry_seconds = retry_seconds
        #: (namespace, name) -> the row of views.workflow_row
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.problem: Problem | None = None
        #: Bumped on every change of rows or problem.
        self.version = 0
        #: Lists made (the first, and one after each expired watch): for tests and logs.
        self.lists = 0
        self.synced = asyncio.Event()
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kondukt ui: watch workflows ({self.scope.describe()})")

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def changed(self) -> asyncio.Event:
        """The event set at the next change (take it before reading the rows, then wait on it)."""
        return self._changed

    def _bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    def _fail(self, exc: ApiError) -> None:
        message = cluster.api_error(exc, "workflows", self.scope.namespace, self.client.server).message
        self._set_problem(Problem(exc.status if 400 <= exc.status < 600 else 502, message))

    def _set_problem(self, problem: Problem) -> None:
        if problem != self.problem:
            self.problem = problem
            self._bump()
        self.synced.set()

    async def _run(self) -> None:
        path = cluster.collection_path(self.scope.namespace, cluster.WORKFLOWS)
        selector = {"labelSelector": self.scope.selector} if self.scope.selector else {}
        version = ""
        while True:
            try:
                if not version:
                    listed = await self.client.request("GET", path, what="workflows", params=selector or None)
                    self.lists += 1
                    self.rows = {_key(obj): views.workflow_row(obj) for obj in listed.get("items") or []}
                    version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                    self.problem = None
                    self._bump()
                    self.synced.set()
                version = await self._watch(path, selector, version)
            except ApiError as exc:
                self._fail(exc)
                await asyncio.sleep(self.retry_seconds)
                # A broken connection resumes where it was; a refusal is read afresh (said again if it lasts).
                version = version if exc.status == 0 else ""
            except Exception as exc:  # a bug: said on the pages, logged, and the list read afresh
                logger.exception("kondukt ui: the watch of workflows (%s) failed", self.scope.describe())
                self._set_problem(Problem(500, f"kondukt ui: internal error: {type(exc).__name__}: {exc}"))
                await asyncio.sleep(self.retry_seconds)
                version = ""

    async def _watch(self, path: str, selector: dict[str, str], version: str) -> str:
        """One bounded watch from ``version``: the resourceVersion to resume from ("" to list again)."""
        params = {**selector, "resourceVersion": version, "timeoutSeconds": str(self.watch_seconds),
                  "allowWatchBookmarks": "true"}
        events = self.client.watch(path, what="workflows", params=params,
                                   read_timeout=self.watch_seconds + self.client.timeout_seconds)
        try:
            async for event in events:
                kind = event.get("type")
                found = event.get("object")
                obj = found if isinstance(found, dict) else {}
                if kind == "ERROR":  # 410 Gone: the resourceVersion expired
                    return ""
                version = str(meta_of(obj).get("resourceVersion") or version)
                if kind == "DELETED":
                    if self.rows.pop(_key(obj), None) is not None:
                        self._bump()
                elif kind in ("ADDED", "MODIFIED"):
                    row = views.workflow_row(obj)
                    if self.rows.get(_key(obj)) != row:
                        self.rows[_key(obj)] = row
                        self._bump()
                if self.problem is not None:
                    self.problem = None
                    self._bump()
        finally:
            await events.aclose()
        return version


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = meta_of(obj)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class ListWatches:
    """The server's list watches, one per scope: started by the first page, kept :data:`LINGER_SECONDS` after
    the last one leaves (a page changing its filter or offset opens a new stream on the same scope and finds the
    rows current, instead of listing thousands of Workflows again), then stopped."""

    def __init__(self, client: KubeClient, watch_seconds: int, retry_seconds: float,
                 too_many: Callable[[str], Exception]) -> None:
        self.client = client
        self.watch_seconds = watch_seconds
        self.retry_seconds = retry_seconds
        self._too_many = too_many
        self.watches: dict[Scope, ListWatch] = {}
        self._expiries: dict[Scope, asyncio.TimerHandle] = {}

    def acquire(self, scope: Scope) -> ListWatch:
        watch = self.watches.get(scope)
        if watch is None:
            if len(self.watches) >= MAX_SCOPES:
                idle = [w for w in self.watches.values() if w.subscribers <= 0]
                if not idle:
                    raise self._too_many(
                        f"this server already watches {MAX_SCOPES} different workflow lists (namespaces and "
                        "label selectors); close some of those pages, or reload this one later")
                self._drop(idle[0])
            watch = ListWatch(self.client, scope, self.watch_seconds, self.retry_seconds)
            self.watches[scope] = watch
            watch.start()
        expiry = self._expiries.pop(scope, None)
        if expiry is not None:
            expiry.cancel()
        watch.subscribers += 1
        return watch

    def release(self, watch: ListWatch) -> None:
        watch.subscribers -= 1
        if watch.subscribers <= 0 and self.watches.get(watch.scope) is watch:
            self._expiries[watch.scope] = asyncio.get_running_loop().call_later(
                LINGER_SECONDS, self._expire, watch)

    def _expire(self, watch: ListWatch) -> None:
        if watch.subscribers <= 0 and self.watches.get(watch.scope) is watch:
            self._drop(watch)

    def _drop(self, watch: ListWatch) -> None:
        self.watches.pop(watch.scope, None)
        expiry = self._expiries.pop(watch.scope, None)
        if expiry is not None:
            expiry.cancel()
        watch.cancel()

    async def close(self) -> None:
        for expiry in self._expiries.values():
            expiry.cancel()
        self._expiries.clear()
        for watch in list(self.watches.values()):
            await watch.stop()
        self.watches.clear()
