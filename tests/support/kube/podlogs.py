"""Pod logs: what each run of each container wrote (stdout and stderr, interleaved as written), line by line with
the time the kubelet read it, and the `/log` subresource's reading of it.

A container that restarted has several runs; `previous=true` reads the one before the current. A pod's logs go
with the pod. Query parameters honoured: container, follow, tailLines, previous, timestamps, sinceSeconds,
sinceTime, limitBytes; errors as the real server words them (400 for a container that has not started, that is
not named when the pod has several, or a previous run that does not exist).
"""
import threading
import time
from typing import Dict, Iterator, List, Tuple

from . import clock
from .errors import bad_request
from .kinds import PODS

PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")


class Run:
    """One run of a container: its lines (bytes with their newline) with the time each was read, and whether it
    ended (nothing more will come)."""

    def __init__(self, changed: threading.Condition):
        self.changed = changed
        self.lines: List[Tuple[float, bytes]] = []
        self.partial = b""
        self.done = False

    def write(self, data: bytes) -> None:
        with self.changed:
            data = self.partial + data
            *complete, self.partial = data.split(b"\n")
            now = time.time()
            self.lines.extend((now, line + b"\n") for line in complete)
            self.changed.notify_all()

    def close(self) -> None:
        with self.changed:
            if self.partial:
                self.lines.append((time.time(), self.partial + b"\n"))
                self.partial = b""
            self.done = True
            self.changed.notify_all()


class PodLogs:
    def __init__(self, store):
        self.store = store
        self.changed = threading.Condition()
        self.runs: Dict[Tuple[str, str], List[Run]] = {}   # (pod uid, container) -> its runs, oldest first

    def start(self, uid: str, container: str) -> Run:
        with self.changed:
            run = Run(self.changed)
            self.runs.setdefault((uid, container), []).append(run)
            return run

    def forget(self, uid: str) -> None:
        with self.changed:
            for key in [key for key in self.runs if key[0] == uid]:
                for run in self.runs.pop(key):
                    run.done = True
            self.changed.notify_all()

    def text(self, uid: str, container: str) -> str:
        """Everything the container's current run wrote so far (for tests)."""
        with self.changed:
            runs = self.runs.get((uid, container)) or []
            return b"".join(line for _, line in runs[-1].lines).decode(errors="replace") if runs else ""

    # -- the /log subresource --------------------------------------------------------------------------------
    def read(self, namespace: str, name: str, args) -> Iterator[bytes]:
        """The chunks of GET .../pods/<name>/log with query `args`. Raises ApiError before the first chunk."""
        pod = self.store.get(PODS, namespace, name)
        container = self._container(pod, args.get("container"))
        with self.changed:
            runs = list(self.runs.get((pod["metadata"]["uid"], container)) or [])
        previous = args.get("previous", "").lower() in ("true", "1")
        if previous:
            if len(runs) < 2:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            run = runs[-2]
        elif runs:
            run = runs[-1]
        else:
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              f"{self._waiting(pod, container)}")
        since = None
        try:
            if args.get("sinceSeconds"):
                since = time.time() - int(args["sinceSeconds"])
            elif args.get("sinceTime"):
                since = clock.parse_rfc3339(args["sinceTime"])
            tail = int(args["tailLines"]) if args.get("tailLines") else None
            limit = int(args["limitBytes"]) if args.get("limitBytes") else None
        except ValueError as error:
            raise bad_request(f"invalid log options: {error}")
        follow = args.get("follow", "").lower() in ("true", "1") and not previous
        stamps = args.get("timestamps", "").lower() in ("true", "1")
        return self._chunks(run, follow, since, tail, limit, stamps)

    def _chunks(self, run: Run, follow: bool, since, tail, limit, stamps) -> Iterator[bytes]:
        with self.changed:
            lines = [line for line in run.lines if since is None or line[0] >= since]
            start = len(run.lines) - (len(lines) if tail is None else min(tail, len(lines)))
        sent = 0
        while True:
            with self.changed:
                while follow and start >= len(run.lines) and not run.done and not self.store.closed:
                    self.changed.wait(0.25)
                batch, start = run.lines[start:], len(run.lines)
                finished = run.done or not follow or self.store.closed
            for at, line in batch:
                chunk = (clock.rfc3339_nano(at).encode() + b" " + line) if stamps else line
                if limit is not None and sent + len(chunk) >= limit:
                    yield chunk[:limit - sent]
                    return
                sent += len(chunk)
                yield chunk
            if finished and start >= len(run.lines):
                return

    @staticmethod
    def _container(pod: dict, name) -> str:
        pod_name = pod["metadata"]["name"]
        main = [c["name"] for c in pod["spec"]["containers"]]
        init = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if not name:
            if len(main) == 1:
                return main[0]
            extra = f" or one of the init containers: [{' '.join(init)}]" if init else ""
            raise bad_request(f"a container name must be specified for pod {pod_name}, choose one of: "
                              f"[{' '.join(main)}]{extra}")
        if name not in main + init:
            raise bad_request(f"container {name} is not valid for pod {pod_name}")
        return name

    @staticmethod
    def _waiting(pod: dict, container: str) -> str:
        status = pod.get("status") or {}
        for entry in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            if entry["name"] == container:
                reason = ((entry.get("state") or {}).get("waiting") or {}).get("reason") or "ContainerCreating"
                return "trying and failing to pull image" if reason in PULL_FAILURES else reason
        return "ContainerCreating"
