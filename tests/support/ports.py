"""Free TCP ports for the processes a test starts (a backend, a kubelet's pod, a relay) that bind them later.

A port the kernel picks (bind to port 0, then close) is free when picked, not when the process binds it; with two
xdist workers running tests side by side, the other worker's kernel picks come from the same ephemeral range
(net.ipv4.ip_local_port_range, 32768-60999 by default) and could take it in between. Under xdist each worker
hands out ports from a range of its own below the ephemeral range (worker gwN: 20000 + N * 1500, 1500 ports),
in turn, skipping any port that cannot be bound now: no two workers ever hand out the same port, and no kernel pick
of a backend or a workload (ephemeral) lands in a test's range. Outside xdist, the kernel picks.
"""
import itertools
import os
import re
import socket

RANGE_START = 20000
RANGE_SIZE = 1500  # ports per worker: 8 workers fit below 32768
_worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
_turns = itertools.cycle(range(RANGE_SIZE))


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of `host` that nothing holds now (see the module's docstring). Raises OSError when the worker's
    whole range is taken."""
    if _worker is None:
        with socket.socket() as probe:
            probe.bind((host, 0))
            return probe.getsockname()[1]
    base = RANGE_START + int(_worker.group(1)) * RANGE_SIZE
    for _ in range(RANGE_SIZE):
        port = base + next(_turns)
        if _bindable(host, port):
            return port
    raise OSError(f"no free port in {base}-{base + RANGE_SIZE - 1}")
