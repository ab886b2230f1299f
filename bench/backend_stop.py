"""Fast stop target: a backend with nothing running stops in under 2 s, both by SIGTERM to `kaos-backend serve`
and by `kaos destroy -c LOCAL` (the whole command). Baseline, measured in the same run: the stop of the API's
gunicorn alone (`python -m kaos_backend.api_server` on a unix socket, the same app, SIGTERM), the floor that
the supervisor, the front and the scheduler stop around. Prints each median, the ratio, and the verdict."""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _backend import exit_on_sigterm, kill_leftovers
from _timing import BIN, REPO

sys.path.insert(0, str(REPO))
from kaos_backend.parts import http_answers  # noqa: E402
from tests.support.backend import BackendProcess, free_port  # noqa: E402

TARGET_SECONDS = 2.0
RUNS = 5
WAIT_SECONDS = 60.0


def wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def timed_stop(process: subprocess.Popen) -> float:
    """Seconds from SIGTERM to `process` (alone) until it has exited."""
    start = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=WAIT_SECONDS)
    return time.perf_counter() - start


def api_alone_stop(work: Path, run: int) -> float:
    """The baseline: gunicorn with the kaos app on a unix socket, started, answering, then SIGTERMed."""
    data = work / f"api-alone-{run}"
    data.mkdir()
    sock = data / "api.sock"
    env = dict(os.environ, KAOS_DATA_DIR=str(data), KAOS_TOKEN="bench-token")
    process = subprocess.Popen([sys.executable, "-m", "kaos_backend.api_server", "--socket", str(sock)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: http_answers(sock), "the API alone to answer")
        return timed_stop(process)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def backend_stop(work: Path, run: int) -> float:
    """A whole backend (supervisor, front, API, scheduler), healthy, then SIGTERM to `kaos-backend serve`."""
    backend = BackendProcess(work / f"backend-{run}" / "data", token="bench-token")
    backend.start()
    try:
        return timed_stop(backend.process)
    finally:
        backend.stop(signal.SIGKILL)
        kill_leftovers(backend.data_dir)


def destroy_time(work: Path, run: int) -> float:
    """`kaos destroy -c LOCAL -y` of a freshly deployed LOCAL platform, the whole command."""
    project = work / f"project-{run}"
    project.mkdir()
    env = dict(os.environ, USER="bench")
    kaos = str(BIN / "kaos")
    subprocess.run([kaos, "build", "deploy", "-c", "LOCAL", "-y", "--port", str(free_port())], cwd=project, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    start = time.perf_counter()
    subprocess.run([kaos, "destroy", "-c", "LOCAL", "-y"], cwd=project, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="kaos-bench-stop-") as directory:
        work = Path(directory)
        baseline = statistics.median(api_alone_stop(work, run) for run in range(RUNS))
        stop = statistics.median(backend_stop(work, run) for run in range(RUNS))
        destroy = statistics.median(destroy_time(work, run) for run in range(RUNS))
    ok = True
    print(f"baseline: the API's gunicorn alone stops in {baseline * 1000:.0f} ms (median of {RUNS})")
    for name, measured in (("SIGTERM to kaos-backend serve", stop), ("kaos destroy -c LOCAL -y", destroy)):
        verdict = "OK" if measured < TARGET_SECONDS else "MISSED"
        ok = ok and measured < TARGET_SECONDS
        print(f"{name}: {measured * 1000:.0f} ms vs baseline {baseline * 1000:.0f} ms -> ratio "
              f"{measured / baseline:.2f} (target < {TARGET_SECONDS:.0f} s) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
