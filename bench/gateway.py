"""Speed target: the front door costs little on the way to an endpoint. With the same endpoint in one run:
throughput through the front at least 0.9x direct, median added latency at concurrency 8 at most 0.5 ms, and
the front's CPU time per request printed.

What runs (the front alone, as `kaos-backend serve` starts it, in front of a real endpoint process: the API's
gunicorn is not on a prediction's path, so a whole backend would only add noise to the measurement):
  endpoint  the mnist template's own `serve` script (gunicorn on wsgi:app, the template's Flask app and model
            code) in a virtualenv of the template's requirements, with a model trained by the template's `train`
            on its mini data set; both are made once and kept under build/bench-gateway/ (not measured). Its
            gunicorn listens on 127.0.0.1:<port> and, where the serve script binds one, on a unix socket too:
            direct and through-the-front requests reach the same server, same workers, same settings;
  front     `python -m kaos_backend.front` on its own listening socket, finding the endpoint in a SQLite file
            (one endpoint row, PIPELINE_RUNNING) like the backend's;
  load      wrk (`apt-get install wrk`), one thread, 8 connections kept alive, POSTing the template's
            test_payload.jpg to /invocations (direct) or /<endpoint>/invocations (front), every answer checked
            for status 2xx (and one of each checked for {"result": [3]} first).
  general   the same front with its express lane off (KAOS_FRONT_EXPRESS=0): every request the general way;
            printed for reading the lane's gain, not part of the verdicts;
  floor     (where the endpoint listens on a unix socket) bench/_relay_floor.py: a relay of bytes with no HTTP at
            all, one upstream connection per client connection, on the same event loop: what the loop and the
            extra hops cost alone. Printed for reading the front's cost against; not part of the verdicts.
Lopsided runs: gunicorn's gthread workers each accept from the shared listener as they wake, so the eight kept-alive
connections of a run are split between the two workers by a lottery (a known gunicorn behaviour: benoitc/gunicorn
#2817, #3433), and when one worker takes nearly all of them the endpoint runs on one core at half its throughput,
whichever path the run took (seen here in about a third of the runs, direct and front alike: 840 against 2,100
req/s). Each run reads each worker's CPU time before and after and prints their shares; a run in which a worker
did less than MIN_WORKER_SHARE of the workers' work is printed and run again (up to RUNS_PER_PATH runs in all), the
same rule for every path: the verdict reads the front's cost, not the lottery.
Rounds rotate which path goes first; each prints req/s, median and p99 latency, and for the front and the floor
the process's CPU seconds (utime + stime from /proc/<pid>/stat) per request. The verdicts use the median over
rounds of the per-round ratio and of the per-round medians. Client, front and endpoint share the machine's CPUs:
the front's CPU per request shows up directly in the ratio.
"""
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

from _endpoint import (ENDPOINT, PAYLOAD, REPO, BenchFailure, cpu_seconds, endpoint_database,  # noqa: F401
                       free_port, post_script, start, start_endpoint, start_front, stop, template_env, trained_model,
                       tree, wait_for_answer)

ROUNDS = 6
SECONDS = 5              # per wrk run
CONNECTIONS = 8
RUNS_PER_PATH = 6        # a lopsided run (below) is run again, up to this many times in all
MIN_WORKER_SHARE = 0.3   # of the endpoint workers' CPU in a run, each worker's at least, for the run to count
TARGET_RATIO = 0.9
TARGET_ADDED_MS = 0.5


UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([a-z]+)", text).groups()
    return float(number) * UNITS[unit]


def wrk(url: str, script: Path) -> dict:
    """One wrk run: requests, req/s, median and p99 seconds. Raises BenchFailure on any non-2xx or error."""
    result = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script), url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=SECONDS + 60)
    out = result.stdout
    if result.returncode != 0 or "Non-2xx" in out or "Socket errors" in out:
        raise BenchFailure(f"wrk {url}:\n{out}")
    latency = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    if int(re.search(r"(\d+) requests in", out).group(1)) == 0 or "50" not in latency:
        raise BenchFailure(f"wrk {url}: no request answered:\n{out}")
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "median": _seconds(latency["50"]), "p99": _seconds(latency["99"])}


