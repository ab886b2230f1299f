"""Trainings: start a train job for every new input combination of a workspace's train pipeline
(train_schedule.py), run its partitions (one per hyperparameter combination, `parallelism` at a time) and collect
models and metrics (train_metrics.py)."""
import logging
from typing import Dict, List, Optional

from kaos_model import JobState
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from kaos_backend.control.common import (KILLED_REASON, VANISHED, Controller, advance_each, bundle_artifact,
                                         data_artifact, end_reason, exit_state, finished, log_of, now, processing,
                                         reading, reattached, remove_unrecorded, unfinished_job_ids, update)
from kaos_backend.control.images import ImageCheck, check_image
from kaos_backend.control.train_metrics import read_metrics
from kaos_backend.control.train_schedule import schedule
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors import make_executor
from kaos_backend.executors.base import (Standing, Artifact, ArtifactMissing, Executor, Hyperparameters, WorkloadSpec,
                                         job_log_name)
from kaos_backend.models import Bundle, Job, Partition, Workspace
from kaos_backend.services.train import BUILD_KIND
from kaos_backend.untrusted import is_real_dir

log = logging.getLogger("kaos_backend.control.trainings")

RUNNING_STATES = (JobState.JOB_STARTING.value, JobState.JOB_RUNNING.value)


