"""The revisions, one file each, named by revision id (`0003_<what>.py`); alembic reads them by path."""
