"""The scheduler lock: whoever holds it is the one scheduler that acts (kaos_backend.leadership).

- PostgreSQL (`PostgresLock`): a session-level advisory lock (`pg_try_advisory_lock`) taken on a connection of
  its own, kept open while the scheduler leads. The lock lives as long as that session: it is released by the
  server when the holder's process dies (its socket closes) or when its connection is found dead, so it cannot
  outlive a crashed leader, and no file or clock is involved. Across replicas on any number of machines.
- SQLite (`FileLock`): an `flock` on `<data dir>/scheduler.lock`, the lock kaos always used. One backend per data
  directory is what SQLite supports; a second one started on the same data directory stands by.

Both write down who holds them (the holder's identity: application_name of the session, or the lock file's
text), so a replica standing by can say which one leads.

The timing knobs of the PostgreSQL connection, and why:

- The server drops the session of a holder that went silent without closing its socket (machine off, network
  cut): TCP keepalives after SERVER_KEEPALIVE_IDLE s idle, every SERVER_KEEPALIVE_INTERVAL s, SERVER_KEEPALIVE_COUNT
  of them (5 + 2 * 3 = 11 s), and `tcp_user_timeout` SERVER_USER_TIMEOUT_MS for data it sent that is never
  acknowledged (the answer to the leader's check). With the standby's RETRY_SECONDS that is a takeover within
  TAKEOVER_SECONDS (15 s). A holder killed by a signal closes its socket at once: the lock is free at once.
- The holder gives the lock up sooner than the server can give it away: it checks its session before every tick,
  and its own side of the connection gives up on a server that does not acknowledge within
  CLIENT_USER_TIMEOUT_MS (5 s < 10 s); an idle standby's connection is found dead by keepalives (3 + 1 * 2 s).
- `idle_session_timeout` is off for the lock's session (a server-wide setting must not end a leadership).
A connection pooler in transaction mode (PgBouncer) cannot carry a session lock: point the backend at
PostgreSQL itself, or at a pooler in session mode.
"""
import os
from typing import NamedTuple, Optional

from kaos_backend.file_locks import try_lock

# "kaosSCHD" in ASCII: no other lock of kaos uses it (migrations: kaos_backend.migrations.upgrade.POSTGRES_LOCK_KEY).
SCHEDULER_LOCK_KEY = int.from_bytes(b"kaosSCHD", "big")
TAKEOVER_SECONDS = 15.0
CONNECT_TIMEOUT_SECONDS = 5
CLIENT_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 3, "keepalives_interval": 1, "keepalives_count": 2}
CLIENT_USER_TIMEOUT_MS = 5000
SERVER_KEEPALIVE_IDLE = 5
SERVER_KEEPALIVE_INTERVAL = 2
SERVER_KEEPALIVE_COUNT = 3
SERVER_USER_TIMEOUT_MS = 10000
SESSION_SETTINGS = (("tcp_keepalives_idle", SERVER_KEEPALIVE_IDLE),
                    ("tcp_keepalives_interval", SERVER_KEEPALIVE_INTERVAL),
                    ("tcp_keepalives_count", SERVER_KEEPALIVE_COUNT),
                    ("tcp_user_timeout", SERVER_USER_TIMEOUT_MS),
                    ("idle_session_timeout", 0))
MAX_APPLICATION_NAME = 63  # PostgreSQL's NAMEDATALEN - 1: a longer one is cut


class LockUnavailable(RuntimeError):
    """Whether the lock is free cannot be told now (the database does not answer); the message says why."""


class Holder(NamedTuple):
    """Who holds the lock: `identity` (None when it cannot be read) and `idle_seconds` since its session last
    ran a statement (its check before each tick; None when unknown)."""
    identity: Optional[str]
    idle_seconds: Optional[float]