class TrainController(Controller):
    def tick(self) -> None:
        try:
            self.schedule()
        except Exception:  # noqa: BLE001 - scheduling new jobs must not hold up the running ones
            log.exception("Train jobs could not be scheduled")
        advance_each(unfinished_job_ids(self.services, ("train",)), self.advance, self.retries, self.give_up, log,
                     "Train job")

    def schedule(self) -> None:
        """A train job for each pipeline whose current inputs are complete, built and not trained yet
        (train_schedule.schedule)."""
        schedule(self.services)

    # -- running jobs ---------------------------------------------------------------------------------------
    def advance(self, job_id: str) -> None:
        """One job: read it, poll / stop / start its partitions (no transaction open), write what changed."""
        with reading(self.services) as session:
            job = session.get(Job, job_id)
            if job is None or job.finished_at is not None:
                return
            partitions = list(session.scalars(select(Partition).where(Partition.job_id == job.id)
                                              .order_by(Partition.index)))
        job_log = log_of(self.config, job_log_name(job.id))
        if job.desired == "kill":
            self._kill(job, partitions, job_log)
            return
        changes: Dict[int, Dict] = {}
        for partition in partitions:
            if partition.state == JobState.JOB_RUNNING.value:
                changes[partition.id] = self._poll(partition, job_log)
        states = {p.id: changes.get(p.id, {}).get("state", p.state) for p in partitions}
        running = sum(state == JobState.JOB_RUNNING.value for state in states.values())
        inputs = image = None
        for partition in partitions:
            if states[partition.id] == JobState.JOB_STARTING.value and running < job.parallelism:
                if image is None:
                    image = self._image(job, job_log)
                if not image.ready and image.failed is None:
                    break  # its image is being built again: the partitions wait
                if image.failed is not None:
                    changes[partition.id] = self._failed_start(job_log, image.failed)
                    states[partition.id] = changes[partition.id]["state"]
                    continue
                inputs = inputs or self._inputs(job)
                try:
                    changes[partition.id] = self._start(job, partition, inputs, job_log, image.image)
                except (InvalidBundle, PayloadTooLarge) as refused:  # stored before today's bundle checks
                    changes[partition.id] = self._failed_start(job_log, f"kaos: {refused.message}")
                states[partition.id] = changes[partition.id]["state"]
                running += states[partition.id] == JobState.JOB_RUNNING.value
        self._write(job, partitions, changes, states, running)

    def _write(self, job: Job, partitions: List[Partition], changes: Dict[int, Dict], states: Dict[int, str],
               running: int) -> None:
        job_changes: Dict = {}
        if job.state == JobState.JOB_STARTING.value and running:
            job_changes.update(state=JobState.JOB_RUNNING.value, started_at=now())
        waiting = _job_waiting(job, partitions, changes, states)
        if waiting is not False:
            job_changes["reason"] = waiting
        if all(state not in RUNNING_STATES for state in states.values()):
            failed = [p for p in partitions if states[p.id] != JobState.JOB_SUCCESS.value]
            reasons = {p.index: changes.get(p.id, {}).get("reason", p.reason) for p in failed}
            job_changes.update(finished(JobState.JOB_FAILURE if failed else JobState.JOB_SUCCESS,
                                        job_reason(reasons, len(partitions))))
        if not self._apply(job.id, changes, job_changes):
            for change in changes.values():  # the job went away meanwhile: so must what this pass started
                if change.get("state") == JobState.JOB_RUNNING.value and change.get("executor_state"):
                    reattached(self.config, change["executor_state"]).stop(now=True)

    def _apply(self, job_id: str, partition_changes: Dict[int, Dict], job_changes: Dict) -> bool:
        """Write the partitions' and the job's changes in one short transaction, unless the job is gone or
        finished meanwhile (False then)."""
        try:
            with self.services.db.session_scope() as session:
                row = session.get(Job, job_id)
                if row is None or row.finished_at is not None:
                    return False
                if partition_changes:
                    for partition in session.scalars(select(Partition).where(
                            Partition.id.in_(list(partition_changes)))):
                        for name, value in partition_changes[partition.id].items():
                            setattr(partition, name, value)
                for name, value in job_changes.items():
                    setattr(row, name, value)
                if "finished_at" in job_changes and row.started_at is None:
                    row.started_at = now()
        except StaleDataError:  # PostgreSQL: deleted by a transaction that held it locked while this one read it
            return False
        return True

    def _kill(self, job: Job, partitions: List[Partition], job_log: Executor) -> None:
        changes = self._stop_all(job.id, partitions, JobState.JOB_KILLED, KILLED_REASON)
        job_log.append_log(f"kaos: job {job.id} killed on request")
        self._apply(job.id, changes, finished(JobState.JOB_KILLED, KILLED_REASON))

    def give_up(self, job_id: str, reason: str) -> None:
        """The job's controller kept raising: stop what runs, fail it with the error as its reason."""
        with reading(self.services) as session:
            partitions = list(session.scalars(select(Partition).where(Partition.job_id == job_id)))
        changes = self._stop_all(job_id, partitions, JobState.JOB_FAILURE, reason, now=True)
        log_of(self.config, job_log_name(job_id)).append_log(reason)
        self._apply(job_id, changes, finished(JobState.JOB_FAILURE, reason))

    def _stop_all(self, job_id: str, partitions: List[Partition], state: JobState, reason: str,
                  now: bool = False) -> Dict[int, Dict]:
        """Stop the job's starting and running partitions (those whose start was never recorded, found by their
        name: a start whose answer never came may have left them running); their changes to `state`."""
        changes, unrecorded = {}, []
        for partition in partitions:
            if partition.state in RUNNING_STATES:
                executor = reattached(self.config, partition.executor_state)
                if executor is not None:
                    executor.stop(now=now)
                else:
                    unrecorded.append(partition_workload(job_id, partition.index))
                changes[partition.id] = finished(state, reason)
        remove_unrecorded(self.config, job_log_name(job_id), unrecorded, tolerant=state != JobState.JOB_KILLED)
        return changes

    def _poll(self, partition: Partition, job_log: Executor) -> Dict:
        executor = reattached(self.config, partition.executor_state)
        code = executor.poll() if executor is not None else VANISHED
        if code is None:
            return _waiting_changes(partition, executor.standing())
        reason = end_reason(executor, code)
        if code == VANISHED:
            job_log.append_log(f"kaos: the training ended: {reason}")
            return {"exit_code": code, **finished(JobState.JOB_FAILURE, reason)}
        out = self.layout.output_dir(partition.job_id, model_hex6(partition))  # where the executor delivered it
        has_model = is_real_dir(out / "model")
        if code == 0 and not has_model:
            # Named as the training saw it: the path on this machine is not the one a container or a pod was given.
            reason = ("kaos: train exited 0 but wrote no model: expected a directory model/ in its output directory "
                      "(its first argument, $KAOS_TRAIN_OUTPUT)")
            job_log.append_log(reason)
            return {"exit_code": code, **finished(JobState.JOB_FAILURE, reason)}
        return {"exit_code": code, "has_model": has_model, "metrics": read_metrics(out),
                **finished(exit_state(code), None if code == 0 else reason)}

    def _image(self, job: Job, job_log: Executor) -> ImageCheck:
        """The image the job's partitions start from: its build's, built again first when it left the engine."""
        check = check_image(self.services, make_executor(self.config), job.image, job.source_bundle_id, BUILD_KIND,
                            job_log, "training")
        if check.ready and check.image != job.image:
            update(self.services, Job, job.id, {"image": check.image})
        return check

    def _inputs(self, job: Job) -> Dict:
        with reading(self.services) as session:
            return {"source": session.get(Bundle, job.source_bundle_id) if job.source_bundle_id else None,
                    "data": session.get(Bundle, job.data_bundle_id) if job.data_bundle_id else None,
                    "workspace": session.get(Workspace, job.workspace_id)}

    def _start(self, job: Job, partition: Partition, inputs: Dict, job_log: Executor, image: Optional[str]) -> Dict:
        """Start the partition, its executor staging its files (no transaction open); its changes."""
        source, data, workspace = inputs["source"], inputs["data"], inputs["workspace"]
        if source is None or data is None or workspace is None:
            return self._failed_start(job_log, "kaos: an input bundle of this job was deleted")
        resources = job.resources or {}
        hyperparameters = Hyperparameters(partition.hyper_file, partition.hyperparams) if partition.hyper_file \
            else None
        spec = WorkloadSpec(
            job_id=partition_workload(job.id, partition.index), kind="train", log=job_log.log_name,
            preamble=processing(job.id),
            source=bundle_artifact(source), data=data_artifact(data), hyperparameters=hyperparameters,
            output=Artifact.output_of(job.id, model_hex6(partition)), image=image,
            env={"KAOS_JOB_ID": job.id, "KAOS_WORKSPACE": workspace.name, "KAOS_MODEL_ID": partition.model_id},
            cpu=resources.get("cpu"), memory=resources.get("memory"), gpu=resources.get("gpu") or 0)
        executor = make_executor(self.config)
        try:
            executor.start(spec)
        except ArtifactMissing as missing:
            if missing.artifact.kind != Artifact.INGESTED:
                return self._failed_start(job_log, f"kaos: an input bundle of this job is missing: {missing}")
            return self._failed_start(job_log, f"kaos: the ingested files of {data.glob_name} are missing "
                                      f"({missing.where}); upload the manifest again")
        return {"executor_state": executor.get_state(), "state": JobState.JOB_RUNNING.value, "started_at": now()}

    @staticmethod
    def _failed_start(job_log: Executor, reason: str) -> Dict:
        job_log.append_log(reason)
        return {"started_at": now(), **finished(JobState.JOB_FAILURE, reason)}


