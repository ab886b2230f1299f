"""The controller manager: one thread that runs reconcilers (level-triggered, as kube-controller-manager's are)
for the keys that the store's changes map to. A reconciler takes a key, looks at the current state in the store,
writes what follows from it, and may ask to be run again after a delay (a Job's deadline, a TTL, a back-off).

Keys are tuples whose first item names the reconciler: ("job", namespace, name), ("pod", namespace, name), ...
A key queued several times before it runs runs once. A reconciler that raises is logged and retried.
"""
import heapq
import itertools
import logging
import threading
import time
from typing import Callable, Dict, Iterable, List, Optional

from .store import Change, Store

log = logging.getLogger("kubefake")
Reconciler = Callable[[tuple], Optional[float]]   # key -> seconds until it wants to run again, or None
Router = Callable[[Change], Iterable[tuple]]       # a change -> the keys it concerns


class Manager:
    def __init__(self, store: Store):
        self.store = store
        self.reconcilers: Dict[str, Reconciler] = {}
        self.routers: List[Router] = []
        self.ready: Dict[tuple, None] = {}          # queued keys, in order
        self.delayed: list = []                      # heap of (when, sequence, key)
        self.sequence = itertools.count()
        self.wake = threading.Condition()
        self.stopped = False
        self.errors: List[str] = []                  # what reconcilers raised (a test can assert it stays empty)
        self.thread = threading.Thread(target=self._run, name="kubefake-controllers", daemon=True)
        store.listeners.append(self._on_change)

    def register(self, name: str, reconciler: Reconciler, router: Optional[Router] = None) -> None:
        self.reconcilers[name] = reconciler
        if router:
            self.routers.append(router)

    def add(self, key: tuple, after: float = 0.0) -> None:
        with self.wake:
            if after > 0:
                heapq.heappush(self.delayed, (time.monotonic() + after, next(self.sequence), key))
            else:
                self.ready[key] = None
            self.wake.notify()

    def _on_change(self, change: Change) -> None:  # called under the store's lock: only queue
        for router in self.routers:
            for key in router(change):
                self.add(key)

    def start(self) -> "Manager":
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.wake:
            self.stopped = True
            self.wake.notify()
        self.thread.join(timeout=10)

    def _next(self) -> Optional[tuple]:
        with self.wake:
            while not self.stopped:
                now = time.monotonic()
                while self.delayed and self.delayed[0][0] <= now:
                    self.ready[heapq.heappop(self.delayed)[2]] = None
                if self.ready:
                    key = next(iter(self.ready))
                    del self.ready[key]
                    return key
                self.wake.wait(min(0.5, self.delayed[0][0] - now) if self.delayed else 0.5)
            return None

    def _run(self) -> None:
        while True:
            key = self._next()
            if key is None:
                return
            try:
                after = self.reconcilers[key[0]](key)
            except Exception as error:  # a fake's bug must not stop every controller: log it, retry
                log.exception("kubefake: reconciling %s failed", key)
                self.errors.append(f"{key}: {error!r}")
                after = 0.5
            if after is not None:
                self.add(key, after)
