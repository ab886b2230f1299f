"""What the front costs a prediction in instructions, counted the same whatever else the machine is doing: the
load-robust companion of bench/gateway.py (whose req/s and CPU seconds move with the machine's load).

What runs: the mnist template's endpoint (bench/_endpoint.py, as gateway.py runs it), and in front of it, one at a
time, each under `valgrind --tool=callgrind`:
  front    `python -m kaos_backend.front`, express lane on (the default);
  general  the same with KAOS_FRONT_EXPRESS=0 (every request the general way);
  floor    bench/_relay_floor.py: bytes relayed between the client's connection and one to the endpoint's unix
           socket, no HTTP at all: what the event loop and the two hops cost alone.
One client connection sends WARMUP requests (the template's test_payload.jpg POSTed to /invocations, every answer
checked), then the counters are zeroed (`callgrind_control -z`), REQUESTS more are sent one after another, and the
counts are dumped (`callgrind_control -d`). Printed per path: user-space instructions per request (the process's
threads together; the kernel's work, the system calls, is not counted: `strace -c` showed front and floor making
the same calls per request, about 2 reads, 2 writes and 2 epoll waits). The figures are the verdict-free reading
for work on the front's hot path: gateway.py's ratio follows from them and the machine.

Needs valgrind (`apt-get install valgrind`); about a minute. `--paths front floor` measures some of them.
"""
import argparse
import glob
import http.client
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional

import _endpoint
from _endpoint import (ENDPOINT, PAYLOAD, REPO, BenchFailure, endpoint_database, free_port, start, start_endpoint,
                       start_front, stop, template_env, trained_model, wait_for_answer)

WARMUP = 50
REQUESTS = 500
PATHS = ("front", "general", "floor")
UNDER_VALGRIND_TIMEOUT = 300.0  # a process under callgrind starts about 50 times slower


def callgrind(out: Path):
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]


def start_relay(path: str, tmp: Path, database: str, socket_path: Path):
    """`path`'s relay under callgrind: (the process, its port, the request target)."""
    out = tmp / f"callgrind-{path}"
    if path == "floor":
        port = free_port()
        process = start(callgrind(out) + [sys.executable, str(REPO / "bench" / "_relay_floor.py"), str(port),
                                          str(socket_path)], tmp / "floor.log", cwd=tmp)
        return process, port, "/invocations"
    # the endpoint's address looked up once: a refresh a second (an SQL query in a thread) would be counted per
    # request in proportion to how slowly they run, which is load, not the front
    env = {"KAOS_FRONT_EXPRESS": "0" if path == "general" else "1", "KAOS_FRONT_ENDPOINT_CACHE_SECONDS": "3600"}
    process, port = start_front(tmp, database, f"{path}.log", env, wrapper=tuple(callgrind(out)))
    return process, port, f"/{ENDPOINT}/invocations"


def control(process: subprocess.Popen, option: str) -> None:
    """`callgrind_control <option>` (-z zeroes the counts, -d dumps them) on `process`."""
    subprocess.run(["callgrind_control", option, str(process.pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def post(connection: http.client.HTTPConnection, target: str, body: bytes) -> None:
    connection.request("POST", target, body=body, headers={"Content-Type": "image/jpeg"})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200:
        raise BenchFailure(f"POST {target} answered {response.status}: {answer[:200]!r}")


def dumped_instructions(pattern: str) -> int:
    """The instructions of the dump `callgrind_control -d` wrote (the file named `<out>.<pid>.1`)."""
    files = glob.glob(pattern)
    if not files:
        raise BenchFailure(f"callgrind wrote no dump ({pattern})")
    for line in Path(files[0]).read_text(errors="replace").splitlines():
        if line.startswith("summary:"):  # (what callgrind_annotate prints as PROGRAM TOTALS)
            return int(line.split()[1])
    raise BenchFailure(f"no totals in {files[0]}")


def measure(path: str, tmp: Path, database: str, socket_path: Path, body: bytes, keep: Optional[Path]) -> int:
    """Instructions per request of `path`'s relay (its dump copied into `keep`, for callgrind_annotate)."""
    process, port, target = start_relay(path, tmp, database, socket_path)
    try:
        _endpoint.START_TIMEOUT = UNDER_VALGRIND_TIMEOUT
        wait_for_answer(port, target, body)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(WARMUP):
            post(connection, target, body)
        control(process, "-z")
        for _ in range(REQUESTS):
            post(connection, target, body)
        control(process, "-d")
        connection.close()
        dump = f"{tmp}/callgrind-{path}.{process.pid}.1"
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for found in glob.glob(dump):
                shutil.copy(found, keep / f"callgrind-{path}.out")
        return dumped_instructions(dump) // REQUESTS
    finally:
        stop(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--keep", type=Path, help="copy each path's callgrind dump into this folder "
                        "(callgrind-<path>.out: `callgrind_annotate --inclusive=yes` shows where the instructions go)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise BenchFailure("valgrind is not installed (Debian: apt-get install valgrind)")
    body = PAYLOAD.read_bytes()
    env = template_env()
    model = trained_model(env)
    counts: Dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="kaos-bench-instructions-") as tmp:
        tmp = Path(tmp)
        endpoint, port, socket_path = start_endpoint(tmp, env, model)
        try:
            wait_for_answer(port, "/invocations", body)
            database = endpoint_database(tmp / "kaos.db", port, socket_path)
            for path in args.paths:
                counts[path] = measure(path, tmp, database, socket_path, body, args.keep)
                print(f"{path:7} {counts[path]:9,} instructions per request (user space, {REQUESTS} requests "
                      f"one after another)", flush=True)
        finally:
            stop(endpoint)
    if "floor" in counts:
        for path in (p for p in counts if p != "floor"):
            print(f"{path} over the floor: {counts[path] / counts['floor']:.1f}x, "
                  f"{counts[path] - counts['floor']:,} instructions per request of HTTP work")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        sys.exit(2)
