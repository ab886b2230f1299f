"""The schema's history as Alembic migrations (versions/), and `upgrade_to_head(engine)` that applies them.

A model change in kaos_backend/models.py comes with a new revision in versions/ (tests/backend/test_migrations.py
fails until the two agree); `python -m kaos_backend.migrations --help` runs alembic's commands on them.
"""
from kaos_backend.migrations.upgrade import (BASELINE, SchemaError, alembic_config, current_revision, head_revision,
                                             locked_transaction, upgrade_to_head)

__all__ = ["BASELINE", "SchemaError", "alembic_config", "current_revision", "head_revision", "locked_transaction",
           "upgrade_to_head"]
