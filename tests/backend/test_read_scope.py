"""`Database.read_scope()`: reads that never wait for a write transaction (SQLite WAL) and refuse to write."""
import sqlite3
import threading

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import DBAPIError

from kaos_backend.config import Config
from kaos_backend.db import ReadOnlyTransactionError
from kaos_backend.models import Workspace
from kaos_backend.services import Services

HOLD_LIMIT = 20.0  # how long the writer holds its transaction at most: a bound against hanging, not a speed claim


def test_reads_do_not_wait_for_a_write_transaction(tmp_path):
    """Another connection holds the write lock with an insert pending until the reads are done: the service's
    listings and look-ups complete meanwhile and see the last committed state, not the pending row."""
    path = tmp_path / "kaos.db"
    services = Services(Config.from_env({}, data_dir=tmp_path / "data", database_url=f"sqlite:///{path}"))
    services.workspaces.create("before")
    held, reads_done = threading.Event(), threading.Event()
    writer_outcome = {}

    def write():
        connection = sqlite3.connect(path, isolation_level=None, timeout=HOLD_LIMIT)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO workspaces (name, user, created_at) VALUES ('pending', 'w', "
                               "'2026-01-01 00:00:00')")
            held.set()
            writer_outcome["reads finished while held"] = reads_done.wait(HOLD_LIMIT)
            connection.execute("COMMIT")
        finally:
            connection.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert held.wait(HOLD_LIMIT), "the writer never took the write lock"
    try:
        seen = {
            "names": services.workspaces.names(),
            "info": services.workspaces.info("before").name,
            "train list": services.jobs.listing("before", "train"),
            "inspect": services.train.inspect("before")["image_state"],
            "serve list": services.inference.listing("before", "http://host"),
        }
    finally:
        reads_done.set()
        writer.join(HOLD_LIMIT + 5)
    assert writer_outcome == {"reads finished while held": True}
    assert seen == {"names": ["before"], "info": "before", "train list": [], "inspect": "none", "serve list": []}
    assert services.workspaces.names() == ["before", "pending"]  # committed once the reads were done
    services.dispose()


@pytest.fixture
def database(services):
    services.workspaces.create("ws", user="owner")
    return services.db


def test_a_flush_inside_a_read_scope_raises(database):
    with pytest.raises(ReadOnlyTransactionError):
        with database.read_scope() as session:
            session.add(Workspace(name="new", user="u"))
            session.flush()
    with pytest.raises(ReadOnlyTransactionError):  # autoflush before a query
        with database.read_scope() as session:
            session.add(Workspace(name="new", user="u"))
            session.scalars(select(Workspace)).all()
    assert _names(database) == ["ws"]


def test_changes_left_in_a_read_scope_raise_and_are_not_written(database):
    with pytest.raises(ReadOnlyTransactionError):
        with database.read_scope() as session:
            session.scalar(select(Workspace)).user = "changed"
    with pytest.raises(ReadOnlyTransactionError):
        with database.read_scope() as session:
            session.delete(session.scalar(select(Workspace)))
    with database.read_scope() as session:
        assert [(w.name, w.user) for w in session.scalars(select(Workspace))] == [("ws", "owner")]


def test_a_write_statement_inside_a_read_scope_raises(database):
    with pytest.raises(DBAPIError, match="(?i)read.?only"):
        with database.read_scope() as session:
            session.execute(insert(Workspace).values(name="raw", user="u", created_at=_any_time()))
    assert _names(database) == ["ws"]
    with database.session_scope() as session:  # the pooled connection writes again in a write scope
        session.add(Workspace(name="later", user="u"))
    assert _names(database) == ["later", "ws"]


def test_objects_read_stay_readable_after_the_scope(database):
    with database.read_scope() as session:
        workspace = session.scalar(select(Workspace))
    assert (workspace.name, workspace.user, workspace.created_at is not None) == ("ws", "owner", True)


def _names(database):
    with database.read_scope() as session:
        return sorted(session.scalars(select(Workspace.name)))


def _any_time():
    from datetime import datetime, timezone
    return datetime(2026, 1, 1, tzinfo=timezone.utc)
