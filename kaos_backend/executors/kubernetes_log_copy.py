"""Copying the pod's log of a workload of the kubernetes executor into the platform's log, as its follower
(kubernetes_follower.py) looks: the init container `fetch`, the platform's notes and "beginning to run user code",
then the main container; a Deployment's pod replaced by another (evicted, a node drained, deleted) is said in the
log, and the next one is copied. Each container's last line of output is kept (a failure's reason quotes it).
"""
from datetime import datetime
from typing import List, Optional

from kaos_backend.executors import kubernetes_status as status
from kaos_backend.executors import outcome
from kaos_backend.executors.kubernetes_client import is_status
from kaos_backend.executors.kubernetes_logs import Cursor, copy_container_log, interrupt
from kaos_backend.executors.preamble import START_RECORD

UPLOAD_FAILED = "kaos: could not upload the output: "   # the pod agent's line when the backend refused the output


class PodLogCopy:
    """The log-copying half of kubernetes_follower.Follower (a mixin): it uses the follower's `cluster`, `state`,
    `main`, `restarts`, `progress` (saved with `_save`), `writer` and `_renew_token`; `stream` is the log stream
    it reads now."""

    stream = None

    def _copy(self, pod: dict, pods: List[dict] = ()) -> None:
        progress = self.progress
        uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
        if progress["pod"] != uid:
            if progress["pod"] is not None:  # a Deployment replaced its pod (evicted, a node drained, deleted)
                how = self._gone_how(next((old for old in pods if old["metadata"]["uid"] == progress["pod"]), None))
                self._note(f"kaos: the pod {progress.get('pod_name')} " + (
                    f"ended ({how})" if how else "was deleted") + ": its log ends here")
                self._note(f"kaos: the {self.state['object']} {self.state['name']} made another pod, {name}")
                progress.update(replaced=progress.get("replaced", 0) + 1, last_replaced=how or "deleted")
            progress.update(pod=uid, pod_name=name, cursors={}, done=[])
            self._save()
        for container in (status.FETCH, self.main):
            if container in progress["done"]:
                continue
            if not status.started(pod, container):
                return
            if container == self.main and not progress["started"]:
                when = _started_at(pod, container)  # stamped as the container started, not as copied
                for note in self.state.get("notes") or []:
                    self.writer.record(note, when)
                self.writer.record(START_RECORD, when)
                progress["started"] = True
                self._save()
            over = status.terminated(pod, container, self.restarts) is not None
            if not self._copy_container(pod, container, follow=not over):
                return
            if not over:
                return  # followed until it ended (or the stream broke): the next look knows which
            progress["done"].append(container)
            self._save()

    def _gone_how(self, pod: Optional[dict]) -> Optional[str]:
        """How the replaced pod `pod` (still listed; None: gone) ended, in words; None when it is gone or did not
        end by itself (deleted: its containers' ends are the deletion's)."""
        record = status.ended(pod, self.main, False, None, {}) if pod is not None else None
        if record is None or (pod["metadata"].get("deletionTimestamp") and not record.get("error")):
            return None
        return status.describe(record)

    def _copy_container(self, pod: dict, container: str, follow: bool) -> bool:
        """Copy the container's log (following it when `follow`); False when there is none to read (yet)."""
        cursor = Cursor.from_list(self.progress["cursors"].get(container))
        main = container == self.main
        previous = self.restarts and not follow and status.terminated(pod, container) is None

        def saved():
            self.progress["cursors"][container] = cursor.to_list()
            self._save()
            self._renew_token()  # a container that logs all the time is followed for as long as it runs

        def on_line(text: str):  # the last line of output: of the main container, not the platform's records
            if text and (not main or not text.startswith("kaos: ")):
                self.progress["last"][container] = text[:outcome.LAST_LINE_LIMIT]
            if main and text and text.startswith(UPLOAD_FAILED):  # the backend refused the output: part of the reason
                self.progress["upload_failed"] = text[len(UPLOAD_FAILED):][:outcome.LAST_LINE_LIMIT]
        try:
            copy_container_log(self.cluster.core, self.cluster.namespace, pod["metadata"]["name"], container,
                               self.writer, cursor, follow=follow, previous=previous, saved=saved, on_line=on_line,
                               opened=self._reading)
        except Exception as error:  # noqa: BLE001 - sorted below
            if is_status(error, 400):
                return False  # not started as the server sees it yet
            if is_status(error, 404):  # the pod is gone (with its logs)
                name = pod["metadata"]["name"]
                self._note(f"kaos: the pod {name} was deleted: its log ends here" if self.progress["cursors"].get(
                    self.main) else f"kaos: the log of the pod {name} is gone: it was removed before kaos could "
                    "copy it")
                self.progress["done"] = [status.FETCH, self.main]
                self._save()
                return False
            if _broken_stream(error):
                return False  # a read timeout (a silent container) or a disconnect: resumed at the next look
            raise
        return True

    def _reading(self, response) -> None:
        """The log stream being read now (None between reads): what `interrupt_copy` ends."""
        self.stream = response

    def interrupt_copy(self) -> None:
        """End the follow of a container's log that this follower is blocked in (from another thread): the
        follower looks at once instead of when the container ends."""
        stream = getattr(self, "stream", None)
        if stream is not None:
            interrupt(stream)

    def _note(self, text: str) -> None:
        """A record of the platform's, written once per workload."""
        if text not in self.progress["notes"]:
            self.progress["notes"].append(text)
            self.writer.record(text)
            self._save()


def _started_at(pod: dict, container: str):
    """The local time the container started (its state's startedAt), or None (now)."""
    entry = status.container_status(pod, container) or {}
    for state in (entry.get("state") or {}, entry.get("lastState") or {}):
        for phase in ("running", "terminated"):
            started = (state.get(phase) or {}).get("startedAt")
            if started:
                try:
                    return datetime.fromisoformat(started.replace("Z", "+00:00")).astimezone().replace(tzinfo=None)
                except ValueError:
                    return None
    return None


def _broken_stream(error: BaseException) -> bool:
    import urllib3.exceptions
    return isinstance(error, (urllib3.exceptions.HTTPError, OSError))
