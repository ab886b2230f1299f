"""The keep-alive pool's bounds (pool.Pool), on stand-in transports: per address, in all, and the idle time."""
import time

from kaos_backend.front.pool import Link, Pool


class Transport:
    """As a connection made with a Link protocol (upstream.Upstream's): the pool retargets the link, it never
    replaces the transport's protocol (uvloop would stop and start reading: two epoll changes)."""

    def __init__(self):
        self.closed = False
        self.link = Link(None)

    def is_closing(self):
        return self.closed

    @property
    def protocol(self):
        return self.link.target

    def get_protocol(self):
        return self.link

    def set_protocol(self, protocol):
        raise AssertionError("the pool changes the link's target, not the transport's protocol")

    def close(self):
        self.closed = True

    abort = close


def test_a_connection_given_back_is_taken_again_most_recent_first():
    pool, first, second = Pool(), Transport(), Transport()
    pool.give("a", first)
    pool.give("a", second)
    assert second.link.target is None and second.link.pool is pool  # idle: the link watches it
    assert pool.take("a") is second and pool.take("a") is first and pool.take("a") is None
    assert pool.take("b") is None and pool.count == 0


def test_past_the_bounds_a_connection_is_closed_not_kept():
    pool = Pool(per_address=2, total=3)
    kept = [Transport() for _ in range(3)]
    for transport in kept:
        pool.give("a", transport)
    assert kept[2].closed and not kept[0].closed and pool.count == 2
    other, over = Transport(), Transport()
    pool.give("b", other)
    pool.give("c", over)
    assert not other.closed and over.closed and pool.count == 3


def test_an_idle_connection_expires():
    pool = Pool(idle_seconds=0.05)
    old = Transport()
    pool.give("a", old)
    time.sleep(0.1)
    assert pool.take("a") is None and old.closed
    swept = Transport()
    pool.give("a", swept)
    time.sleep(0.1)
    pool.sweep()
    assert swept.closed and pool.count == 0 and not pool.idle


def test_a_connection_the_server_closes_or_speaks_on_leaves_the_pool():
    pool, closed, talking = Pool(), Transport(), Transport()
    pool.give("a", closed)
    pool.give("a", talking)
    closed.link.connection_lost(None)
    talking.link.data_received(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    assert talking.closed and pool.count == 0 and pool.take("a") is None


def test_an_address_that_spoke_out_of_turn_is_not_pooled_for_a_while():
    pool, talking, later = Pool(), Transport(), Transport()
    pool.give("a", talking)
    talking.link.data_received(b"HTTP/1.1 200 OK\r\n\r\n")
    pool.give("a", later)
    assert later.closed and pool.count == 0 and pool.take("a") is None
    other = Transport()
    pool.give("b", other)
    assert not other.closed and pool.take("b") is other


def test_a_connection_is_closed_once_it_has_carried_max_requests_responses():
    """nginx's keepalive_requests: the connection that replaces it is accepted by whichever endpoint worker waits in
    accept, so connections a burst dealt to one worker are dealt again."""
    pool, transport = Pool(max_requests=3), Transport()
    for _ in range(2):
        pool.give("a", transport)
        assert pool.take("a") is transport and not transport.closed
    pool.give("a", transport)  # its third response
    assert transport.closed and pool.take("a") is None and pool.count == 0
