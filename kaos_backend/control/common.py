"""Pieces the controllers share: reading and writing rows in short transactions, retries of a job that cannot
advance, the artifacts a spec names, finishing a job, reattaching an executor.

The rule every controller keeps: no file I/O and no process start inside a write transaction. A controller
reads what it needs (`load`), does its work (start, poll or stop workloads, which stage their files) with no
transaction open, then writes what changed (`update`) in one short transaction that re-reads the row, so a
change the API made meanwhile (a kill request, a deleted workspace) is never overwritten.
"""
import logging
import time
import traceback
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, List, Optional

from kaos_model import JobState
from sqlalchemy.orm.exc import StaleDataError

from kaos_backend.executors import engine_requests, log_of, make_executor
from kaos_backend.executors.base import VANISHED, Artifact, Executor
from kaos_backend.executors.preamble import Preamble, processing
from kaos_backend.executors.outcome import VANISHED_REASON

MAX_REASON = 1000
MAX_TRIES = 3             # a job whose controller raises this many times in a row fails with the error
RETRY_DELAYS = (1.0, 4.0)  # seconds before the 2nd and 3rd try
KILLED_REASON = "killed on request"


def now() -> datetime:
    return datetime.now(timezone.utc)


def reading(services):
    """A transaction that only reads: it never waits for a writer (db.read_scope)."""
    return services.db.read_scope()


def load(services, model, key):
    """The row `key` of `model` as a detached object (None if there is none); no transaction stays open."""
    with reading(services) as session:
        return session.get(model, key)


def update(services, model, key, changes: Dict, only_if: Callable = lambda row: True) -> bool:
    """Apply `changes` (attribute -> value) to the row `key` in one short write transaction, when it still exists
    and `only_if(row)` holds. False when it did not apply (the row is gone or changed meanwhile)."""
    if not changes:
        return True
    try:
        with services.db.session_scope() as session:
            row = session.get(model, key)
            if row is None or not only_if(row):
                return False
            for name, value in changes.items():
                setattr(row, name, value)
    except StaleDataError:  # PostgreSQL: deleted by a transaction that held it locked while this one read it
        return False
    return True


def finished(state: JobState, reason: Optional[str] = None) -> Dict:
    """The changes that make a job (or partition) terminal."""
    changes = {"state": state.value, "finished_at": now()}
    if reason:
        changes["reason"] = reason[:MAX_REASON]
    return changes


def bundle_artifact(bundle) -> Artifact:
    """A stored upload (models.Bundle) as a spec names it: a zip bundle, or a data manifest's bytes."""
    if bundle.kind == "manifest":
        return Artifact(Artifact.MANIFEST, bundle.blob_digest, name=bundle.glob_name)
    return Artifact(Artifact.BUNDLE, bundle.blob_digest, bundle.root_name, bundle.glob_name)


def data_artifact(bundle) -> Artifact:
    """What a training reads of its data bundle: the bundle itself, or the files ingested for a manifest."""
    if bundle.kind == "manifest":
        return Artifact(Artifact.INGESTED, bundle.blob_digest, name=bundle.glob_name)
    return bundle_artifact(bundle)


class Retries:
    """Jobs whose controller raised: when each may be tried again, and whether it has tries left."""

    def __init__(self, max_tries: int = MAX_TRIES, delays=RETRY_DELAYS):
        self.max_tries = max_tries
        self.delays = delays
        self._failures: Dict[str, tuple] = {}  # key -> (failures so far, monotonic time of the next try)
        self._waited: Dict[str, None] = {}     # keys whose engine request went unanswered (in that order)

    def in_turn(self, keys: Iterable[str]) -> List[str]:
        """`keys`, those whose engine request went unanswered last: one workload the engine hangs on (a container
        whose stop never ends) must not hold the others behind it round after round."""
        keys = list(keys)
        return [key for key in keys if key not in self._waited] + [key for key in self._waited if key in keys]

    def waited(self, key: str) -> None:
        """`key`'s engine request went unanswered: it goes last (`in_turn`) until it advances."""
        self._waited.pop(key, None)
        self._waited[key] = None

    def due(self, key: str) -> bool:
        entry = self._failures.get(key)
        return entry is None or time.monotonic() >= entry[1]

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)
        self._waited.pop(key, None)

    def failed(self, key: str) -> int:
        """Count a failure; the number of failures so far (`max_tries` or more: give up)."""
        count = self._failures.get(key, (0, 0.0))[0] + 1
        delay = self.delays[min(count, len(self.delays)) - 1] if self.delays else 0.0
        self._failures[key] = (count, time.monotonic() + delay)
        return count

    def forget_all_but(self, keys: Iterable[str]) -> None:
        keep = set(keys)
        for key in list(self._failures):
            if key not in keep:
                del self._failures[key]
        for key in list(self._waited):
            if key not in keep:
                del self._waited[key]


