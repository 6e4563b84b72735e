"""Lightweight informers for the operator's busiest kinds: the Jobs and pods of task attempts.

A workflow with thousands of branches produces tens of thousands of Job and pod events. Kopf handles
every event of a watched kind through its full per-object machinery (causes, handler kwargs, filters,
per-object workers) — a few milliseconds each, which made Kopf's bookkeeping the operator's largest
cost. These two kinds need none of it: their events only update an in-memory index and wake the owning
workflow. So they are watched here, client-go style:

- list, then watch from the list's resourceVersion, with a server-side label selector (only Kondukt's
  attempts reach the operator) and bookmarks; a watch that ends or breaks (refused or cut connection,
  429, 5xx) is resumed from the last resourceVersion seen, as client-go's reflector does — relisting
  thousands of pods after every network blip would cost the API server and the operator dearly; on
  "410 Gone" (that version is compacted away), another error or repeated failures, list again: changes
  missed meanwhile are found by comparing the new list with the index;
- the index (:class:`IndexStore`) has the shape of Kopf's indexes (key -> records, one or more keys per
  object), so :class:`~kondukt.kube.cache.ClusterView` reads both alike;
- :attr:`Informer.synced` is set once the first list is in the index: the work queue starts reconciling
  only then, so "not listed yet" is never mistaken for "gone".

Kopf keeps everything else: Workflows, TaskDefs, WorkflowDefs, credentials. This module never
decides anything; it observes and calls back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import aiohttp

from kondukt.kube.kubeapi import ApiError, KubeClient, TransientApiError

logger = logging.getLogger(__name__)

R = TypeVar("R")
Key = Hashable

WATCH_SECONDS = 300
_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
#: Consecutive failed watches resumed from their resourceVersion before listing again.
_RESUMES_BEFORE_RELIST = 5


class IndexStore(Generic[R]):
    """key -> the records of every object indexed under it (an object may sit under several keys)."""

    def __init__(self) -> None:
        self._items: dict[Key, dict[str, R]] = {}
        self._reverse: dict[str, dict[Key, R]] = {}

    def replace(self, uid: str, records: Mapping[Key, R]) -> dict[Key, R]:
        """Index object ``uid`` under ``records`` (replacing what it had); returns what it had."""
        old = self._reverse.pop(uid, {})
        for key in old.keys() - records.keys():
            bucket = self._items.get(key)
            if bucket is not None:
                bucket.pop(uid, None)
                if not bucket:
                    del self._items[key]
        for key, record in records.items():
            self._items.setdefault(key, {})[uid] = record
        if records:
            self._reverse[uid] = dict(records)
        return old

    def discard(self, uid: str) -> dict[Key, R]:
        return self.replace(uid, {})

    def uids(self) -> set[str]:
        return set(self._reverse)

    def records_of(self, uid: str) -> dict[Key, R]:
        return dict(self._reverse.get(uid, {}))

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __getitem__(self, key: Key) -> Iterable[R]:
        return list(self._items[key].values())

    def __len__(self) -> int:
        return len(self._reverse)


#: (event type, the object's records now, its records before) — called for every change.
OnChange = Callable[[str, Mapping[Key, Any], Mapping[Key, Any]], None]
#: Called with ``"expired"`` (410 Gone) or ``"error"`` each time the watch starts over.
OnRestart = Callable[[str], None]


class Informer:
    """List+watch one collection path (all namespaces or one) into an :class:`IndexStore`."""

    def __init__(
        self,
        api: KubeClient,
        path: str,
        *,
        label_selector: str,
        index: Callable[[Mapping[str, Any]], Mapping[Any, Any]],
        store: IndexStore[Any],
        on_change: OnChange,
        what: str,
        on_restart: OnRestart | None = None,
    ) -> None:
        self.api, self.path, self.label_selector = api, path, label_selector
        self.index, self.store, self.on_change, self.what = index, store, on_change, what
        self.on_restart = on_restart
        self.synced = asyncio.Event()
        self._mine: set[str] = set()  # uids listed by this informer (several may share a store)
        self._task: asyncio.Task[None] | None = None
        #: The resourceVersion to watch from; None: list first.
        self._version: str | None = None
        self._failures = 0  # consecutive failed lists or watches

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"informer {self.what}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # -------------------------------------------------------------------------------- list + watch
    async def _run(self) -> None:
        while True:
            try:
                if self._version is None:
                    self._version = await self._list()
                    self._failures = 0
                self._version = await self._watch(self._version)  # None after a 410: list again
            except asyncio.CancelledError:
                raise
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as err:
                expired = isinstance(err, ApiError) and err.status == 410
                self._restarted("expired" if expired else "error")
                # client-go's reflector: a refused or broken connection, throttling or a server error leaves
                # the watch's resourceVersion good — resume from it (the server replays what was missed, or
                # answers 410); anything else, and a run of failures, starts over with a list.
                resume = (self._version is not None and isinstance(err, TransientApiError) and not expired
                          and self._failures < _RESUMES_BEFORE_RELIST)
                if not resume:
                    self._version = None
                delay = _RETRY_DELAYS[min(self._failures, len(_RETRY_DELAYS) - 1)]
                if isinstance(err, ApiError) and err.retry_after is not None:
                    delay = max(delay, err.retry_after)
                self._failures += 1
                logger.warning("watching %s failed (%s); %s in %.1fs", self.what, err,
                               f"watching again from {self._version}" if resume else "listing again", delay)
                await asyncio.sleep(delay)

    async def _list(self) -> str:
        listed = await self.api.request("GET", self.path, what=self.what,
                                        params={"labelSelector": self.label_selector})
        seen: set[str] = set()
        for body in listed.get("items") or []:
            uid = str((body.get("metadata") or {}).get("uid"))
            seen.add(uid)
            self._apply("MODIFIED" if uid in self._mine else "ADDED", uid, body, quiet_if_same=True)
        for uid in self._mine - seen:  # deleted while we were not watching
            old = self.store.discard(uid)
            if old:
                self.on_change("DELETED", {}, old)
        self._mine = seen
        self.synced.set()
        return str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def _apply(self, event_type: str, uid: str, body: Mapping[str, Any], quiet_if_same: bool = False) -> None:
        if event_type == "DELETED":
            old = self.store.discard(uid)
            self._mine.discard(uid)
            self.on_change("DELETED", {}, old or self.index(body))
            return
        records = self.index(body)
        old = self.store.replace(uid, records)
        self._mine.add(uid)
        if quiet_if_same and old == records:
            return
        self.on_change(event_type, records, old)

    async def _watch(self, version: str) -> str | None:
        """Watch from ``version`` until the server ends the stream; the last version seen, None on 410."""
        params = {"labelSelector": self.label_selector, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_SECONDS)}
        if version:
            params["resourceVersion"] = version
        events = self.api.watch(self.path, what=self.what, params=params, read_timeout=WATCH_SECONDS + 30)
        async with contextlib.aclosing(events):  # leaving early closes the stream at once
            async for event in events:
                seen = self._event(event)
                if seen is None:  # 410 Gone: the version is too old, list again
                    logger.info("the watch of %s expired (410 Gone: resourceVersion %s is too old); listing again",
                                self.what, version)
                    self._restarted("expired")
                    return None
                version = seen or version
                self._version = version  # where to resume should the stream break
                self._failures = 0  # the connection works
        return version

    def _restarted(self, reason: str) -> None:
        if self.on_restart is not None:
            self.on_restart(reason)

    def _event(self, event: Mapping[str, Any]) -> str | None:
        """Apply one watch event; the object's resourceVersion, None for "410 Gone"."""
        kind = event.get("type")
        body = event.get("object") or {}
        if kind == "ERROR":
            code = body.get("code")
            if code == 410:
                return None
            raise ApiError(int(code or 0), str(body.get("reason") or ""), str(body.get("message") or ""), self.what)
        meta = body.get("metadata") or {}
        if kind != "BOOKMARK":
            self._apply(str(kind), str(meta.get("uid")), body)
        return str(meta.get("resourceVersion") or "")
