"""The scheduler lock and leadership, one level below the backend: two sessions on a real PostgreSQL (one holds,
the other cannot; the holder's session gone, closed or killed with its process, the other gets it), the SQLite
lock file, the standby's view of a leader that is gone or stuck, and what the health verdict makes of it."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kaos_backend import part_status
from kaos_backend.leadership import Leadership
from kaos_backend.migrations.upgrade import POSTGRES_LOCK_KEY
from kaos_backend.scheduler_lock import (SCHEDULER_LOCK_KEY, FileLock, Holder, LockUnavailable, PostgresLock,
                                         scheduler_lock)
from tests.support.supervision import wait_for

ROOT = Path(__file__).resolve().parents[2]
HOLD = """\
import sys, time
from kaos_backend.scheduler_lock import PostgresLock
lock = PostgresLock(sys.argv[1], "held by a process")
print(lock.try_acquire(), flush=True)
time.sleep(600)
"""


@pytest.fixture
def locks(postgres_url):
    made = []

    def make(identity):
        made.append(PostgresLock(postgres_url, identity))
        return made[-1]

    yield make
    for lock in made:
        lock.release()


def _terminate(postgres_url, application_name):
    """What the server does to a session whose client went silent: end it."""
    import psycopg
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = %s",
                      (application_name,))  # returns once the session has ended


@pytest.mark.postgres
def test_one_session_holds_the_lock_and_the_other_sees_who(locks):
    first, second = locks("kaos-scheduler 1@a 127.0.0.1:1"), locks("kaos-scheduler 2@b 127.0.0.1:2")
    assert first.try_acquire() and first.try_acquire()
    assert not second.try_acquire()
    holder = second.holder()
    assert holder.identity == "kaos-scheduler 1@a 127.0.0.1:1" and 0 <= holder.idle_seconds < 60, holder
    assert first.still_held()
    assert not second.try_acquire()


@pytest.mark.postgres
def test_the_holder_releasing_the_lock_frees_it_at_once(locks):
    first, second = locks("first"), locks("second")
    assert first.try_acquire() and not second.try_acquire()
    first.release()
    assert second.try_acquire()
    assert not first.try_acquire() and first.holder().identity == "second"


@pytest.mark.postgres
def test_the_holder_closing_its_connection_frees_the_lock(locks):
    first, second = locks("first"), locks("second")
    assert first.try_acquire()
    first._connection.invalidate()  # the connection closed under it, no unlock sent: the session ends
    wait_for(second.try_acquire, 15, "the lock of the closed session to be free")
    assert not first.still_held()


@pytest.mark.postgres
def test_a_session_ended_by_the_server_is_no_longer_held_and_the_other_takes_the_lock(locks, postgres_url):
    first, second = locks("dropped"), locks("next")
    assert first.try_acquire()
    _terminate(postgres_url, "dropped")
    assert not first.still_held()  # checked before every tick: the leader stands by at once
    assert second.try_acquire()
    assert not first.try_acquire()  # a new session of the old holder: the lock is the other's now


@pytest.mark.postgres
def test_the_lock_dies_with_a_process_killed_by_sigkill(locks, postgres_url):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, postgres_url], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        waiting = locks("waiting")
        assert not waiting.try_acquire() and waiting.holder().identity == "held by a process"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        wait_for(waiting.try_acquire, 15, "the lock of the killed process to be free")
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=30)


@pytest.mark.postgres
def test_the_lock_is_the_schedulers_alone(locks, postgres_url):
    """Not the migrations' key, and not held in one database for another."""
    assert SCHEDULER_LOCK_KEY != POSTGRES_LOCK_KEY
    assert isinstance(scheduler_lock(postgres_url, "/nowhere", "x"), PostgresLock)
    import psycopg
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as migrating:
        assert migrating.execute("SELECT pg_try_advisory_lock(%s)", (POSTGRES_LOCK_KEY,)).fetchone()[0]
        assert locks("scheduler").try_acquire()


@pytest.mark.postgres
def test_an_unreachable_database_is_lock_unavailable(postgres_server):
    lock = PostgresLock(postgres_server.rsplit(":", 1)[0] + ":1/nothing", "lonely")
    with pytest.raises(LockUnavailable):
        lock.try_acquire()
    assert not lock.still_held()
    lock.release()


def test_the_sqlite_lock_is_the_data_directorys_lock_file(tmp_path):
    first = scheduler_lock(f"sqlite:///{tmp_path / 'kaos.db'}", tmp_path, "kaos-scheduler 1@here")
    second = FileLock(tmp_path / "scheduler.lock", "kaos-scheduler 2@here")
    assert isinstance(first, FileLock) and first.path == str(tmp_path / "scheduler.lock")
    assert first.try_acquire() and first.still_held()
    assert not second.try_acquire()
    assert second.holder() == Holder("kaos-scheduler 1@here", None)
    first.release()
    assert second.try_acquire() and first.holder().identity == "kaos-scheduler 2@here"
    second.release()


