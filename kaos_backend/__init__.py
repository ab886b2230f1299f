"""kaos backend: the REST API, the SQL state, the blob store and the scheduler of the kaos platform."""

__version__ = "2.0.0.dev0"
