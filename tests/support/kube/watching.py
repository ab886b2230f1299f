"""Watches: the changes of one resource (in one namespace, or all) after a resourceVersion, as a stream of
`{"type", "object"}` events, the way the real API server sends them.

- `resourceVersion` unset or "0": first an ADDED event for every object that exists, then the changes after.
- `resourceVersion` N: the changes after N; N older than the history → one ERROR event whose object is a 410
  Status (reason Expired, "too old resource version: N (M)"), then the end of the stream (the client relists).
- label/field selectors filter, and a MODIFIED object that starts (stops) matching is sent as ADDED (DELETED).
- `allowWatchBookmarks`: a BOOKMARK event (the kind, and metadata.resourceVersion only) every
  `bookmark_interval` seconds and before the stream ends on `timeoutSeconds`.
- the stream ends on `timeoutSeconds`, on `Store.disconnect_watches()` (a server-side disconnect the client must
  resume from its last resourceVersion) and when the server stops.
"""
import time
from typing import Callable, Iterator, Optional

from .errors import ApiError, bad_request
from .kinds import Resource
from .store import Change, Store

POLL = 0.25  # how often a waiting watch looks at the stop conditions (seconds)


def _event(change: Change, namespace: Optional[str], match: Callable[[dict], bool]) -> Optional[dict]:
    obj_namespace = change.obj["metadata"].get("namespace")
    if namespace is not None and obj_namespace != namespace:
        return None
    now = match(change.obj)
    before = change.old is not None and match(change.old)
    if change.type == "MODIFIED" and now != before:
        kind = "ADDED" if now else "DELETED"
    else:
        kind = change.type if now else None
    return {"type": kind, "object": change.obj} if kind else None


def watch(store: Store, resource: Resource, namespace: Optional[str], match: Callable[[dict], bool],
          resource_version: Optional[str], timeout: Optional[float], bookmarks: bool,
          bookmark_interval: float) -> Iterator[dict]:
    """The events of a watch (see the module docstring). Raises ApiError 400 for a malformed resourceVersion
    before the first event; a too old one is the stream's ERROR event."""
    with store.lock:
        epoch = store.watch_epoch
        if resource_version in (None, "", "0"):
            items, last = store.list(resource, namespace, match)
            first = [{"type": "ADDED", "object": obj} for obj in items]
        else:
            try:
                last = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version: {resource_version!r}")
            first = []
    return _stream(store, resource, namespace, match, epoch, last, first, timeout, bookmarks, bookmark_interval)


def _stream(store, resource, namespace, match, epoch, last, first, timeout, bookmarks, bookmark_interval):
    yield from first
    started = time.monotonic()
    deadline = started + timeout if timeout else None
    next_bookmark = started + bookmark_interval
    while True:
        events, error, ending = [], None, False
        with store.lock:
            while True:
                if store.closed or store.watch_epoch != epoch:
                    return
                try:
                    changes = [c for c in store.changes_since(last) if c.resource.key == resource.key]
                except ApiError as gone:
                    error = gone
                    break
                now = time.monotonic()
                if changes or (deadline and now >= deadline) or (bookmarks and now >= next_bookmark):
                    break
                store.lock.wait(min(POLL, (deadline or now + POLL) - now))
            if not error:
                last = max([last] + [c.rv for c in changes]) if changes else last
                events = [e for e in (_event(c, namespace, match) for c in changes) if e]
                ending = bool(deadline and time.monotonic() >= deadline)
                if not changes and not ending:
                    last = max(last, store.rv)  # nothing of ours changed until now: a bookmark may say so
        if error:
            yield {"type": "ERROR", "object": error.status()}
            return
        yield from events
        if bookmarks and (ending or time.monotonic() >= next_bookmark):
            next_bookmark = time.monotonic() + bookmark_interval
            yield {"type": "BOOKMARK", "object": {"kind": resource.kind, "apiVersion": resource.api_version,
                                                  "metadata": {"resourceVersion": str(last)}}}
        if ending:
            return
