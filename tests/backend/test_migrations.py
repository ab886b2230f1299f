"""Schema migrations: empty, pre-migration (create_all) and current databases reach head; concurrent starts migrate
once; the models and the migrations agree; a real backend starts on a data directory made before migrations.
SQLite files and a throwaway PostgreSQL alike."""
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, select, text

from kaos_backend.db import Database
from kaos_backend.migrations import (BASELINE, SchemaError, alembic_config, current_revision, head_revision,
                                     locked_transaction)
from kaos_backend.models import Base, Endpoint, Job, Partition, Workspace
from tests.support.backend import BackendProcess, free_port

EVERY_REVISION = ["0001_baseline", "0002_partition_reason", "0003_endpoint_socket", "0004_endpoint_host",
                  "0005_endpoint_started_at", "0006_artifact_tokens", "0007_notebooks", "0008_pipeline_hold",
                  "0009_pipeline_deployed_at"]
WAIT_LIMIT = 60.0  # a bound against hanging, never a speed claim
# the columns added after 0002 (whose column is below)
ADDED_BY_MIGRATIONS = [("endpoints", "socket"), ("endpoints", "host"), ("endpoints", "started_at"),
                       ("train_pipelines", "held_until"), ("train_pipelines", "deployed_at")]
TABLES_ADDED_BY_MIGRATIONS = ["artifact_tokens", "notebooks"]


def schema_before_migrations(with_partition_reason: bool) -> MetaData:
    """What `create_all` made before kaos had migrations: the models of commit 509d747 (the current models less
    `partitions.reason`, the columns of ADDED_BY_MIGRATIONS and the tables of TABLES_ADDED_BY_MIGRATIONS) or of
    91a62bd (the current ones less those)."""
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        if table.name not in TABLES_ADDED_BY_MIGRATIONS:
            table.to_metadata(metadata)
    for table, column in ADDED_BY_MIGRATIONS:
        metadata.tables[table]._columns.remove(metadata.tables[table].c[column])
    if not with_partition_reason:
        partitions = metadata.tables["partitions"]
        partitions._columns.remove(partitions.c.reason)
    return metadata


def make_database_before_migrations(url: str, with_partition_reason: bool = False) -> None:
    """A database as kaos left it before migrations (WAL, create_all), with a workspace, a finished train job and
    its partition."""
    metadata = schema_before_migrations(with_partition_reason)
    database = Database(url, create_tables=False)
    if database.is_sqlite:
        with database.engine.connect() as connection:
            connection.connection.driver_connection.execute("PRAGMA journal_mode=WAL")
    metadata.create_all(database.engine)
    now = datetime.now(timezone.utc)
    with database.engine.begin() as connection:
        workspaces, jobs, partitions = (metadata.tables[name] for name in ("workspaces", "jobs", "partitions"))
        connection.execute(workspaces.insert().values(id=1, name="old", user="tester", created_at=now))
        connection.execute(jobs.insert().values(
            id="a" * 32, workspace_id=1, kind="train", state="JOB_SUCCESS", desired="run", user="tester",
            created_at=now, started_at=now, finished_at=now, branch="aaaaa_bbbbb", parallelism=1))
        connection.execute(partitions.insert().values(
            id=1, job_id="a" * 32, index=0, model_id="aaaaa_bbbbb:abcdef", state="JOB_SUCCESS", has_model=True,
            metrics={"accuracy": 0.9}))
        for name, port in (("serve-old-abcdef", 40123), ("serve-old-fedcba", None)):  # running; backing off
            state = {"pid": 4242, "started": 1700000000.5} if port else None  # the controller's fact, in there
            connection.execute(metadata.tables["endpoints"].insert().values(
                name=name, workspace_id=1, user="tester", state="PIPELINE_RUNNING", desired="run", port=port,
                failures=0, restarts=0, created_at=now, executor_state=state))
    database.dispose()


def revision_of(database: Database) -> str:
    with database.engine.connect() as connection:
        return current_revision(connection)


