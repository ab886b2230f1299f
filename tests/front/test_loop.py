"""The front's event loop: uvloop's where it is installed (the `speed` extra), asyncio's otherwise or when
KAOS_FRONT_UVLOOP=0."""
import asyncio
import importlib.util

import pytest

from kaos_backend.front.main import new_event_loop
from tests.front.support import front_process

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed (pip install 'kaos[speed]')")
def test_the_running_front_uses_uvloop_when_installed(front_backend):
    maps = [mapping.path for mapping in front_process(front_backend).memory_maps()]
    assert any("uvloop" in path for path in maps), maps


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed (pip install 'kaos[speed]')")
def test_uvloop_is_chosen_and_can_be_turned_off(monkeypatch):
    import uvloop
    monkeypatch.delenv("KAOS_FRONT_UVLOOP", raising=False)
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    monkeypatch.setenv("KAOS_FRONT_UVLOOP", "0")
    loop = new_event_loop()
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