def worker_shares(before: Dict[int, float], after: Dict[int, float]) -> List[float]:
    """Each endpoint worker's share of the CPU its workers spent between two readings (pid -> CPU seconds),
    largest first; [] when they spent none."""
    spent = [after[pid] - before.get(pid, 0.0) for pid in after]
    total = sum(spent)
    return sorted((part / total for part in spent), reverse=True) if total > 0 else []


def measure_rounds(urls: Dict[str, str], relays: Dict[str, subprocess.Popen], endpoint_pids, script: Path,
                   rounds: int = ROUNDS, workers=lambda: []):
    """Every path warmed (unmeasured), then `rounds` rounds of one wrk run per path, the order rotating; each run
    printed. `relays` maps a label to the process relaying it (its CPU per request is measured);
    `endpoint_pids()` gives the endpoint's processes, `workers()` its worker processes (a run in which one did
    less than MIN_WORKER_SHARE of their work is run again, up to RUNS_PER_PATH runs). Returns (results: label ->
    wrk results, relay_cpu: label -> CPU seconds per request)."""
    for url in urls.values():  # warm every path, unmeasured
        wrk(url, script)
    labels = list(urls)
    results = {label: [] for label in labels}
    relay_cpu = {label: [] for label in relays}
    for round_number in range(1, rounds + 1):
        shift = (round_number - 1) % len(labels)
        order = labels[shift:] + labels[:shift]
        for label in order:
            relay = relays.get(label)
            for attempt in range(1, RUNS_PER_PATH + 1):
                before = cpu_seconds([relay.pid]) if relay else 0.0
                endpoint_before = cpu_seconds(endpoint_pids())
                workers_before = {pid: cpu_seconds([pid]) for pid in workers()}
                result = wrk(urls[label], script)
                shares = worker_shares(workers_before, {pid: cpu_seconds([pid]) for pid in workers()})
                spent = cpu_seconds([relay.pid]) - before if relay else 0.0
                endpoint_spent = cpu_seconds(endpoint_pids()) - endpoint_before
                lopsided = len(shares) > 1 and shares[-1] < MIN_WORKER_SHARE
                extra = f", {label} CPU {spent / result['requests'] * 1e6:.0f} µs/request" if relay else ""
                print(f"round {round_number}: {label:7} {result['rate']:7.1f} req/s, median "
                      f"{result['median'] * 1000:.2f} ms, p99 {result['p99'] * 1000:.2f} ms "
                      f"({result['requests']} requests; endpoint CPU "
                      f"{endpoint_spent / result['requests'] * 1e6:.0f} µs/request{extra}; its workers' shares "
                      f"{'/'.join(f'{share:.0%}' for share in shares)})"
                      f"{' -> lopsided, run again' if lopsided and attempt < RUNS_PER_PATH else ''}", flush=True)
                if not lopsided or attempt == RUNS_PER_PATH:
                    break
            results[label].append(result)
            if relay:
                relay_cpu[label].append(spent / result["requests"])
    return results, relay_cpu


