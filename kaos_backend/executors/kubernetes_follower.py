"""The follower of one workload of the kubernetes executor: a thread of the process that polls it (the scheduler),
holding the workload's lock (kubernetes_state.py), that reads the shared watch's cache, copies the pod's log into
the platform's log as it comes (kubernetes_log_copy.py), and once the workload ended writes how ("kaos: the
training ended: ..."), the exit record, revokes the workload's artifact token and wakes the scheduler.

It ends a workload that cannot start (unschedulable, or its image cannot be pulled, for longer than the pending
timeout) by deleting its Job or Deployment; an endpoint also when its serve container ended once (the endpoint
controller restarts it, as on every executor), its fetch failed, or its Service was deleted (a thread beside the
follower watches for that while the follower follows the log: the endpoint controller starts it again, Service
included). A follower that dies (a crash of its process)
is started again by the next `poll`, and resumes the log copy where it got to.
"""
import json
import logging
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from typing import List, Optional

from kaos_backend import wakeup
from kaos_backend.executors import kubernetes_status as status
from kaos_backend.executors import outcome
from kaos_backend.executors.base import VANISHED
from kaos_backend.executors.docker_output import LogWriter
from kaos_backend.executors.kubernetes_client import is_status, message_of
from kaos_backend.executors.kubernetes_log_copy import PodLogCopy
from kaos_backend.executors.kubernetes_state import START_LABEL, WHAT, delete_owner, delete_pod, read_record, requested
from kaos_backend.file_locks import try_lock

log = logging.getLogger("kaos_backend.executors.kubernetes")
LOOK_SECONDS = 1.0        # a follower looks again this often unwoken (a pending timeout, a deleted Job's pods)
RETRY_SECONDS = 2.0       # after an API error
RENEW_SECONDS = 3600      # a workload's artifact token is renewed this often (it is good for 24 hours)
_running: "weakref.WeakSet[Follower]" = weakref.WeakSet()   # this process's followers that follow


def interrupt_all() -> None:
    """End the log follow each follower of this process is blocked in (it looks again at once, and resumes the
    copy where it got to): after the API server was away, a follow's connection may be dead without a word."""
    for follower in list(_running):
        follower.interrupt_copy()