WAITING = "waiting to start: "  # a running partition's (and its job's) reason while its infrastructure holds it


def _waiting_changes(partition: Partition, standing: Optional[Standing]) -> Dict:
    """A running partition's reason while its infrastructure says what it waits for (Executor.standing: on
    Kubernetes, a pod that cannot be scheduled or pull its image), cleared once it waits no more."""
    reason = f"{WAITING}{standing.waiting}"[:1000] if standing is not None and standing.waiting else None
    if reason == partition.reason or (reason is None and not (partition.reason or "").startswith(WAITING)):
        return {}
    return {"reason": reason}


def _job_waiting(job: Job, partitions: List[Partition], changes: Dict[int, Dict], states: Dict[int, str]):
    """The running job's reason from its waiting partitions (the first one's, with its index when the job has
    several), None to clear a waiting reason it had, False to leave its reason as it is."""
    waiting = [(p.index, changes.get(p.id, {}).get("reason", p.reason)) for p in partitions
               if states[p.id] == JobState.JOB_RUNNING.value]
    waiting = [(index, reason) for index, reason in waiting if (reason or "").startswith(WAITING)]
    if waiting:
        index, reason = waiting[0]
        reason = reason if len(partitions) == 1 else f"partition #{index} {reason}"
        return reason if reason != job.reason else False
    return None if WAITING in (job.reason or "") else False


def partition_workload(job_id: str, index: int) -> str:
    """The name of a partition's workload (its WorkloadSpec.job_id): `<job id>-<index>`."""
    return f"{job_id}-{index}"


def model_hex6(partition: Partition) -> str:
    """The `<hex6>` of a partition's model id `<branch>:<hex6>`: its output's name."""
    return partition.model_id.rsplit(":", 1)[1]


def job_reason(reasons: Dict[int, Optional[str]], total: int) -> Optional[str]:
    """A train job's reason from its failed partitions' ({index: reason}): the reason itself for a job of one
    partition, else how many failed and why, first ones first."""
    if not reasons:
        return None
    if total == 1:
        return next(iter(reasons.values())) or "failed"
    listed = "; ".join(f"#{index} {reason or 'failed'}" for index, reason in sorted(reasons.items()))
    return f"{len(reasons)} of {total} partitions failed: {listed}"
