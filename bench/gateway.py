"""Speed target: the serving gateway costs little. On the same endpoint in the same run, throughput through the
gateway (`/serve-<ws>-<hex6>/invocations` on the backend) is at least 0.8x that of the endpoint's own server
(127.0.0.1:<port>/invocations), and the gateway adds under 1 ms to the median latency.

Against a real backend with a fresh data directory: train the mnist template, deploy its serve bundle with the
trained model, wait for PIPELINE_RUNNING, read the endpoint's port from the SQLite file. Then, in rounds that
alternate which path goes first, the same client (http.client, one connection per client thread, kept alive
where the server keeps it) POSTs templates/mnist/test_payload.jpg and checks every answer is {"result": [3]}:
  latency     one client per path, sequential requests taking turns: median and p90 of each path over all
              rounds, and the difference of the medians;
  throughput  THREADS clients for THROUGHPUT_SECONDS each: requests per second of each path; the ratio judged
              is the median over rounds of gateway/direct within a round (the two runs of a round are seconds
              apart, so load from other programs on the machine weighs on both alike).
Client, gateway and model server share this machine's CPUs: on a small machine the gateway's own CPU time per
request shows up directly in the throughput ratio."""
import http.client
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from _backend import (MNIST, BackendApi, BenchFailure, backend_log_problems, endpoint_port, exit_on_sigterm,
                      job_phases, running_backend, temporary_directory, zip_bundle)

WORKSPACE = "bench-gateway"
PAYLOAD = MNIST / "test_payload.jpg"
EXPECTED = {"result": [3]}
ROUNDS = 5
LATENCY_REQUESTS = 60      # per round and path: 300 of each in all
WARMUP_REQUESTS = 10       # per latency client, unmeasured
THREADS = 8
THROUGHPUT_SECONDS = 5.0
TARGET_RATIO = 0.8
TARGET_ADDED_MS = 1.0
COLD_TIMEOUT = 1800.0      # first installs of scikit-learn, scipy, numpy, pandas, flask, gunicorn
START_TIMEOUT = 300.0      # from the serve build's end to PIPELINE_RUNNING and a first answer
REQUEST_TIMEOUT = 30.0


class Target:
    """One way to the model: where to connect and which path to POST to."""

    def __init__(self, label: str, port: int, path: str):
        self.label, self.host, self.port, self.path = label, "127.0.0.1", port, path


class Client:
    """One HTTP/1.1 connection: kept alive when the server keeps it, opened anew when the server closed it."""

    def __init__(self, target: Target, body: bytes):
        self.target = target
        self.body = body
        self.headers = {"Content-Type": "image/jpeg", "Content-Length": str(len(body))}
        self.connection = http.client.HTTPConnection(target.host, target.port, timeout=REQUEST_TIMEOUT)

    def post(self) -> None:
        try:
            self.connection.request("POST", self.target.path, body=self.body, headers=self.headers)
            response = self.connection.getresponse()
            text = response.read()
        except (http.client.HTTPException, OSError) as error:
            self.connection.close()
            raise BenchFailure(f"{self.target.label}: POST {self.target.path} failed: {error!r}") from None
        if response.status != 200:
            raise BenchFailure(f"{self.target.label}: HTTP {response.status}: {text[:300]!r}")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text[:300]
        if answer != EXPECTED:
            raise BenchFailure(f"{self.target.label}: answered {answer!r}, expected {EXPECTED}")

    def close(self) -> None:
        self.connection.close()


def sequential_latencies(targets: List[Target], body: bytes, count: int) -> Dict[str, List[float]]:
    """Seconds of `count` sequential POSTs on each target, one client per target, taking turns request by
    request (so that load from elsewhere on the machine falls on both alike), after a few unmeasured ones."""
    clients = [Client(target, body) for target in targets]
    try:
        for _ in range(WARMUP_REQUESTS):
            for client in clients:
                client.post()
        seconds: Dict[str, List[float]] = {target.label: [] for target in targets}
        for _ in range(count):
            for client in clients:
                start = time.perf_counter()
                client.post()
                seconds[client.target.label].append(time.perf_counter() - start)
        return seconds
    finally:
        for client in clients:
            client.close()


