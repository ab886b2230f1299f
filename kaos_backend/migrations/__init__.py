"""The schema's history as Alembic migrations (versions/), and `upgrade_to_head(engine)` that applies them.

A model change in kaos_backend/models.py comes with a new revision in versions/ (tests/backend/test_migrations.py
fails until the two agree); `python -m kaos_backend.migrations --help` runs alembic's commands on them.
"""
import logging

# Alembic announces its seven autogenerate plugins at INFO when first imported: noise in every backend start's log.
if logging.getLogger("alembic.runtime.plugins").level == logging.NOTSET:
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from kaos_backend.migrations.upgrade import (  # noqa: E402  (after the logger's level)
    BASELINE, SchemaError, alembic_config, current_revision, head_revision, locked_transaction, upgrade_to_head)

__all__ = ["BASELINE", "SchemaError", "alembic_config", "current_revision", "head_revision", "locked_transaction",
           "upgrade_to_head"]
