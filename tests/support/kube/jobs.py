"""The Job controller (batch/v1), as of Kubernetes 1.31+: pods from the template (named `<job>-<5 chars>`, owned by
the Job, labelled batch.kubernetes.io/job-name and controller-uid), replacements after a failure with a short
back-off until `backoffLimit` failures, then the terminal conditions:

    success: SuccessCriteriaMet, then Complete (reason CompletionsReached) and completionTime, once no pod runs
    failure: FailureTarget, then Failed, reason BackoffLimitExceeded ("Job has reached the specified backoff
             limit") or DeadlineExceeded ("Job was active longer than specified deadline", after
             activeDeadlineSeconds from startTime; the active pods are deleted)

and status.active / ready / succeeded / failed / terminating / startTime. A pod deleted before it ended counts as
failed (as the real controller counts it through its job-tracking finalizer, which the pods here do not carry).
ttlSecondsAfterFinished deletes a finished Job (and, in the background, its pods).
"""
import time
from typing import Dict, Optional, Set

from . import clock, events
from .kinds import JOBS, PODS
from .owners import controller_uid, is_ready, is_terminal, owned, pod_from_template, set_condition
from .store import Store

COMPLETE_MESSAGE = "Reached expected number of succeeded pods"
BACKOFF_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"


class JobController:
    def __init__(self, store: Store, backoff: float = 0.2):
        self.store = store
        self.backoff = backoff            # the delay before a failed pod's replacement (the real one: 10 s, doubling)
        self.counted: Dict[str, Dict[str, Set[str]]] = {}   # job uid -> {"Succeeded"|"Failed": pod uids}

    def routes(self, change):
        if change.resource == JOBS:
            yield "job", change.obj["metadata"]["namespace"], change.obj["metadata"]["name"]
        elif change.resource == PODS:
            for ref in change.obj["metadata"].get("ownerReferences") or []:
                if ref.get("kind") == "Job" and ref.get("controller"):
                    self._count(ref["uid"], change)
                    yield "job", change.obj["metadata"]["namespace"], ref["name"]

    def _count(self, job_uid: str, change) -> None:
        """Count a pod's end as it happens (as the job-tracking finalizer lets the real controller do): a pod that
        is deleted before it ended counts as failed, so a pod someone deletes is not silently replaced."""
        phase = (change.obj.get("status") or {}).get("phase")
        counted = self.counted.setdefault(job_uid, {"Succeeded": set(), "Failed": set()})
        if phase in ("Succeeded", "Failed"):
            counted[phase].add(change.obj["metadata"]["uid"])
        elif change.type == "DELETED":
            counted["Failed"].add(change.obj["metadata"]["uid"])

    def register(self, manager) -> None:
        manager.register("job", self.reconcile, self.routes)

    def reconcile(self, key: tuple) -> Optional[float]:
        _, namespace, name = key
        job = self.store.find(JOBS, namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return None
        spec, status = job["spec"], dict(job.get("status") or {})
        now = time.time()
        conditions = list(status.get("conditions") or [])
        done = next((c for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None)
        if done:
            return self._ttl(job, done)
        if spec.get("suspend"):
            return None
        pods = [p for p in owned(self.store, job) if controller_uid(p) == job["metadata"]["uid"]]
        counted = self.counted.setdefault(job["metadata"]["uid"], {"Succeeded": set(), "Failed": set()})
        active = [p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if not is_terminal(p) and p["metadata"].get("deletionTimestamp")]
        status.setdefault("startTime", clock.rfc3339(now))
        succeeded, failed = len(counted["Succeeded"]), len(counted["Failed"])
        started = clock.parse_rfc3339(status["startTime"])
        deadline = spec.get("activeDeadlineSeconds")
        stamp = clock.rfc3339(now)
        target = next((c for c in conditions if c["type"] in ("FailureTarget", "SuccessCriteriaMet")), None)
        after = None
        if target is None:
            if failed > spec["backoffLimit"]:
                target = {"type": "FailureTarget", "reason": "BackoffLimitExceeded", "message": BACKOFF_MESSAGE}
            elif deadline and now - started >= deadline:
                target = {"type": "FailureTarget", "reason": "DeadlineExceeded", "message": DEADLINE_MESSAGE}
            elif succeeded >= spec["completions"]:
                target = {"type": "SuccessCriteriaMet", "reason": "CompletionsReached", "message": COMPLETE_MESSAGE}
            if target:
                conditions = set_condition(conditions, target["type"], "True", target["reason"], target["message"],
                                           stamp, probe_time="always")
        if target:
            for pod in active:
                self._delete_pod(pod)
            terminating += active
            active = []
            if not terminating:
                final = "Failed" if target["type"] == "FailureTarget" else "Complete"
                conditions = set_condition(conditions, final, "True", target["reason"], target["message"], stamp,
                                           probe_time="always")
                if final == "Complete":
                    status["completionTime"] = stamp
                events.record(self.store, job, "Normal" if final == "Complete" else "Warning",
                              "Completed" if final == "Complete" else target["reason"],
                              "Job completed" if final == "Complete" else target["message"], "job-controller")
        else:
            wanted = min(spec["parallelism"], spec["completions"] - succeeded) - len(active)
            if wanted > 0 and failed and counted.get("replaced", 0) < failed:
                counted["replaced"] = failed
                after = self.backoff
            else:
                for _ in range(max(0, wanted)):
                    self._create_pod(job)
            if deadline:
                remaining = deadline - (now - started)
                after = remaining if after is None else min(after, remaining)
        status.update(active=len(active), ready=sum(1 for p in active if is_ready(p)), succeeded=succeeded,
                      failed=failed, terminating=len(terminating), uncountedTerminatedPods={}, conditions=conditions)
        for field in ("active", "succeeded", "failed", "conditions"):
            if not status[field]:
                del status[field]

        def write(edited):
            edited["status"] = status
        updated = self.store.mutate(JOBS, namespace, name, write, subresource="status")
        if updated and any(c["type"] in ("Complete", "Failed") for c in status.get("conditions", [])):
            return self._ttl(updated, status["conditions"][-1])
        return after

    def _create_pod(self, job: dict) -> None:
        template = job["spec"]["template"]
        pod = self.store.create(PODS, job["metadata"]["namespace"],
                                pod_from_template(job, template, f"{job['metadata']['name']}-"))
        events.record(self.store, job, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                      "job-controller")

    def _delete_pod(self, pod: dict) -> None:
        try:
            self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"], "Background")
        except Exception:
            pass  # gone meanwhile

    def _ttl(self, job: dict, done: dict) -> Optional[float]:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        remaining = ttl - (time.time() - clock.parse_rfc3339(done["lastTransitionTime"]))
        if remaining > 0:
            return remaining
        try:
            self.store.delete(JOBS, job["metadata"]["namespace"], job["metadata"]["name"], "Background")
        except Exception:
            pass
        return None
