"""Scheduler leadership among backend replicas: every replica runs its scheduler, and only the one holding the
scheduler lock (kaos_backend.scheduler_lock) runs the control loops. The others stand by and try the lock again
every RETRY_SECONDS; a leader checks that it still holds it before every tick and stands by at once when it
does not (its connection dropped: the server has given the lock up, or will).

`Leadership.leading()` answers "may I tick now?" and keeps `status()` up to date, the role the scheduler writes
in its heartbeat for the health route (kaos_backend.part_status):

    {"role": "leader" | "standby", "identity": "<this scheduler>", "leader": "<the holder>" | null,
     "no_leader_since": <epoch seconds> | null, "no_leader_reason": "<why no replica leads>" | null}

`no_leader_since` is set while a standby cannot see a leader that acts: the database does not answer, or the
holder's session has not run its check for longer than TAKEOVER_SECONDS (a leader stuck mid-tick, or stopped).
"""
import logging
import os
import socket
import time
from typing import Callable, Optional

from kaos_backend.scheduler_lock import TAKEOVER_SECONDS, LockUnavailable

RETRY_SECONDS = 1.0  # a standby's tries: takeover within this of the lock's release

log = logging.getLogger("kaos_backend.leadership")


def scheduler_identity(replica: Optional[str] = None, pid: Optional[int] = None) -> str:
    """How a scheduler names itself to the others: `kaos-scheduler <pid>@<host>`, and the replica's public
    address when known (`kaos-scheduler 4242@node-1 127.0.0.1:8080`)."""
    name = f"kaos-scheduler {os.getpid() if pid is None else pid}@{socket.gethostname()}"
    return f"{name} {replica}" if replica else name


class Leadership:
    """The role of one scheduler, driven by `leading()` before every tick (or try)."""

    def __init__(self, lock, clock: Callable[[], float] = time.time):
        self.lock = lock
        self.clock = clock
        self.is_leader = False
        self.leader: Optional[str] = None
        self.no_leader_since: Optional[float] = None
        self.no_leader_reason: Optional[str] = None
        self._announced = False  # this standby said who leads

    @property
    def identity(self) -> str:
        return self.lock.identity

    def leading(self) -> bool:
        """True when this scheduler may tick now: it holds the lock (taken now, or still held)."""
        if self.is_leader:
            if self.lock.still_held():
                return True
            self.is_leader = False
            self._no_leader("this scheduler lost the scheduler lock (its database connection dropped)")
            log.warning("Scheduler %s lost the scheduler lock: standing by", self.identity)
        try:
            if self.lock.try_acquire():
                self.is_leader, self.leader, self._announced = True, self.identity, False
                self.no_leader_since = self.no_leader_reason = None
                log.info("Scheduler %s is the leader: it holds the scheduler lock", self.identity)
                return True
            self._standing_by(self.lock.holder())
        except LockUnavailable as error:
            self._no_leader(f"the database does not answer ({error})")
        return False

    def _standing_by(self, holder) -> None:
        known = holder.identity
        if holder.identity is None and holder.idle_seconds is None:  # released between the two looks, or unseen
            if self.no_leader_since is None:
                self._no_leader("the scheduler lock is held by a session that cannot be seen")
            return
        if known != self.leader or not self._announced:
            log.info("Scheduler %s stands by: the leader is %s", self.identity, known or "an unnamed session")
            self._announced = True
        self.leader = known
        if holder.idle_seconds is not None and holder.idle_seconds > TAKEOVER_SECONDS:
            self._no_leader(f"the leader {known or '(unnamed)'} has not checked its lock for "
                            f"{holder.idle_seconds:.0f} s", since=self.clock() - holder.idle_seconds)
        else:
            self.no_leader_since = self.no_leader_reason = None

    def _no_leader(self, reason: str, since: Optional[float] = None) -> None:
        if self.no_leader_since is None or since is not None:
            self.no_leader_since = self.clock() if since is None else since
        self.no_leader_reason = reason
        if since is None:
            self.leader = None

    def status(self) -> dict:
        return {"role": "leader" if self.is_leader else "standby", "identity": self.identity,
                "leader": self.leader, "no_leader_since": self.no_leader_since,
                "no_leader_reason": self.no_leader_reason}

    def release(self) -> None:
        self.lock.release()
        self.is_leader = False