class Controller:
    """What every controller holds: the services of its process, their config and data layout, and the retries
    of the jobs (or endpoints) that failed to advance."""

    def __init__(self, services):
        self.services = services
        self.config = services.config
        self.layout = services.layout
        self.retries = Retries()


def advance_each(keys: List[str], advance: Callable[[str], None], retries: Retries, give_up: Callable,
                 logger: logging.Logger, what: str) -> None:
    """`advance(key)` for each key that is due; one that raises is logged once per try and retried with
    backoff; after `retries.max_tries` failures `give_up(key, error_text)` ends it with the error as reason.
    One whose engine request timed out, or lost its connection unanswered (engine_requests.timed_out: the engine
    did not answer), ends the round, the try not counted: the engine watch holds the workloads until the engine
    is asked again, and that key comes last in the rounds that follow until it advances (Retries.in_turn)."""
    retries.forget_all_but(keys)
    for key in retries.in_turn(keys):
        if not retries.due(key):
            continue
        before = engine_requests.timed_out()
        try:
            advance(key)
            retries.succeeded(key)
        except Exception as error:  # noqa: BLE001 - one job's trouble must not hold up the others
            timed_out = engine_requests.timed_out()
            if timed_out is not None and timed_out is not before:
                logger.warning("%s %s waits: the engine %s (%s); tried again once it is asked again", what, key,
                               timed_out.said(), timed_out.error)
                retries.waited(key)
                return
            count = retries.failed(key)
            final = count >= retries.max_tries
            logger.error("%s %s could not advance (try %d of %d%s): %s", what, key, count, retries.max_tries,
                         ", giving up" if final else "",
                         error if isinstance(error, engine_requests.EngineError) else _traceback(error))
            if final:
                retries.succeeded(key)
                text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                try:
                    give_up(key, f"kaos: the scheduler could not advance this {what.lower()}: {text}")
                except Exception:  # noqa: BLE001
                    logger.exception("%s %s could not be marked failed", what, key)


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


def unfinished_job_ids(services, kinds) -> List[str]:
    from sqlalchemy import select

    from kaos_backend.models import Job
    with reading(services) as session:
        return list(session.scalars(select(Job.id).where(Job.kind.in_(list(kinds)), Job.finished_at.is_(None))
                                    .order_by(Job.created_at)))


def reattached(config, state: Optional[dict]) -> Optional[Executor]:
    if not state:
        return None
    executor = make_executor(config)
    executor.load_state(state)
    return executor


def remove_unrecorded(config, log: str, workloads: List[str], tolerant: bool = False) -> None:
    """Remove what starts of `workloads` (of the log `log`) whose answer never came left, that no row records
    (Executor.remove_unrecorded); with `tolerant`, an error is logged, not raised (a give-up goes on)."""
    if not workloads:
        return
    try:
        make_executor(config).remove_unrecorded(log, workloads)
    except Exception as error:  # noqa: BLE001
        if not tolerant:
            raise
        logging.getLogger("kaos_backend.control").warning("%s: %s could not be removed: %s", log,
                                                          ", ".join(workloads), error)


def end_reason(executor: Optional[Executor], code: int) -> str:
    """How a finished workload ended, in words (the executor's account, else the bare exit code)."""
    reason = executor.reason() if executor is not None else None
    if reason:
        return reason
    return VANISHED_REASON if code == VANISHED else f"exit code {code}"


def exit_state(code: int) -> JobState:
    return JobState.JOB_SUCCESS if code == 0 else JobState.JOB_FAILURE


__all__ = ["VANISHED", "KILLED_REASON", "Controller", "Preamble", "Retries", "advance_each", "bundle_artifact",
           "data_artifact", "end_reason", "exit_state", "finished", "load", "log_of", "now", "processing", "reading",
           "reattached", "remove_unrecorded", "unfinished_job_ids", "update"]
