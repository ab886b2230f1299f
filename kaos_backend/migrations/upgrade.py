"""Bring a database's schema to the newest migration, one process at a time.

A database is one of three kinds: empty (every revision runs), made by kaos before migrations existed (the
tables of `Base.metadata.create_all`, no `alembic_version`: stamped with the baseline, then upgraded), or
versioned (upgraded from its revision; at head, left alone). The check and the upgrade run in one transaction
under a lock, so two processes starting at once never both migrate: the second waits, then finds head.
SQLite: the database's write lock (`BEGIN IMMEDIATE`). PostgreSQL: a transaction-scoped advisory lock. Both run
DDL inside the transaction, so a migration that fails leaves the schema as it was.
"""
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent
BASELINE = "0001_baseline"
# The tables of the baseline revision: what `create_all` made before kaos had migrations.
BASELINE_TABLES = frozenset({"workspaces", "blobs", "bundles", "train_pipelines", "jobs", "partitions",
                             "endpoints"})
VERSION_TABLE = "alembic_version"
# The key of `pg_advisory_xact_lock`: a constant no other part of kaos uses ("kaos" in ASCII).
POSTGRES_LOCK_KEY = 0x6B616F73

log = logging.getLogger(__name__)


class SchemaError(RuntimeError):
    """The database cannot be brought to this kaos's schema (a revision it does not know, a partial schema)."""


def alembic_config(connection: Connection = None) -> Config:
    """Alembic's configuration, in code: the scripts of this package; `connection` is the one env.py uses."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("file_template", "%%(rev)s")  # revision files are named by their id: 0002_<what>
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision id of this kaos's migrations."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str:
    """The revision id recorded in the database (None when it has no `alembic_version`)."""
    from alembic.runtime.migration import MigrationContext
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_to_head(engine: Engine) -> List[str]:
    """Upgrade the database behind `engine` to head; returns the revision ids this call applied, oldest first
    (empty when another process had done it, or nothing was due). Raises `SchemaError`."""
    with locked_transaction(engine) as connection:
        applied = _upgrade(connection)
    if applied:
        log.info("Database schema upgraded to %s (applied: %s)", applied[-1], ", ".join(applied))
    return applied


@contextmanager
def locked_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migration lock, committed when the block ends. `engine` is a
    `kaos_backend.db.Database`'s (on SQLite its transactions begin IMMEDIATE: that is the lock).

    SQLite: foreign key enforcement is off for the transaction (a table that batch mode rebuilds is dropped and
    renamed, and with enforcement on the drop would cascade into the rows that reference it), and every foreign
    key is checked before commit instead."""
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:  # a PRAGMA that only works outside a transaction: on the driver's connection, before BEGIN
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():  # SQLite: BEGIN IMMEDIATE (kaos_backend.db), the write lock
                if engine.dialect.name == "postgresql":
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_LOCK_KEY})
                yield connection
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                _enforce_foreign_keys_again(connection)


def _enforce_foreign_keys_again(connection: Connection) -> None:
    """Before the connection goes back to the pool; one that cannot be fixed is never used again."""
    try:
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")
    except Exception:
        connection.invalidate()
        raise


def _upgrade(connection: Connection) -> List[str]:
    config = alembic_config(connection)
    tables = set(inspect(connection).get_table_names())
    if VERSION_TABLE not in tables:
        present = BASELINE_TABLES & tables
        if present == BASELINE_TABLES:
            log.info("Database made before migrations: stamping it with %s", BASELINE)
            command.stamp(config, BASELINE)
        elif present:
            raise SchemaError(f"The database has some of kaos's tables but not all (missing: "
                              f"{', '.join(sorted(BASELINE_TABLES - present))}): it cannot be upgraded")
    applied: List[str] = []

    def record(step, **_):
        if not step.is_stamp:
            applied.append(step.up_revision_id)

    config.attributes["on_version_apply"] = record
    try:
        command.upgrade(config, "head")
    except CommandError as error:  # e.g. a revision from a newer kaos
        raise SchemaError(f"The database's schema (revision {current_revision(connection)}) cannot be upgraded "
                          f"by this kaos (head {head_revision()}): {error}") from None
    return applied


def _check_foreign_keys(connection: Connection) -> None:
    problems = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
    if problems:
        raise SchemaError(f"The migration would leave rows whose foreign keys point nowhere: {problems[:5]}")
