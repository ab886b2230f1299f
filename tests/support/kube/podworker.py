"""The kubelet's worker for one pod: a thread that pulls the pod's images (asks the image resolver), makes its
volumes, runs its init containers one after the other and then its containers as local processes, probes their
readiness, restarts them as restartPolicy says (with a back-off: waiting CrashLoopBackOff), applies the failure
knobs, reports all of it in the pod's status, and on deletion stops the processes (SIGTERM, then SIGKILL after
the grace period) and confirms the deletion."""
import logging
import signal
import sys
import threading
import time
from typing import Optional, Tuple

from . import events
from .containers import ConfigError, ContainerProcess, command_line, environment
from .kinds import PODS
from .podstatus import ContainerState, pod_status, terminated
from .probes import probe

log = logging.getLogger("kubefake")
DEADLINE_MESSAGE = "Pod was active on the node longer than the specified deadline"
EVICTED_MESSAGE = ("The node was low on resource: memory. Threshold quantity: 100Mi, available: 0Ki. Container {} "
                   "was using 1Gi, request is 0, has larger consumption of its request. ")


class PodWorker:
    def __init__(self, kubelet, pod: dict):
        self.kubelet = kubelet
        self.store = kubelet.store
        self.namespace, self.name, self.uid = pod["metadata"]["namespace"], pod["metadata"]["name"], \
            pod["metadata"]["uid"]
        self.init = [ContainerState(c["name"], c["image"], init=True) for c in pod["spec"].get("initContainers") or []]
        self.main = [ContainerState(c["name"], c["image"]) for c in pod["spec"]["containers"]]
        for state in self.main:
            state.waiting = ("PodInitializing", None) if self.init else ("ContainerCreating", None)
        self.images = {}
        self.phase = "Pending"
        self.reason: Optional[Tuple[str, str]] = None
        self.started_at: Optional[float] = None
        self.running_since: Optional[float] = None
        self.published = kubelet.publish_ports(pod)
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"kubefake-pod-{self.name}", daemon=True)

    def _run(self) -> None:
        pod = None
        try:
            self._loop()
        except Exception as error:  # a bug of the fake: said where a test looks (FakeCluster.errors), not lost
            log.exception("kubefake: the worker of pod %s/%s failed", self.namespace, self.name)
            self.kubelet.errors.append(f"pod {self.namespace}/{self.name}: {error!r}")
        finally:
            self._kill_all(signal.SIGKILL)
            self.kubelet.forget(self.uid, self.store.find(PODS, self.namespace, self.name) or pod)

    def _loop(self) -> None:
        while not self.kubelet.stopped:
            pod = self.store.find(PODS, self.namespace, self.name)
            if pod is None or pod["metadata"]["uid"] != self.uid:
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._terminate(pod)
                return
            if self.phase not in ("Succeeded", "Failed"):
                self._step(pod)
            self._publish(pod)
            self.wake.wait(self._next_look(pod))
            self.wake.clear()

    def _next_look(self, pod: dict) -> float:
        """How long until the worker must look again unwoken (a process's exit, a deletion, a fault wake it):
        a tick while something is due by time (a back-off, a probe not yet passed, a deadline, a fault's delay),
        else a second (readiness is then probed once a second)."""
        if self.phase in ("Succeeded", "Failed"):
            return 1.0
        timed = (self.phase == "Pending" or pod["spec"].get("activeDeadlineSeconds") or self.kubelet.faults.active
                 or any(not s.final and (s.waiting or not s.ready) for s in self.init + self.main))
        return self.kubelet.tick if timed else 1.0

    # -- one look at the pod ---------------------------------------------------------------------------------
    def _step(self, pod: dict) -> None:
        now = time.time()
        if self.started_at is None:
            self.started_at = now
        if not self._pull(pod, now) or not self._volumes(pod):
            return
        if self._pod_failure(pod, now):
            return
        specs = {c["name"]: c for c in (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]}
        policy = pod["spec"]["restartPolicy"]
        for state in self.init:  # one after the other; a failed one is retried unless restartPolicy is Never
            if not state.final:
                self._advance(pod, state, specs[state.name], "Never" if policy == "Never" else "OnFailure", now)
            if state.final and state.terminated["exitCode"] == 0:
                continue
            if state.final:
                self._end("Failed")
            return
        for state in self.main:
            if state.waiting and state.waiting[0] == "PodInitializing":
                state.waiting = ("ContainerCreating", None)
            self._advance(pod, state, specs[state.name], policy, now)
        if any(s.process for s in self.main):
            self.phase = "Running"
            self.running_since = self.running_since or now
        if all(s.final for s in self.main):
            self._end("Succeeded" if all(s.terminated["exitCode"] == 0 for s in self.main) else "Failed")

    def _pull(self, pod: dict, now: float) -> bool:
        pulled = True
        for state, spec in self._containers(pod):
            if state.pulled:
                continue
            fault = self.kubelet.faults.find("ErrImagePull", pod, state.name)
            image = None if fault else self.kubelet.images(state.image)
            if image is not None:
                self.images[state.name], state.pulled = image, True
                state.waiting = ("PodInitializing", None) if not state.init and self.init else (
                    "ContainerCreating", None)
                continue
            pulled = False
            if not state.waiting or state.waiting[0] not in ("ErrImagePull", "ImagePullBackOff"):
                message = (fault and fault.message) or (
                    f'failed to pull and unpack image "{state.image}": failed to resolve reference '
                    f'"{state.image}": pull access denied, repository does not exist or may require authorization')
                state.waiting, state.next_start = ("ErrImagePull", f"rpc error: code = NotFound desc = {message}"), \
                    now + self.kubelet.pull_backoff
                events.record(self.store, pod, "Warning", "Failed", f'Failed to pull image "{state.image}": '
                              f"{state.waiting[1]}", "kubelet", self.kubelet.node)
            elif state.waiting[0] == "ErrImagePull" and now >= state.next_start:
                state.waiting = ("ImagePullBackOff", f'Back-off pulling image "{state.image}"')
                events.record(self.store, pod, "Normal", "BackOff", state.waiting[1], "kubelet", self.kubelet.node)
        return pulled

    def _volumes(self, pod: dict) -> bool:
        try:
            self.kubelet.volumes.prepare(pod)
            return True
        except ConfigError as error:
            events.record(self.store, pod, "Warning", "FailedMount", str(error), "kubelet", self.kubelet.node)
            return False

    def _pod_failure(self, pod: dict, now: float) -> bool:
        faults = self.kubelet.faults
        deadline = pod["spec"].get("activeDeadlineSeconds")
        evict = faults.find("Evicted", pod)
        if evict and self.running_since and now >= self.running_since + evict.after:
            message = evict.message or EVICTED_MESSAGE.format(self.main[0].name)
            self._kill_all(signal.SIGKILL, "Error")
            self.reason = ("Evicted", message)
            self.kubelet.disrupt(pod, message)
            events.record(self.store, pod, "Warning", "Evicted", message, "kubelet", self.kubelet.node)
        elif faults.find("DeadlineExceeded", pod) or (deadline and now >= self.started_at + deadline):
            self._kill_all(signal.SIGKILL, "Error")
            self.reason = ("DeadlineExceeded", DEADLINE_MESSAGE)
            events.record(self.store, pod, "Normal", "DeadlineExceeded", DEADLINE_MESSAGE, "kubelet",
                          self.kubelet.node)
        else:
            return False
        self._end("Failed")
        return True

    # -- one container ---------------------------------------------------------------------------------------
    def _advance(self, pod: dict, state: ContainerState, spec: dict, policy: str, now: float) -> None:
        if state.final:
            return
        process = state.process
        if process is None or state.restart_pending:
            if now >= state.next_start:
                self._start(pod, state, spec, now)
            return
        code = process.poll()
        if code is None:
            oom = self.kubelet.faults.find("OOMKilled", pod, state.name)
            if oom and now >= process.started_at + oom.after:
                process.oom_killed = True
                process.signal(signal.SIGKILL)
            state.ready = probe(spec["readinessProbe"], spec, self.published) if not state.init and \
                "readinessProbe" in spec else not state.init
            return
        state.ready = False
        reason = "StartError" if process.start_error else "OOMKilled" if process.oom_killed else \
            "Completed" if code == 0 else "Error"
        record = terminated(state, reason, process.start_error)
        restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if not restart:
            state.terminated, state.final, state.waiting = record, True, None
            return
        state.last_terminated, state.terminated = record, None
        state.backoff = min(max(state.backoff * 2, self.kubelet.crash_backoff), 5.0)
        state.next_start = now + state.backoff
        state.waiting = ("CrashLoopBackOff", f"back-off {state.backoff:g}s restarting failed container="
                                             f"{state.name} pod={self.name}_{self.namespace}({self.uid})")
        state.restart_pending = True
        events.record(self.store, pod, "Warning", "BackOff", "Back-off restarting failed container "
                      f"{state.name} in pod {self.name}_{self.namespace}({self.uid})", "kubelet", self.kubelet.node)

    def _start(self, pod: dict, state: ContainerState, spec: dict, now: float) -> None:
        image = self.images[state.name]
        try:
            env = environment(self.store, pod, spec, image, self.published)
            argv = command_line(spec, image, env)
            crash = self.kubelet.faults.find("CrashLoopBackOff", pod, state.name)
            if crash:
                argv = [sys.executable, "-c", "import sys; print(sys.argv[1]); sys.exit(1)",
                        crash.message or "crashing (a kubefake fault)"]
            if not argv:
                raise ConfigError("no command specified")
            mounts = self.kubelet.volumes.mounts(pod, spec)
        except ConfigError as error:
            reason = "CreateContainerError" if str(error) == "no command specified" else "CreateContainerConfigError"
            state.waiting = (reason, str(error))
            state.next_start = now + self.kubelet.crash_backoff
            return
        if state.process is not None:
            state.restarts += 1
        cwd = spec.get("workingDir") or image.working_dir or self.kubelet.volumes.pod_dir(pod) + "/rootfs"
        state.process = ContainerProcess(argv, env, cwd, mounts, self.kubelet.logs.start(self.uid, state.name),
                                         self.wake.set)
        state.waiting, state.terminated, state.restart_pending = None, None, False
        events.record(self.store, pod, "Normal", "Started", f"Started container {state.name}", "kubelet",
                      self.kubelet.node)

    # -- the end ---------------------------------------------------------------------------------------------
    def _containers(self, pod: dict):
        specs = (pod["spec"].get("initContainers") or []) + pod["spec"]["containers"]
        return zip(self.init + self.main, specs)

    def _end(self, phase: str) -> None:
        self.phase = phase
        for state in self.init + self.main:
            state.ready = False
            if not state.final and state.waiting and state.waiting[0] in ("PodInitializing", "ContainerCreating"):
                continue
            state.final = True
            if state.terminated is None and state.last_terminated is not None:
                state.terminated, state.waiting = state.last_terminated, None

    def _kill_all(self, number: int, reason: Optional[str] = None) -> None:
        for state in self.init + self.main:
            if state.process is not None and state.process.poll() is None:
                state.process.signal(number)
                deadline = time.monotonic() + 5
                while state.process.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                if reason and state.process.exit_code is not None:
                    state.terminated, state.final, state.waiting = terminated(state, reason), True, None

    def _terminate(self, pod: dict) -> None:
        grace = pod["metadata"].get("deletionGracePeriodSeconds", pod["spec"].get("terminationGracePeriodSeconds"))
        running = [s for s in self.init + self.main if s.process is not None and s.process.poll() is None]
        for state in running:
            events.record(self.store, pod, "Normal", "Killing", f"Stopping container {state.name}", "kubelet",
                          self.kubelet.node)
            state.process.signal(signal.SIGTERM)
        deadline = time.monotonic() + (grace or 0)
        while any(s.process.poll() is None for s in running) and time.monotonic() < deadline \
                and not self.kubelet.stopped:
            time.sleep(0.05)
        for state in running:
            if state.process.poll() is None:
                state.process.signal(signal.SIGKILL)
                while state.process.poll() is None:
                    time.sleep(0.02)
            code = state.process.exit_code
            state.terminated, state.final, state.waiting, state.ready = terminated(
                state, "Completed" if code == 0 else "Error"), True, None, False
        if self.phase not in ("Succeeded", "Failed") and running:
            self.phase = "Succeeded" if all(s.terminated and s.terminated["exitCode"] == 0 for s in self.main) \
                else "Failed"
        self._publish(pod)
        try:
            self.store.delete(PODS, self.namespace, self.name, grace=0)
        except Exception:
            pass  # force-deleted meanwhile

    def _publish(self, pod: dict) -> None:
        started = self.started_at if len(self.images) == len(self.init + self.main) else None

        def write(edited):  # from the status as it is now: others' conditions (PodScheduled, DisruptionTarget) stay
            if edited["metadata"]["uid"] == self.uid:
                edited["status"] = pod_status(edited.get("status") or {}, self.init, self.main, self.phase, started,
                                              self.reason)
        self.store.mutate(PODS, self.namespace, self.name, write, subresource="status")
