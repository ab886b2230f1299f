"""tests/support/ports.py: the ports two xdist workers hand out never meet, and a port something holds is skipped."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import ports

REPO = Path(__file__).resolve().parent.parent


def picks(worker: str, count: int) -> list:
    code = ("import json; from tests.support.ports import free_port; "
            f"print(json.dumps([free_port() for _ in range({count})]))")
    env = {**os.environ, "PYTEST_XDIST_WORKER": worker}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout)


def test_two_workers_hand_out_ports_of_their_own_below_the_ephemeral_range():
    first, second = picks("gw0", 20), picks("gw1", 20)
    assert not set(first) & set(second)
    assert len(set(first)) == 20
    assert all(ports.RANGE_START <= port < ports.RANGE_START + ports.RANGE_SIZE for port in first)
    assert all(ports.RANGE_START + ports.RANGE_SIZE <= port < ports.RANGE_START + 2 * ports.RANGE_SIZE
               for port in second)
    assert max(second) < 32768


def test_a_port_something_holds_is_not_handed_out():
    held = ports.RANGE_START + 3 * ports.RANGE_SIZE  # the first port worker gw3 would hand out
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", held))
        listener.listen()
        assert picks("gw3", 1) == [held + 1]
