"""The front's endpoint cache (endpoints.Endpoints): a found address past its time is answered while one lookup
refreshes it (the requests in flight to an endpoint do not each wait for a query every second); a failed refresh
drops the entry; "no such endpoint" simply expires. A stand-in clock: no wall-clock time is measured."""
import asyncio
import types

import pytest

from kaos_backend.front import endpoints as endpoints_module
from kaos_backend.front.endpoints import UNKNOWN, Endpoints

OLD = ("PIPELINE_RUNNING", "127.0.0.1", 8080, None)
NEW = ("PIPELINE_RUNNING", "127.0.0.1", 9090, None)


@pytest.fixture
def clock(monkeypatch):
    """The cache's clock only (the event loop keeps the real one)."""
    now = [100.0]
    monkeypatch.setattr(endpoints_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


class Lookup:
    def __init__(self, answer):
        self.answer = answer
        self.calls = 0

    def __call__(self, name):
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _settle(loop, cache):
    async def wait():
        while cache.pending:
            await asyncio.sleep(0.01)
    loop.run_until_complete(asyncio.wait_for(wait(), 10))


def test_a_stale_address_is_answered_while_one_lookup_refreshes_it(clock):
    loop, lookup = asyncio.new_event_loop(), Lookup(OLD)
    try:
        cache = Endpoints(lookup, loop, found_seconds=1.0)
        assert loop.run_until_complete(cache.get("serve-a-abcdef")) == OLD and lookup.calls == 1
        clock[0] += 5
        lookup.answer = NEW
        assert [cache.cached("serve-a-abcdef") for _ in range(8)] == [OLD] * 8  # eight requests in flight
        _settle(loop, cache)
        assert lookup.calls == 2 and cache.cached("serve-a-abcdef") == NEW
    finally:
        loop.close()


def test_a_failed_refresh_drops_the_entry(clock):
    loop, lookup = asyncio.new_event_loop(), Lookup(OLD)
    try:
        cache = Endpoints(lookup, loop, found_seconds=1.0)
        loop.run_until_complete(cache.get("serve-a-abcdef"))
        clock[0] += 5
        lookup.answer = OSError("the database is down")
        assert cache.cached("serve-a-abcdef") == OLD
        _settle(loop, cache)
        assert cache.cached("serve-a-abcdef") is UNKNOWN
    finally:
        loop.close()


def test_no_such_endpoint_expires(clock):
    loop, lookup = asyncio.new_event_loop(), Lookup(None)
    try:
        cache = Endpoints(lookup, loop, missing_seconds=3.0)
        assert loop.run_until_complete(cache.get("serve-b-abcdef")) is None
        assert cache.cached("serve-b-abcdef") is None
        clock[0] += 5
        assert cache.cached("serve-b-abcdef") is UNKNOWN and not cache.pending
    finally:
        loop.close()


def test_an_endpoint_not_running_is_looked_up_again_once_its_time_is_past(clock):
    """Its state (PIPELINE_STARTING, PIPELINE_FAILURE...) is what the client is answered: never a stale one."""
    loop, lookup = asyncio.new_event_loop(), Lookup(("PIPELINE_STARTING", "127.0.0.1", None, None))
    try:
        cache = Endpoints(lookup, loop, found_seconds=1.0)
        loop.run_until_complete(cache.get("serve-c-abcdef"))
        clock[0] += 5
        assert cache.cached("serve-c-abcdef") is UNKNOWN
    finally:
        loop.close()
