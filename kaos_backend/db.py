"""The SQL database: one SQLAlchemy engine, the write scope `session_scope()` and the read scope `read_scope()`.

SQLite (WAL): a write transaction is `BEGIN IMMEDIATE` (it takes the write lock up front, so a transaction that
reads and then writes waits its turn instead of failing with SQLITE_BUSY_SNAPSHOT); a read transaction is a
deferred `BEGIN` on a `query_only` connection, which reads the last committed state without ever waiting for a
writer. PostgreSQL: both are ordinary transactions, the read one `READ ONLY`.
"""
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY_OPTION = "kaos_read_only"  # an execution option: set on the engine behind `read_scope()`


class ReadOnlyTransactionError(RuntimeError):
    """Something tried to write inside `Database.read_scope()`: a bug in the caller, never a user's error."""


class Database:
    """`Database(url)` connects and brings the schema to the newest migration (`migrate()`); SQLite gets WAL, a
    busy timeout and foreign keys. `create_tables=False` connects only (the scheduler, after the API migrated)."""

    def __init__(self, url: str, create_tables: bool = True):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
            read_engine = self.engine.execution_options(**{READ_ONLY_OPTION: True})
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, future=True)
            read_engine = self.engine.execution_options(**{READ_ONLY_OPTION: True, "postgresql_readonly": True})
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(read_engine, expire_on_commit=False)
        event.listen(self.read_sessions, "before_flush", _refuse_flush)
        if create_tables:
            self.migrate()

    def migrate(self) -> List[str]:
        """Upgrade the schema to the newest migration, serialised against other processes doing the same.

        Returns the revision ids applied (empty when the database was up to date). Raises
        `kaos_backend.migrations.SchemaError` for a database this kaos cannot upgrade."""
        if self.is_sqlite:  # persistent in the database file; outside any transaction
            raw = self.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA query_only=OFF")  # a pooled connection may come from a read
                raw.info["query_only"] = False
                raw.cursor().execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
        from kaos_backend.migrations import upgrade_to_head  # alembic loads only where a schema may change
        return upgrade_to_head(self.engine)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session in one write transaction: committed when the block ends, rolled back when it raises."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_scope(self) -> Iterator[Session]:
        """A session in one read-only transaction, for look-ups and listings: it sees the last committed state
        and never waits for a writer (SQLite WAL). Nothing is ever committed: a flush of changes, a write
        statement, or changed objects left in the session at the end raise (`ReadOnlyTransactionError`, or the
        driver's read-only error for raw SQL). Loaded objects stay readable after the block."""
        session = self.read_sessions()
        try:
            yield session
            if session.new or session.dirty or session.deleted:
                raise ReadOnlyTransactionError("Changes were made inside a read-only transaction; use "
                                               "session_scope() to write")
        finally:
            session.close()  # ends the transaction without expiring what was loaded

    def dispose(self, close: bool = True) -> None:
        """Drop pooled connections; `close=False` in a forked child leaves the parent's connections alone."""
        self.engine.dispose(close=close)


def _refuse_flush(session, _flush_context, _instances) -> None:
    if session.new or session.dirty or session.deleted:
        raise ReadOnlyTransactionError("A flush of changes inside a read-only transaction; use session_scope() "
                                       "to write")


def _sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        # Let SQLAlchemy, not the driver, open transactions (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        record.info["query_only"] = False

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        read_only = bool(connection.get_execution_options().get(READ_ONLY_OPTION))
        info = connection.connection.info  # travels with the pooled DBAPI connection
        if info.get("query_only") != read_only:
            connection.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
            info["query_only"] = read_only
        # A read: deferred, a snapshot at its first SELECT; with WAL it never waits for the writer.
        # A write: IMMEDIATE takes the write lock up front, so a transaction that reads and then writes never fails
        # with "database is locked" when another writer got there first; it waits (busy_timeout) instead.
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