class FileLock:
    """The SQLite lock: an exclusive `flock` on `path`, its holder's identity written in the file."""

    def __init__(self, path, identity: str):
        self.path = str(path)
        self.identity = identity
        self._fd: Optional[int] = None

    def try_acquire(self) -> bool:
        """True when this process now holds the lock (or did already); False when another does."""
        if self._fd is not None:
            return True
        fd = try_lock(self.path)  # not inherited by what the scheduler starts
        if fd is None:
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, self.identity.encode("utf-8", "replace"), 0)
        self._fd = fd
        return True

    def still_held(self) -> bool:
        """An flock stays with its process: held until released."""
        return self._fd is not None

    def holder(self) -> Holder:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                return Holder(handle.read(200).strip() or None, None)
        except OSError:
            return Holder(None, None)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PostgresLock:
    """The PostgreSQL lock: `pg_try_advisory_lock(SCHEDULER_LOCK_KEY)` on a dedicated connection to
    `database_url` (a SQLAlchemy URL), whose application_name is the holder's identity."""

    def __init__(self, database_url: str, identity: str):
        self.database_url = database_url
        self.identity = identity[:MAX_APPLICATION_NAME]
        self._engine = None
        self._connection = None  # a SQLAlchemy Connection in autocommit, while connected
        self._held = False

    def _connect(self):
        if self._connection is not None:
            return self._connection
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError
        from sqlalchemy.pool import NullPool
        if self._engine is None:
            connect_args = dict(CLIENT_KEEPALIVE, application_name=self.identity,
                                connect_timeout=CONNECT_TIMEOUT_SECONDS, tcp_user_timeout=CLIENT_USER_TIMEOUT_MS)
            self._engine = create_engine(self.database_url, poolclass=NullPool, connect_args=connect_args,
                                         isolation_level="AUTOCOMMIT")
        connection = self._engine.connect()
        try:
            for name, value in SESSION_SETTINGS:
                try:
                    connection.execute(text(f"SET {name} = {int(value)}"))
                except DBAPIError as error:  # a server too old for the setting: it goes without
                    if error.connection_invalidated:
                        raise
        except Exception:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _run(self, statement: str, **params):
        """One statement on the lock's connection; a broken connection is dropped (LockUnavailable)."""
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError
        try:
            return self._connect().execute(text(statement), params)
        except SQLAlchemyError as error:
            self._drop()
            first = str(getattr(error, "orig", None) or error).strip().splitlines()
            raise LockUnavailable(f"{type(getattr(error, 'orig', None) or error).__name__}: "
                                  f"{first[0] if first else 'no answer'}") from None

    def try_acquire(self) -> bool:
        """True when this session now holds the lock (or did already); False when another session does.
        LockUnavailable when the database cannot be asked."""
        if not self._held:
            self._held = bool(self._run("SELECT pg_try_advisory_lock(:key)", key=SCHEDULER_LOCK_KEY).scalar())
        return self._held

    def still_held(self) -> bool:
        """Is the session that took the lock still there? (A session lock goes only with its session.) False
        once its connection is found broken: the server has ended the session, or soon will."""
        if not self._held:
            return False
        try:
            self._run("SELECT 1")
        except LockUnavailable:
            return False
        return True

    def holder(self) -> Holder:
        """The session holding the lock in this database, as pg_locks and pg_stat_activity show it (Holder(None,
        None) when no session holds it, or it cannot be seen). LockUnavailable when the database cannot be asked."""
        row = self._run(
            "SELECT a.application_name, EXTRACT(EPOCH FROM (clock_timestamp() - a.state_change)) "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid) "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            high=SCHEDULER_LOCK_KEY >> 32, low=SCHEDULER_LOCK_KEY & 0xFFFFFFFF).first()
        if row is None:
            return Holder(None, None)
        return Holder(row[0] or None, float(row[1]) if row[1] is not None else None)

    def release(self) -> None:
        """Give the lock up at once (the session's end would too, a moment after its connection closes), and the
        connection with it."""
        if self._held and self._connection is not None:
            try:
                self._run("SELECT pg_advisory_unlock(:key)", key=SCHEDULER_LOCK_KEY)
            except LockUnavailable:
                pass
        self._drop()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _drop(self) -> None:
        self._held = False
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()  # never back to a pool; closes the driver's connection
            except Exception:  # noqa: BLE001 - a broken connection may fail to close: it is gone either way
                pass


def scheduler_lock(database_url: str, data_dir, identity: str):
    """The lock for a backend: PostgresLock for a PostgreSQL database, FileLock in `data_dir` otherwise."""
    from sqlalchemy.engine import make_url
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresLock(database_url, identity)
    return FileLock(os.path.join(str(data_dir), "scheduler.lock"), identity)