def throughput(target: Target, body: bytes, threads: int, duration: float) -> Tuple[float, List[float]]:
    """(requests per second, every request's seconds) of `threads` clients POSTing for `duration` seconds."""
    begin = [0.0]
    # the clock starts when every client is connected and warm: the barrier's action runs before any is released
    barrier = threading.Barrier(threads + 1, action=lambda: begin.__setitem__(0, time.perf_counter()))
    stop = threading.Event()
    counts = [0] * threads
    finished = [0.0] * threads
    latencies: List[List[float]] = [[] for _ in range(threads)]
    errors: List[BaseException] = []

    def work(index: int) -> None:
        client = Client(target, body)
        try:
            try:
                client.post()  # connect and warm this client's path, unmeasured
            finally:
                barrier.wait(timeout=REQUEST_TIMEOUT * 2)
            deadline = begin[0] + duration
            while not stop.is_set():
                start = time.perf_counter()
                if start >= deadline:
                    break
                client.post()
                end = time.perf_counter()
                counts[index] += 1
                latencies[index].append(end - start)
                finished[index] = end
        except BaseException as error:  # noqa: B902 - handed to the main thread
            errors.append(error)
            stop.set()
        finally:
            client.close()

    workers = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(threads)]
    for worker in workers:
        worker.start()
    try:
        barrier.wait(timeout=REQUEST_TIMEOUT * 2)
    except threading.BrokenBarrierError:
        stop.set()
    for worker in workers:
        worker.join(timeout=duration + REQUEST_TIMEOUT * 3)
    if any(worker.is_alive() for worker in workers):
        stop.set()
        raise BenchFailure(f"{target.label}: client threads still running after the throughput run")
    if errors:
        error = errors[0]
        raise error if isinstance(error, BenchFailure) else BenchFailure(f"{target.label}: {error!r}")
    elapsed = max(finished) - begin[0]
    total = sum(counts)
    if total == 0 or elapsed <= 0:
        raise BenchFailure(f"{target.label}: no request finished in the throughput run")
    return total / elapsed, [value for values in latencies for value in values]


def train_model(api: BackendApi, tmp: Path) -> str:
    """Train the mnist template once: the model id of its (only) partition."""
    zips = tmp / "zips"
    zips.mkdir(exist_ok=True)
    answer = api.post_zip(f"train/{WORKSPACE}", zip_bundle(MNIST / "model-train", zips / "train.zip"))
    api.post_zip(f"data/{WORKSPACE}/features", zip_bundle(MNIST / "data", zips / "data.zip"))
    if answer.get("job_id"):
        state, _ = api.wait_for_job(WORKSPACE, answer["job_id"], COLD_TIMEOUT)
        if state != "JOB_SUCCESS":
            raise BenchFailure(f"train build {answer['job_id']} ended {state}:\n"
                               f"{api.job_log_tail(WORKSPACE, answer['job_id'])}")
    job_id, state, _ = api.wait_for_new_training(WORKSPACE, set(), COLD_TIMEOUT)
    if state != "JOB_SUCCESS":
        raise BenchFailure(f"train job {job_id} ended {state}:\n{api.job_log_tail(WORKSPACE, job_id)}")
    partitions = api.call("GET", f"train/{WORKSPACE}/{job_id}")["response"]["partitions"]
    if not partitions:
        raise BenchFailure(f"train job {job_id} succeeded without a successful partition")
    return partitions[0]["output"]["model_id"]


def endpoint_log_tail(api: BackendApi, endpoint: str, characters: int = 2000) -> str:
    try:
        return api.call("GET", f"inference/{WORKSPACE}/{endpoint}/logs")[-characters:]
    except BenchFailure as error:
        return str(error)


def deploy_endpoint(api: BackendApi, model_id: str, tmp: Path) -> Tuple[str, Optional[str]]:
    """Deploy the mnist serve bundle with `model_id`; wait for PIPELINE_RUNNING: (endpoint, build job id)."""
    answer = api.post_zip(f"inference/{WORKSPACE}/{model_id}",
                          zip_bundle(MNIST / "model-serve", tmp / "zips" / "serve.zip"))
    endpoint, build_id = answer["endpoint"], answer.get("job_id")
    if build_id:
        state, _ = api.wait_for_job(WORKSPACE, build_id, COLD_TIMEOUT)
        if state != "JOB_SUCCESS":
            try:
                log = api.call("GET", f"inference/{WORKSPACE}/build/{build_id}/logs")[-2000:]
            except BenchFailure as error:
                log = str(error)
            raise BenchFailure(f"serve build {build_id} ended {state}:\n{log}")
    deadline = time.monotonic() + START_TIMEOUT
    state = None
    while time.monotonic() < deadline:
        rows = api.call("GET", f"inference/{WORKSPACE}")["response"]["endpoints"]
        state = next((row["state"] for row in rows if row["name"] == endpoint), None)
        if state == "PIPELINE_RUNNING":
            return endpoint, build_id
        if state in (None, "PIPELINE_FAILURE"):
            raise BenchFailure(f"endpoint {endpoint} is {state}:\n{endpoint_log_tail(api, endpoint)}")
        time.sleep(0.2)
    raise BenchFailure(f"endpoint {endpoint} not running after {START_TIMEOUT:.0f} s (last state {state}):\n"
                       f"{endpoint_log_tail(api, endpoint)}")


def wait_until_answering(targets: List[Target], body: bytes) -> None:
    """The endpoint's gunicorn binds its port before its workers have loaded the model: wait for real answers."""
    deadline = time.monotonic() + START_TIMEOUT
    for target in targets:
        while True:
            client = Client(target, body)
            try:
                client.post()
                break
            except BenchFailure as error:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"{target.label} gave no good answer in {START_TIMEOUT:.0f} s: {error}")
                time.sleep(0.2)
            finally:
                client.close()


