"""Waiting, bounded, for the scheduler to carry out a kill the API asked for (services/jobs.py, inference.py,
notebooks.py): the routes answer 200 once it is done, 202 `{"message", "reason"}` when the wait ends first (the
engine its workloads run on does not answer, a scheduler that is down or busy): the kill stays asked and is done
once the scheduler can."""
import time
from typing import Callable, NamedTuple, Optional

KILL_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1


class KillPending(NamedTuple):
    """A kill asked but not done within the wait: `message` for the user, `reason` the workload's own (what it
    waits for, e.g. "the Kubernetes API server does not answer since ..."), None when it has none; `what` the
    workload ("job 1a2b...")."""
    message: str
    reason: Optional[str]
    what: str = ""

    def to_dict(self) -> dict:
        return {"message": self.message, "reason": self.reason}

    def because(self, why: Optional[str]) -> "KillPending":
        """This pending kill, its message saying `why` (the health's message: "The Docker engine has not answered
        POST ... since ...") when its workload has no reason of its own."""
        if self.reason or not why:
            return self
        return pending(self.what, f"{why[:1].lower()}{why[1:]}", None)


def pending(what: str, why: Optional[str], reason: Optional[str]) -> KillPending:
    """The kill of `what` asked but not done yet, because of `why` (None: unknown)."""
    said = f": {why}" if why else ""
    return KillPending(f"The kill of {what} is asked but not done yet{said}. It is done once the scheduler can; "
                       "check with the list", reason, what)


def wait_for_kill(db, done: Callable[[object], bool], reason: Callable[[object], Optional[str]], what: str,
                  wait: float = KILL_WAIT_SECONDS) -> Optional[KillPending]:
    """None once `done(session)` holds (a read session of `db`, asked every POLL_SECONDS), else after `wait` seconds
    a KillPending for `what` ("job 1a2b...", "endpoint serve-ws-abc123") with `reason(session)`."""
    deadline = time.monotonic() + wait
    while True:
        with db.read_scope() as session:
            if done(session):
                return None
            if time.monotonic() >= deadline:
                said = reason(session)
                break
        time.sleep(POLL_SECONDS)
    return pending(what, said, said)
