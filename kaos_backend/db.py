"""The SQL database: one SQLAlchemy engine, a session factory and `session_scope()`."""
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from kaos_backend.models import Base

SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """`Database(url)` connects and creates the tables; SQLite gets WAL, a busy timeout and foreign keys."""

    def __init__(self, url: str, create_tables: bool = True):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine = _sqlite_engine(self.url)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, future=True)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        if create_tables:
            self.create_tables()

    def create_tables(self) -> None:
        if self.is_sqlite:  # persistent in the database file; outside any transaction
            raw = self.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA journal_mode=WAL")
            finally:
                raw.close()
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back when it raises."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self, close: bool = True) -> None:
        """Drop pooled connections; `close=False` in a forked child leaves the parent's connections alone."""
        self.engine.dispose(close=close)


def _sqlite_engine(url) -> Engine:
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Let SQLAlchemy, not the driver, open transactions (see "begin" below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes never fails with
        # "database is locked" when another writer got there first; it waits (busy_timeout) instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