class FakeLock:
    """A lock whose answers a test sets."""

    def __init__(self, identity="me"):
        self.identity = identity
        self.free = True
        self.held = False
        self.unavailable = None
        self.holder_seen = Holder("other", 0.5)

    def try_acquire(self):
        if self.unavailable:
            raise LockUnavailable(self.unavailable)
        self.held = self.held or self.free
        return self.held

    def still_held(self):
        return self.held

    def holder(self):
        return self.holder_seen

    def release(self):
        self.held = False


def test_leadership_leads_stands_by_and_says_why_no_one_leads():
    now = [1000.0]
    lock = FakeLock()
    lock.free = False
    leadership = Leadership(lock, clock=lambda: now[0])
    assert not leadership.leading()
    assert leadership.status() == {"role": "standby", "identity": "me", "leader": "other", "no_leader_since": None,
                                   "no_leader_reason": None}

    lock.holder_seen = Holder("other", 40.0)  # a leader that has not checked its lock for 40 s: stuck
    assert not leadership.leading()
    assert leadership.status()["no_leader_since"] == 960.0
    assert leadership.status()["no_leader_reason"] == "the leader other has not checked its lock for 40 s"

    lock.unavailable = "OperationalError: connection refused"
    now[0] = 1001.0
    assert not leadership.leading()
    status = leadership.status()
    assert status["leader"] is None and status["no_leader_since"] == 960.0
    assert status["no_leader_reason"] == "the database does not answer (OperationalError: connection refused)"

    lock.unavailable, lock.free = None, True
    assert leadership.leading() and leadership.leading()
    assert leadership.status() == {"role": "leader", "identity": "me", "leader": "me", "no_leader_since": None,
                                   "no_leader_reason": None}

    lock.held, lock.free, lock.holder_seen = False, False, Holder(None, None)  # its session dropped
    now[0] = 1002.0
    assert not leadership.leading()
    status = leadership.status()
    assert status["role"] == "standby" and status["leader"] is None and status["no_leader_since"] == 1002.0
    assert "lost the scheduler lock" in status["no_leader_reason"]


def _run_dir(tmp_path, role):
    run = tmp_path / "run"
    run.mkdir()
    parts = {name: {"state": "up", "pid": 1, "restarts": 0, "last_exit": None, "restart_at": None,
                    "gave_up": False, "since": 1.0} for name in part_status.PART_NAMES}
    part_status.write_status(run / part_status.STATUS_FILE, {"supervisor": 1, "parts": parts})
    part_status.write_heartbeat(run / part_status.HEARTBEAT_FILE, role)
    return run


def test_health_of_a_standby_is_up_with_its_leader(tmp_path):
    run = _run_dir(tmp_path, {"role": "standby", "identity": "me", "leader": "kaos-scheduler 9@b 127.0.0.1:2",
                              "no_leader_since": None, "no_leader_reason": None})
    verdict = part_status.evaluate(run)
    assert verdict.healthy, verdict
    scheduler = verdict.parts["scheduler"]
    assert scheduler["state"] == "up" and scheduler["role"] == "standby"
    assert scheduler["leader"] == "kaos-scheduler 9@b 127.0.0.1:2"


def test_health_is_unhealthy_once_no_scheduler_has_led_for_the_takeover_bound(tmp_path):
    since = time.time() - part_status.NO_LEADER_SECONDS - 5
    run = _run_dir(tmp_path, {"role": "standby", "identity": "me", "leader": None, "no_leader_since": since,
                              "no_leader_reason": "the database does not answer (OperationalError: refused)"})
    verdict = part_status.evaluate(run)
    assert not verdict.healthy and verdict.part == "scheduler"
    assert verdict.message.startswith("The kaos backend's scheduler is down (standing by, and no replica's "
                                      "scheduler has led for 2"), verdict.message
    assert verdict.message.endswith("s: the database does not answer (OperationalError: refused))")


def test_health_within_the_takeover_bound_and_of_a_leader(tmp_path):
    recent = _run_dir(tmp_path, {"role": "standby", "leader": None, "no_leader_since": time.time() - 3,
                                 "no_leader_reason": "lost"})
    assert part_status.evaluate(recent).healthy
    heartbeat = recent / part_status.HEARTBEAT_FILE
    part_status.write_heartbeat(heartbeat, {"role": "leader", "leader": "me"})
    verdict = part_status.evaluate(recent)
    assert verdict.healthy and verdict.parts["scheduler"]["role"] == "leader"
    assert verdict.parts["scheduler"]["leader"] == "me"
    before = heartbeat.stat().st_mtime_ns
    os.utime(heartbeat, ns=(before - 10 ** 9, before - 10 ** 9))
    part_status.write_heartbeat(heartbeat, {"role": "standby"}, changed=False)  # touched only
    assert json.loads(heartbeat.read_text()) == {"role": "leader", "leader": "me"}
    assert heartbeat.stat().st_mtime_ns >= before