class Follower(PodLogCopy):
    """Follows one workload to its end (module docstring). `cluster`: kubernetes_cluster.Cluster; `log_file`:
    the platform's log; `notify`: the scheduler's wake-up socket; `pending_timeout`: seconds a waiting problem
    may last."""

    def __init__(self, cluster, state: dict, log_file: Path, max_log_bytes: Optional[int], notify: Optional[str],
                 pending_timeout: float):
        self.cluster = cluster
        self.state = state
        self.log_file = log_file
        self.max_log_bytes = max_log_bytes
        self.notify = notify
        self.pending_timeout = pending_timeout
        self.what = WHAT.get(state["kind"], "workload")
        self.main = state["main"]
        self.restarts = state["kind"] != "train"   # a Deployment's pod: its containers would be started again
        self.progress = self._load()
        self.writer: Optional[LogWriter] = None
        self.renewed_at = time.monotonic() - RENEW_SECONDS  # the first look renews (after a backend restart)
        self.service_seen = False  # the Service (an endpoint's, a notebook's) was in the watch's cache once

    @classmethod
    def spawn(cls, *args, **kwargs) -> bool:
        """Start a follower thread unless one holds the workload's lock already (False then)."""
        follower = cls(*args, **kwargs)
        fd = try_lock(follower.state["lock_path"])
        if fd is None:
            return False
        threading.Thread(target=follower.run, args=(fd,), name=f"kaos-kube-follow-{follower.state['workload']}",
                         daemon=True).start()
        return True

    # -- the progress file ----------------------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            progress = json.loads(Path(self.state["follow_path"]).read_text())
        except (OSError, ValueError):
            progress = {}
        for key, default in (("pod", None), ("cursors", {}), ("done", []), ("last", {}), ("started", False),
                             ("notes", [])):
            progress.setdefault(key, default)
        return progress

    def _save(self) -> None:
        path = Path(self.state["follow_path"])
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(self.progress))
        os.replace(temporary, path)

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self, lock_fd: int) -> None:
        _running.add(self)
        try:
            self.writer = LogWriter(str(self.log_file), self.max_log_bytes)
            informer = self.cluster.informer()
            if self.state.get("service"):
                threading.Thread(target=self._watch_service, args=(informer,), daemon=True,
                                 name=f"kaos-kube-service-{self.state['workload']}").start()
            while read_record(self.state) is None:
                self._renew_token()
                try:
                    record = self._look(informer)
                except Exception as error:  # noqa: BLE001 - the API server unreachable, a broken stream
                    log.warning("Following %s: %s: %s", self.state["workload"], type(error).__name__,
                                message_of(error))
                    time.sleep(RETRY_SECONDS)
                    continue
                if record is not None:
                    self._finish(record)
                    return
                informer.wait_for_change(LOOK_SECONDS)
        except Exception:  # noqa: BLE001 - a bug: the next poll starts another follower
            log.exception("The follower of %s failed", self.state["workload"])
        finally:
            _running.discard(self)
            os.close(lock_fd)

    def _look(self, informer) -> Optional[dict]:
        """One look: copy what the pod logged, then the exit record if the workload ended."""
        stop = requested(self.state)
        pods = self._pods(informer)
        if stop is not None:
            self._delete_pods(pods, stop.get("grace"))
        pod = pods[-1] if pods else None
        if pod is not None:
            self._copy(pod, pods)
            pods = self._pods(informer)
            pod = pods[-1] if pods else None
        return self._ended(informer, pods, pod, requested(self.state))  # read again: copying may have taken long

    def _renew_token(self) -> None:
        """A workload may run for days: its token is renewed when it is first followed (a backend restart may
        have taken long) and every RENEW_SECONDS while it runs (between looks, and while its log is followed:
        a chatty container's follow lasts as long as it runs), so that a training hands its output back however
        long it trained, and a pod made again by an endpoint's Deployment fetches its inputs again."""
        if time.monotonic() - self.renewed_at < RENEW_SECONDS:
            return
        self.renewed_at = time.monotonic()
        try:
            self.cluster.tokens.renew(self.state["workload"])
        except Exception as error:  # noqa: BLE001 - the next look tries again
            log.warning("Could not renew the artifact token of %s: %s", self.state["workload"], error)

    def _pods(self, informer) -> List[dict]:
        start = self.state.get("start")
        return [pod for pod in informer.pods_of(self.state["workload"])
                if (pod["metadata"].get("labels") or {}).get(START_LABEL) == start]

    # -- the end --------------------------------------------------------------------------------------------
    def _ended(self, informer, pods: List[dict], pod: Optional[dict], stop: Optional[dict]) -> Optional[dict]:
        owner = self._owner(informer)
        memory = self.state.get("memory")
        if stop is not None:
            if pods:
                return None  # still stopping
            return outcome.record_for(128 + signal.SIGTERM, memory=memory, requested=True)
        if self.state["kind"] == "train":
            failure = status.job_failure(owner)
            if failure and failure.startswith("deadline exceeded"):
                if pods:
                    return None  # the Job controller deletes its pods: their log first
                record = outcome.record_for(status.FAILED_WITHOUT_CODE, memory=memory)
                record["error"] = failure
                return record
        if pod is not None:
            record = status.ended(pod, self.main, self.restarts, memory, self.progress["last"])
            if record is not None:
                if not self._copied(pod):
                    return None
                refused = self.progress.get("upload_failed")
                if refused and record["code"] != 0 and not record.get("error"):
                    record["error"] = f"its output was not handed back ({refused}): {outcome.describe(record)}"
                return record
            problem = status.waiting_problem(pod)
            if problem:
                return self._waiting(problem, memory)
            if self.progress.pop("waiting", None) is not None:  # it waits no more (scheduled, its image pulled)
                self._save()
        if owner is not None and self._service_gone(informer):
            record = outcome.record_for(status.FAILED_WITHOUT_CODE, memory=memory)
            record["error"] = f"its Service {self.state['service']} was deleted (by someone else than kaos)"
            return record
        if owner is None and self._owner_gone():
            if pods:
                return None  # its pods are being deleted: wait for their end
            record = outcome.record_for(VANISHED, memory=memory)
            record["error"] = (f"vanished: its {self.state['object']} {self.state['name']} was deleted (by "
                               "someone else than kaos, or removed after it finished while the backend was down)")
            return record
        return None

    def _copied(self, pod: Optional[dict]) -> bool:
        done = self.progress["done"]
        if pod is None or self.progress["pod"] != pod["metadata"]["uid"]:
            return True
        fetch_failed = (status.terminated(pod, status.FETCH, True) or {}).get("exitCode") not in (None, 0)
        return self.main in done or (fetch_failed and status.FETCH in done) or not status.started(pod, status.FETCH)

    def _waiting(self, problem: str, memory: Optional[str]) -> Optional[dict]:
        since = self.progress.setdefault("waiting_since", time.time())
        if self.progress.get("waiting") != f"its pod {problem}":  # what `standing` says (kubernetes.py)
            self.progress["waiting"] = f"its pod {problem}"
            self._save()
        self._note(f"kaos: the {self.what} waits: its pod {problem}")
        if time.time() - since < self.pending_timeout:
            return None
        record = outcome.record_for(status.FAILED_WITHOUT_CODE, memory=memory)
        record["error"] = f"its pod {problem}"
        return record

    def _owner(self, informer) -> Optional[dict]:
        reflector = informer.jobs if self.state["object"] == "Job" else informer.deployments
        owner = reflector.get(self.state["name"])
        if owner is not None and owner["metadata"].get("uid") != self.state.get("uid"):
            return None  # another start's
        if owner is not None:
            self.progress["owner_seen"] = True
        return owner

    def _owner_gone(self) -> bool:
        """Confirmed with the API server itself (the watch may lag behind a create): one GET, only once the cache
        misses the Job or Deployment."""
        if self.progress.get("owner_gone"):
            return True
        try:
            if self.state["object"] == "Job":
                found = self.cluster.batch.read_namespaced_job(self.state["name"], self.cluster.namespace)
            else:
                found = self.cluster.apps.read_namespaced_deployment(self.state["name"], self.cluster.namespace)
        except Exception as error:  # noqa: BLE001
            if not is_status(error, 404):
                raise
            found = None
        if found is None or found.metadata.uid != self.state.get("uid"):
            self.progress["owner_gone"] = True
            self._save()
            return True
        return False

    def _service(self, informer) -> Optional[dict]:
        """The workload's Service (an endpoint's, a notebook's) in the watch's cache, if it is this start's."""
        found = informer.services.get(self.state["service"])
        owners = ((found or {}).get("metadata") or {}).get("ownerReferences") or []
        if found is not None and all(owner.get("uid") == self.state.get("uid") for owner in owners):
            self.service_seen = True
            return found
        return None

    def _watch_service(self, informer) -> None:
        """While the workload runs (the follower may be following its log for hours): once its Service, seen
        before, leaves the cache (deleted by someone else), interrupt the follower so that it looks at once."""
        while read_record(self.state) is None:
            informer.wait_for_change(LOOK_SECONDS)
            if self._service(informer) is None and self.service_seen and requested(self.state) is None:
                self.interrupt_copy()
                return

    def _service_gone(self, informer) -> bool:
        """The workload's Service was deleted: missing from the cache once seen there, or (never seen: the watch
        may lag behind a create, or it went while the backend was down) confirmed with one GET."""
        if not self.state.get("service") or self._service(informer) is not None:
            return False
        if self.service_seen:
            return True
        try:
            self.cluster.core.read_namespaced_service(self.state["service"], self.cluster.namespace)
        except Exception as error:  # noqa: BLE001
            if not is_status(error, 404):
                raise
            return True
        self.service_seen = True  # there: the cache lags behind, the next look sees it
        return False

    def _finish(self, record: dict) -> None:
        if self.restarts or record.get("error") or requested(self.state) is not None:
            self._delete_owner()
        note = self.writer.dropped_note()
        if note:
            self.writer.record(note)
        if record["code"] != VANISHED:  # a vanished workload's end is the platform's to log (control/)
            self.writer.record(f"kaos: the {self.what} ended: {status.describe(record)}")
        outcome.write_record(self.state["exit_path"], record)
        try:
            self.cluster.tokens.revoke(self.state["workload"])
        except Exception as error:  # noqa: BLE001 - it expires by itself
            log.warning("Could not revoke the artifact token of %s: %s", self.state["workload"], error)
        wakeup.wake(self.notify)

    # -- deleting -------------------------------------------------------------------------------------------
    def _delete_owner(self) -> None:
        delete_owner(self.cluster, self.state)

    def _delete_pods(self, pods: List[dict], grace: Optional[int]) -> None:
        """A stopped workload's pods (those the Job or Deployment made after its stop was asked too) are deleted
        with the stop's grace period, or again with it when their deletion gave them longer (the garbage
        collector's deletion gives the pod's own 30 s): the API server shortens a grace period, never lengthens."""
        for pod in pods:
            given = pod["metadata"].get("deletionGracePeriodSeconds")
            if pod["metadata"].get("deletionTimestamp") and (grace is None or given is not None and given <= grace):
                continue
            delete_pod(self.cluster, pod["metadata"]["name"], grace)