def percentile(values: List[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def measure(direct: Target, gateway: Target, body: bytes) -> dict:
    """Alternating rounds of both measurements on both paths."""
    latency = {direct.label: [], gateway.label: []}
    rates = {direct.label: [], gateway.label: []}
    loaded = {direct.label: [], gateway.label: []}
    for run in range(1, ROUNDS + 1):
        order = (direct, gateway) if run % 2 else (gateway, direct)
        by_target = sequential_latencies(list(order), body, LATENCY_REQUESTS)
        for target in order:
            seconds = by_target[target.label]
            latency[target.label].extend(seconds)
            print(f"round {run}: {target.label:7} latency median {statistics.median(seconds) * 1000:6.2f} ms, "
                  f"p90 {percentile(seconds, 0.9) * 1000:6.2f} ms ({len(seconds)} sequential requests)",
                  flush=True)
        for target in order:
            rate, seconds = throughput(target, body, THREADS, THROUGHPUT_SECONDS)
            rates[target.label].append(rate)
            loaded[target.label].extend(seconds)
            print(f"round {run}: {target.label:7} throughput {rate:7.1f} req/s ({THREADS} clients, "
                  f"{THROUGHPUT_SECONDS:.0f} s, {len(seconds)} requests, median under load "
                  f"{statistics.median(seconds) * 1000:.2f} ms)", flush=True)
    return {"latency": latency, "rates": rates, "loaded": loaded}


def main() -> int:
    exit_on_sigterm()
    body = PAYLOAD.read_bytes()
    with temporary_directory("kaos-bench-gateway-") as tmp:
        tmp = Path(tmp)
        data_dir = tmp / "data"
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            api.create_workspace(WORKSPACE)
            print("training the mnist template (cold build, not measured)...", flush=True)
            model_id = train_model(api, tmp)
            print(f"model {model_id}; deploying the mnist serve bundle (cold build, not measured)...", flush=True)
            endpoint, build_id = deploy_endpoint(api, model_id, tmp)
            port = endpoint_port(data_dir, endpoint)
            if not port:
                raise BenchFailure(f"endpoint {endpoint} has no port in {data_dir / 'kaos.db'}")
            direct = Target("direct", port, "/invocations")
            gateway = Target("gateway", backend.port, f"/{endpoint}/invocations")
            wait_until_answering([direct, gateway], body)
            print(f"endpoint {endpoint} running on 127.0.0.1:{port} (build {job_phases(data_dir, build_id)}"
                  f"); gateway on 127.0.0.1:{backend.port}; {os.cpu_count()} CPUs", flush=True)
            results = measure(direct, gateway, body)
            try:
                api.call("DELETE", f"inference/{WORKSPACE}/{endpoint}", timeout=30)
            except Exception as error:  # noqa: BLE001 - running_backend kills whatever is left anyway
                print(f"could not kill endpoint {endpoint}: {error}", file=sys.stderr)
            problems = backend_log_problems(backend)
    latency, rates, loaded = results["latency"], results["rates"], results["loaded"]
    direct_median = statistics.median(latency["direct"])
    gateway_median = statistics.median(latency["gateway"])
    added_ms = (gateway_median - direct_median) * 1000
    print(f"latency (sequential, {len(latency['direct'])} requests each): direct median "
          f"{direct_median * 1000:.2f} ms p90 {percentile(latency['direct'], 0.9) * 1000:.2f} ms; gateway median "
          f"{gateway_median * 1000:.2f} ms p90 {percentile(latency['gateway'], 0.9) * 1000:.2f} ms "
          f"-> added {added_ms:.2f} ms, ratio {gateway_median / direct_median:.2f}")
    direct_rate, gateway_rate = statistics.median(rates["direct"]), statistics.median(rates["gateway"])
    ratios = [gateway / direct for gateway, direct in zip(rates["gateway"], rates["direct"])]
    ratio = statistics.median(ratios)
    print(f"throughput ({THREADS} clients, median of {ROUNDS} rounds): direct {direct_rate:.1f} req/s, gateway "
          f"{gateway_rate:.1f} req/s -> ratio {ratio:.2f} (median of the rounds' "
          f"{', '.join(f'{value:.2f}' for value in ratios)}); median latency under load direct "
          f"{statistics.median(loaded['direct']) * 1000:.2f} ms, gateway "
          f"{statistics.median(loaded['gateway']) * 1000:.2f} ms")
    for line in problems:
        print(f"backend log: {line}")
    throughput_met = ratio >= TARGET_RATIO
    latency_met = added_ms < TARGET_ADDED_MS
    print(f"throughput ratio >= {TARGET_RATIO}: {'OK' if throughput_met else 'MISSED'}")
    print(f"added median latency < {TARGET_ADDED_MS:.0f} ms: {'OK' if latency_met else 'MISSED'}")
    return 0 if throughput_met and latency_met else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchFailure as failure:
        print(f"benchmark failed: {failure}", file=sys.stderr)
        sys.exit(2)
