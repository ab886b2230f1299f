"""The front's bounds from the environment (kaos_backend/front/config.py `FrontConfig.from_env`): every bound must be
a finite number above 0. `inf` and `nan` parse as floats, and neither is at or below 0: an infinite
KAOS_FRONT_BODY_HOLD_SECONDS held a request head whose body never came in the express lane's LANE_BODY with no
deadline at all (nothing bounds it but the hold), an infinite timeout never fires, and a `nan` one never compares
as passed (a `nan` delay in the loop's timer heap also breaks the heap's order for every other timer)."""
import asyncio

import pytest

from kaos_backend.front.config import FrontConfig, FrontConfigError
from kaos_backend.front.server import Front


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "Infinity", "1e400"])
@pytest.mark.parametrize("name", ["KAOS_FRONT_BODY_HOLD_SECONDS", "KAOS_FRONT_CLIENT_BODY_TIMEOUT"])
def test_a_bound_that_is_not_a_finite_number_is_refused(name, raw):
    with pytest.raises(FrontConfigError):
        FrontConfig.from_env({name: raw})


def test_finite_bounds_are_taken():
    config = FrontConfig.from_env({"KAOS_FRONT_BODY_HOLD_SECONDS": "0.2", "KAOS_FRONT_MAX_CONNECTIONS": "100"})
    assert config.body_hold_seconds == 0.2 and config.max_connections == 100


def test_a_request_body_is_held_no_longer_than_a_body_may_stall():
    """The express lane holds a request head for its body at most `body_hold_seconds`, and never past
    `client_body_timeout` (the general path's bound on a stalled body)."""
    loop = asyncio.new_event_loop()
    try:
        config = FrontConfig(body_hold_seconds=5.0, client_body_timeout=1.0)
        assert Front(loop, "/nonexistent/api.sock", lambda name: None, config).body_holds.seconds == 1.0
        assert Front(loop, "/nonexistent/api.sock", lambda name: None, FrontConfig()).body_holds.seconds == 0.05
    finally:
        loop.close()
