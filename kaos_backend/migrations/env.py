"""Alembic's environment for kaos's migrations.

`upgrade_to_head` hands it a connection already inside the locked migration transaction (config.attributes
["connection"]); alembic's own commands (`python -m kaos_backend.migrations ...`) get one here, from the URL in
the configuration, locked the same way. Batch mode everywhere: SQLite alters a table by rebuilding it.
"""
from alembic import context

from kaos_backend.models import Base

config = context.config
OPTIONS = dict(target_metadata=Base.metadata, render_as_batch=True, compare_type=True, transactional_ddl=True,
               on_version_apply=config.attributes.get("on_version_apply") or ())


def run_with(connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():  # inside the caller's transaction: no transaction of its own
        context.run_migrations()


if context.is_offline_mode():  # --sql: print the statements
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run_with(config.attributes["connection"])
else:
    from kaos_backend.db import Database
    from kaos_backend.migrations.upgrade import locked_transaction

    database = Database(config.get_main_option("sqlalchemy.url"), create_tables=False)
    try:
        with locked_transaction(database.engine) as connection:
            run_with(connection)
    finally:
        database.dispose()
