"""Where a workload listens: `lookup(name)` (a blocking SQL query, run in a thread) behind a bounded cache.

The cache keeps at most `size` names, least recently used dropped first; an address is trusted for
`found_seconds`, "no such workload" for `missing_seconds` (a few seconds: an attacker's stream of unknown names
costs one lookup each and then falls out of the cache; a new endpoint is found within that time). A running
endpoint's address past its time is still answered while one lookup refreshes it (stale-while-revalidate):
the requests in flight to a busy endpoint do not all wait for a query each second. A refresh that fails drops the
entry, so the next request looks it up itself and reports the failure.
"""
import asyncio
import os
import time
from collections import OrderedDict
from typing import Callable, Dict, Optional, Tuple

# (state[: reason], host, port, unix socket path or None, build job id or None), as the endpoint's executor
# returned them from `start` and its row stores them: port None while not running (a row without a host or a port is
# not running yet, whatever its state says: there is nowhere to send a request, nor a Host to name); the socket path
# only while running and only once its file exists (a bundle that ignores KAOS_SOCKET is reached at host:port); the
# id of its build job while that build has not succeeded (it waits for its image, or the build failed: the build's
# log, not the workload's, says why)
Address = Tuple[str, Optional[str], Optional[int], Optional[str], Optional[str]]
UNKNOWN = object()
MAX_NAME = 80  # Endpoint.name's column: a longer name is no endpoint's, and is not looked up


class Endpoints:
    """`await get(name)` -> Address or None (unknown or killed); concurrent lookups of one name share a query."""

    def __init__(self, lookup: Callable[[str], Optional[Address]], loop: asyncio.AbstractEventLoop, size: int = 1024,
                 found_seconds: float = 1.0, missing_seconds: float = 3.0):
        self.lookup = lookup
        self.loop = loop
        self.size = size
        self.found_seconds = found_seconds
        self.missing_seconds = missing_seconds
        self.cache: "OrderedDict[str, Tuple[float, Optional[Address]]]" = OrderedDict()  # name -> (expiry, answer)
        self.pending: Dict[str, asyncio.Future] = {}

    def cached(self, name: str):
        """The answer if known (a found address past its time too, while it is refreshed), else UNKNOWN."""
        entry = self.cache.get(name)
        if entry is None:
            return UNKNOWN
        expiry, address = entry
        if expiry < time.monotonic():
            if address is None or address[2] is None:  # not running: its state is the answer, so it is fresh
                del self.cache[name]
                return UNKNOWN
            self._refresh(name)
        self.cache.move_to_end(name)
        return address

    def _refresh(self, name: str) -> None:
        if name in self.pending:
            return
        future = self.loop.run_in_executor(None, self.lookup, name)
        self.pending[name] = future
        future.add_done_callback(lambda done: self._refreshed(name, done))

    def _refreshed(self, name: str, done: asyncio.Future) -> None:
        if self.pending.get(name) is done:
            del self.pending[name]
        if done.cancelled() or done.exception() is not None:
            self.cache.pop(name, None)
        else:
            self._keep(name, done.result())

    def forget(self, name: str) -> None:
        self.cache.pop(name, None)

    def _keep(self, name: str, address: Optional[Address]) -> None:
        seconds = self.found_seconds if address is not None else self.missing_seconds
        self.cache[name] = (time.monotonic() + seconds, address)
        self.cache.move_to_end(name)
        while len(self.cache) > self.size:
            self.cache.popitem(last=False)

    async def get(self, name: str) -> Optional[Address]:
        """Raises what `lookup` raises (the database is down)."""
        if len(name) > MAX_NAME:
            return None
        entry = self.cached(name)
        if entry is not UNKNOWN:
            return entry
        future = self.pending.get(name)
        if future is not None:
            return await asyncio.shield(future)
        future = self.loop.run_in_executor(None, self.lookup, name)
        self.pending[name] = future
        try:
            address = await future
        finally:
            self.pending.pop(name, None)
        self._keep(name, address)
        return address


def endpoint_lookup(database_url: str) -> Callable[[str], Optional[Address]]:
    """`lookup(name)` over SQL, read-only: (state, host, port, socket) of a live endpoint (see `Address`), None for
    an unknown or killed one. Plain SELECTs, outside the backend's write-locking transactions."""
    from sqlalchemy import create_engine, select
    from sqlalchemy.engine import make_url

    from kaos_backend.models import Endpoint, Job, Notebook

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, future=True, connect_args={"timeout": 30})
    else:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    query = select(Endpoint.state, Endpoint.desired, Endpoint.host, Endpoint.port, Endpoint.socket, Endpoint.reason,
                   Endpoint.build_job_id, Job.state.label("build_state")) \
        .outerjoin(Job, Job.id == Endpoint.build_job_id)
    notebooks = select(Notebook.state, Notebook.desired, Notebook.host, Notebook.port, Notebook.reason,
                       Notebook.build_job_id, Job.state.label("build_state")) \
        .outerjoin(Job, Job.id == Notebook.build_job_id)

    def lookup(name: str) -> Optional[Address]:
        if name.startswith("serve-"):
            statement = query.where(Endpoint.name == name)
        elif name.startswith("notebook-"):
            statement = notebooks.add_columns(Notebook.name).where(Notebook.name == name)  # listens on TCP only
        else:
            return None
        with engine.connect() as connection:
            row = connection.execute(statement).first()
        if row is None or row.desired == "kill":
            return None
        running = row.state == "PIPELINE_RUNNING" and bool(row.port) and bool(row.host)
        state = f"{row.state}: {row.reason}" if row.reason and not running else row.state
        path = getattr(row, "socket", None)
        socket = path if running and path and os.path.exists(path) else None
        building = row.build_job_id if not running and row.build_job_id and row.build_state != "JOB_SUCCESS" \
            else None
        return state, row.host, row.port if running else None, socket, building
    return lookup