def summarize(results: Dict[str, list], relay_cpu: Dict[str, list]) -> int:
    """Print the figures and the verdicts of the rounds (direct, front, general, and floor where measured): 0 when
    both targets are met, else 1."""
    ratios = [f["rate"] / d["rate"] for f, d in zip(results["front"], results["direct"])]
    ratio = statistics.median(ratios)
    medians = {label: statistics.median(r["median"] for r in runs) for label, runs in results.items()}
    p99 = {label: statistics.median(r["p99"] for r in runs) for label, runs in results.items()}
    added_ms = (medians["front"] - medians["direct"]) * 1000
    print(f"throughput: direct {statistics.median(r['rate'] for r in results['direct']):.1f} req/s, front "
          f"{statistics.median(r['rate'] for r in results['front']):.1f} req/s -> ratio {ratio:.2f} (rounds: "
          f"{', '.join(f'{value:.2f}' for value in ratios)})")
    print(f"latency at concurrency {CONNECTIONS}: direct median {medians['direct'] * 1000:.2f} ms p99 "
          f"{p99['direct'] * 1000:.2f} ms; front median {medians['front'] * 1000:.2f} ms p99 "
          f"{p99['front'] * 1000:.2f} ms -> added median {added_ms:.2f} ms")
    print(f"front CPU per request: {statistics.median(relay_cpu['front']) * 1e6:.0f} µs (median of the rounds)")
    general_ratio = statistics.median(g["rate"] / d["rate"] for g, d in zip(results["general"], results["direct"]))
    print(f"general path (the front with KAOS_FRONT_EXPRESS=0; for reading, not a verdict): ratio "
          f"{general_ratio:.2f}, CPU {statistics.median(relay_cpu['general']) * 1e6:.0f} µs/request")
    if "floor" in results:
        floor_ratio = statistics.median(f["rate"] / d["rate"] for f, d in zip(results["floor"], results["direct"]))
        print(f"floor (bytes relayed, no HTTP; for reading the above, not a verdict): ratio {floor_ratio:.2f}, "
              f"CPU {statistics.median(relay_cpu['floor']) * 1e6:.0f} µs/request")
    throughput_met, latency_met = ratio >= TARGET_RATIO, added_ms <= TARGET_ADDED_MS
    print(f"throughput ratio >= {TARGET_RATIO}: {'OK' if throughput_met else 'MISSED'}")
    print(f"added median latency <= {TARGET_ADDED_MS} ms: {'OK' if latency_met else 'MISSED'}")
    return 0 if throughput_met and latency_met else 1


def main() -> int:
    if shutil.which("wrk") is None:
        raise BenchFailure("wrk is not installed (Debian: apt-get install wrk)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    body = PAYLOAD.read_bytes()
    env = template_env()
    model = trained_model(env)
    endpoint = front = general = floor = None
    with tempfile.TemporaryDirectory(prefix="kaos-bench-gateway-") as tmp:
        tmp = Path(tmp)
        try:
            endpoint, port, socket_path = start_endpoint(tmp, env, model)
            database = endpoint_database(tmp / "kaos.db", port, socket_path)
            front, front_port = start_front(tmp, database, "front.log")
            # the same front with its express lane off: every request the general way (for reading, no verdict)
            general, general_port = start_front(tmp, database, "general.log", {"KAOS_FRONT_EXPRESS": "0"})
            wait_for_answer(port, "/invocations", body)
            wait_for_answer(front_port, f"/{ENDPOINT}/invocations", body)
            wait_for_answer(general_port, f"/{ENDPOINT}/invocations", body)
            if socket_path.exists():
                with sqlite3.connect(tmp / "kaos.db") as db:
                    columns = [row[1] for row in db.execute("PRAGMA table_info(endpoints)")]
                via = "unix socket" if "socket" in columns else "TCP (no socket column)"
            else:
                via = "TCP"
            print(f"endpoint: the mnist template's serve (gunicorn) on 127.0.0.1:{port}; front on 127.0.0.1:"
                  f"{front_port}, to the endpoint over {via}; {os.cpu_count()} CPUs; wrk -t1 -c{CONNECTIONS} "
                  f"-d{SECONDS}s", flush=True)
            script = post_script(tmp)
            urls = {"direct": f"http://127.0.0.1:{port}/invocations",
                    "front": f"http://127.0.0.1:{front_port}/{ENDPOINT}/invocations",
                    "general": f"http://127.0.0.1:{general_port}/{ENDPOINT}/invocations"}
            relays = {"front": front, "general": general}
            if via == "unix socket":
                floor_port = free_port()
                floor = start([sys.executable, str(REPO / "bench" / "_relay_floor.py"), str(floor_port),
                               str(socket_path)], tmp / "floor.log")
                urls["floor"] = f"http://127.0.0.1:{floor_port}/invocations"
                relays["floor"] = floor
                wait_for_answer(floor_port, "/invocations", body)
            results, relay_cpu = measure_rounds(urls, relays, lambda: tree(endpoint.pid), script,
                                                workers=lambda: tree(endpoint.pid)[1:])  # (the arbiter first)
        finally:
            stop(floor)
            stop(general)
            stop(front)
            stop(endpoint)
    return summarize(results, relay_cpu)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        sys.exit(2)