def schema_differences(database: Database, metadata: MetaData) -> list:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_an_empty_database_gets_every_revision(database_url):
    database = Database(database_url, create_tables=False)
    assert database.migrate() == EVERY_REVISION
    assert revision_of(database) == head_revision() == EVERY_REVISION[-1]
    assert set(inspect(database.engine).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    database.dispose()


@pytest.mark.parametrize("with_partition_reason", [False, True], ids=["509d747", "91a62bd"])
def test_a_database_made_before_migrations_is_stamped_and_upgraded(database_url, with_partition_reason):
    make_database_before_migrations(database_url, with_partition_reason)
    database = Database(database_url, create_tables=False)
    assert database.migrate() == EVERY_REVISION[1:]  # the baseline is stamped, not run
    assert revision_of(database) == head_revision()
    with database.session_scope() as session:
        assert session.scalars(select(Workspace.name)).all() == ["old"]
        assert session.get(Job, "a" * 32).state == "JOB_SUCCESS"
        partition = session.scalar(select(Partition))
        assert (partition.model_id, partition.metrics, partition.reason) == ("aaaaa_bbbbb:abcdef",
                                                                             {"accuracy": 0.9}, None)
        partition.reason = "exit code 0"
    with database.read_scope() as session:
        assert session.scalar(select(Partition.reason)) == "exit code 0"
        # the local executor's endpoints listened on the loopback interface: their address is now on the row
        assert dict(session.execute(select(Endpoint.name, Endpoint.host)).all()) == {
            "serve-old-abcdef": "127.0.0.1", "serve-old-fedcba": None}
        # the time of its start left the executor's state for a column of its own
        running = session.get(Endpoint, "serve-old-abcdef")
        assert running.executor_state == {"pid": 4242}
        started = running.started_at
        assert (started if started.tzinfo else started.replace(tzinfo=timezone.utc)).timestamp() == 1700000000.5
        assert session.get(Endpoint, "serve-old-fedcba").started_at is None
    assert schema_differences(database, Base.metadata) == []
    database.dispose()


def test_the_constructor_migrates(database_url):
    make_database_before_migrations(database_url)
    database = Database(database_url)
    assert revision_of(database) == head_revision()
    database.dispose()


def test_an_up_to_date_database_is_left_alone(database_url):
    database = Database(database_url)
    with database.session_scope() as session:
        session.add(Workspace(name="kept", user="tester"))
    before = _schema_fingerprint(database)
    assert database.migrate() == []
    assert Database(database_url, create_tables=False).migrate() == []
    assert _schema_fingerprint(database) == before
    with database.read_scope() as session:
        assert session.scalars(select(Workspace.name)).all() == ["kept"]
    database.dispose()


def _schema_fingerprint(database: Database):
    """Something every DDL statement changes: SQLite's schema cookie; PostgreSQL's catalog rows of the tables."""
    with database.engine.connect() as connection:
        if database.is_sqlite:
            return connection.exec_driver_sql("PRAGMA schema_version").scalar()
        return connection.execute(text("SELECT array_agg(xmin::text || relname ORDER BY relname) FROM pg_class "
                                       "WHERE relnamespace = 'public'::regnamespace")).scalar()


MIGRATE_SCRIPT = """
import json, sys
from kaos_backend.db import Database
database = Database(sys.argv[1], create_tables=False)
print("ready", flush=True)
print(json.dumps(database.migrate()), flush=True)
"""


def test_concurrent_starts_migrate_once(database_url):
    """Two processes start on one empty database while the migration lock is taken: once it is free, one of
    them migrates and the other waits for it, then finds the database at head."""
    holder = Database(database_url, create_tables=False)
    if holder.is_sqlite:  # as `migrate()` does first; then hold the write lock
        with holder.engine.connect() as connection:
            connection.connection.driver_connection.execute("PRAGMA journal_mode=WAL")
    starts = []
    with locked_transaction(holder.engine):
        for _ in range(2):
            starts.append(subprocess.Popen([sys.executable, "-c", MIGRATE_SCRIPT, database_url],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for start in starts:
            assert _read_line(start) == "ready"
        _wait_until_both_wait(holder)
    outputs = []
    for start in starts:
        out, err = start.communicate(timeout=WAIT_LIMIT)
        assert start.returncode == 0, err
        outputs.append(json.loads(out))
    assert sorted(outputs) == [[], EVERY_REVISION], outputs
    assert revision_of(holder) == head_revision()
    holder.dispose()


def _read_line(process: subprocess.Popen) -> str:
    line = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(WAIT_LIMIT)
    assert line, "the process did not get ready"
    return line[0].strip()


def _wait_until_both_wait(holder: Database) -> None:
    """PostgreSQL shows the two waiters on the advisory lock; SQLite's busy wait shows nowhere, so give the two
    processes a moment to reach it (the outcome asserted is the same either way)."""
    if holder.is_sqlite:
        time.sleep(1.0)
        return
    deadline = time.monotonic() + WAIT_LIMIT
    with holder.engine.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                              "AND NOT granted")).scalar()
            connection.rollback()
            if waiting == 2:
                return
            time.sleep(0.05)
    raise AssertionError("the two processes never waited for the migration lock")


def test_models_and_migrations_agree(database_url):
    """A change to kaos_backend/models.py needs a migration: `python -m kaos_backend.migrations revision
    --autogenerate --rev-id 000N_<what> -m <what>` (see kaos_backend/migrations/__main__.py) writes a draft."""
    database = Database(database_url)
    assert schema_differences(database, Base.metadata) == [], "models.py and the migrations disagree"
    changed = schema_differences(database, _with_extra_column(Base.metadata))
    assert [difference[0] for difference in changed] == ["add_column"]  # the comparison does notice a change
    database.dispose()


def _with_extra_column(metadata: MetaData) -> MetaData:
    copy = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(copy)
    copy.tables["jobs"].append_column(Column("retries", Integer, nullable=True))
    return copy


def test_the_baseline_is_the_schema_before_migrations(database_url):
    database = Database(database_url, create_tables=False)
    with locked_transaction(database.engine) as connection:
        command.upgrade(alembic_config(connection), BASELINE)
    assert schema_differences(database, schema_before_migrations(with_partition_reason=False)) == []
    database.dispose()


def test_a_database_from_a_newer_kaos_is_refused(database_url):
    database = Database(database_url)
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    with pytest.raises(SchemaError, match="0099_from_the_future"):
        Database(database_url)
    assert revision_of(database) == "0099_from_the_future"
    database.dispose()


def test_a_partial_schema_is_refused(database_url):
    database = Database(database_url, create_tables=False)
    Base.metadata.tables["workspaces"].create(database.engine)
    with pytest.raises(SchemaError, match="missing: blobs, bundles, endpoints"):
        database.migrate()
    assert set(inspect(database.engine).get_table_names()) == {"workspaces"}  # nothing half-done
    database.dispose()


def test_a_backend_starts_on_a_data_directory_made_before_migrations(tmp_path):
    data_dir = tmp_path / "data"
    make_database_before_migrations(f"sqlite:///{data_dir / 'kaos.db'}")
    backend = BackendProcess(data_dir).start()
    try:
        listing = backend.get("train/old", timeout=30)
        assert listing.status_code == 200, listing.text
        training = listing.json()["response"]["training"]
        assert [(job["job_id"], job["state"]) for job in training] == [("a" * 32, "JOB_SUCCESS")], training
        info = backend.get(f"train/old/{'a' * 32}", timeout=30)
        assert info.status_code == 200, info.text
        assert [p["output"]["model_id"] for p in info.json()["response"]["partitions"]] == ["aaaaa_bbbbb:abcdef"]
    finally:
        backend.stop()
    database = Database(f"sqlite:///{data_dir / 'kaos.db'}", create_tables=False)
    assert revision_of(database) == head_revision()
    database.dispose()


def test_a_backend_on_a_database_it_cannot_upgrade_says_why_in_one_line(tmp_path):
    data_dir = tmp_path / "data"
    database = Database(f"sqlite:///{data_dir / 'kaos.db'}")
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    database.dispose()
    result = subprocess.run([sys.executable, "-m", "kaos_backend", "serve", "--port", str(free_port()),
                             "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=WAIT_LIMIT,
                            env=dict(os.environ, KAOS_TOKEN="test-token"))
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error - ")]
    assert result.returncode == 1, result
    assert "Traceback" not in result.stdout + result.stderr, result
    assert len(lines) == 1 and "0099_from_the_future" in lines[0], result
