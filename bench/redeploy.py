"""Speed target: re-deploying an unchanged 100 MB data bundle takes under 0.5 s and sends under 1 MB.

The real CLI (`kaos train deploy -d data`, a subprocess, startup included) against a real backend, through a
counting TCP proxy that sees every byte the CLI sends. The data folder holds 100 MB of random (incompressible)
bytes in ten files, aged past the racy window (kaos_cli/bundle_cache.py) as a folder that was not just written.
Measured in the same run: the first deploy (zip + upload), re-deploys without the digest cache (what the CLI did
before it: compress everything, then send it by digest) and re-deploys with it; the ratios are printed. For
context, `kaos workspace list` (the CLI's start, its imports and one request) is timed too: the floor that any
command talking to the backend pays on this machine at this moment."""
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _backend import BenchFailure, exit_on_sigterm, running_backend, temporary_directory
from _timing import BIN

from kaos_cli.bundle_cache import CACHE_NAME, RACY_SECONDS
from tests.support.cli import kaos as run_kaos
from tests.support.counting_proxy import CountingProxy

WORKSPACE = "bench-redeploy"
FILES = 10
FILE_MB = 10
RUNS = 5
TARGET_SECONDS = 0.5
TARGET_BYTES = 1024 * 1024


def kaos(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, USER="bench", COLUMNS="200")
    env.pop("KAOS_STATE_DIR", None)
    result = subprocess.run([str(BIN / "kaos"), *args], cwd=project, env=env, capture_output=True, text=True,
                            timeout=600)
    if result.returncode != 0:
        raise BenchFailure(f"kaos {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_deploy(project: Path, proxy: CountingProxy) -> tuple:
    """(seconds, bytes sent, data glob, whether it compressed, CPU seconds of the CLI process) of one
    `kaos train deploy -d data`."""
    proxy.reset()
    cpu = _children_cpu()
    start = time.perf_counter()
    # stdout on a pseudo-terminal, as for a person: the CLI draws its bars ("Compressing ...") only there
    result = run_kaos(project, "train", "deploy", "-d", "data", tty=True, timeout=600)
    seconds = time.perf_counter() - start
    if result.code != 0:
        raise BenchFailure(f"kaos train deploy exited {result.code}:\n{result.out}{result.err}")
    glob = next((line.split("Setting data bundle: ", 1)[1].strip() for line in result.out.splitlines()
                 if "Setting data bundle: " in line), None)
    return seconds, proxy.sent, glob, "Compressing data bundle" in result.err, _children_cpu() - cpu


def timed_command(project: Path, *args: str) -> float:
    start = time.perf_counter()
    kaos(project, *args)
    return time.perf_counter() - start


def make_data(folder: Path) -> None:
    features = folder / "features"
    features.mkdir(parents=True)
    for index in range(FILES):
        (features / f"part-{index:02d}.bin").write_bytes(os.urandom(FILE_MB * 1024 * 1024))


def megabytes(count: int) -> str:
    return f"{count / 1024 / 1024:.2f} MB" if count >= 1024 * 1024 else f"{count / 1024:.1f} KB"


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-redeploy-") as tmp:
        tmp = Path(tmp)
        project = tmp / "project"
        project.mkdir()
        make_data(project / "data")
        written = time.time()
        with running_backend(tmp / "backend-data") as backend:
            proxy = CountingProxy(backend.port).start()
            try:
                kaos(project, "init", "-e", proxy.url, "-t", backend.token)
                kaos(project, "workspace", "create", "-n", WORKSPACE)
                time.sleep(max(0.0, written + RACY_SECONDS + 0.5 - time.time()))
                first = timed_deploy(project, proxy)
                uncached = []
                for _ in range(RUNS):
                    (project / ".kaos" / CACHE_NAME).unlink()
                    uncached.append(timed_deploy(project, proxy))
                cached = [timed_deploy(project, proxy) for _ in range(RUNS)]
                floor = statistics.median(timed_command(project, "workspace", "list") for _ in range(RUNS))
            finally:
                proxy.stop()
    globs = {run[2] for run in [first] + uncached + cached}
    if len(globs) != 1 or None in globs:
        raise BenchFailure(f"the deploys recorded different data bundles: {sorted(map(str, globs))}")
    if any(run[3] for run in cached) or not all(run[3] for run in [first] + uncached):
        raise BenchFailure("the cached re-deploys compressed, or the others did not")
    size = FILES * FILE_MB
    cached_seconds = statistics.median(run[0] for run in cached)
    cached_bytes = max(run[1] for run in cached)
    uncached_seconds = statistics.median(run[0] for run in uncached)
    print(f"data bundle: {size} MB of random bytes in {FILES} files, recorded as {globs.pop()}")
    cpu = {name: statistics.median(run[4] for run in runs) for name, runs in
           (("first", [first]), ("uncached", uncached), ("cached", cached))}
    print(f"first deploy (zip + upload):                    {first[0]:.2f} s, {megabytes(first[1])} sent, "
          f"CLI CPU {cpu['first']:.2f} s")
    print(f"re-deploy without the digest cache (median of {RUNS}): {uncached_seconds:.2f} s, "
          f"{megabytes(max(run[1] for run in uncached))} sent, CLI CPU {cpu['uncached']:.2f} s "
          "(compresses, then sends by digest)")
    print(f"re-deploy unchanged (median of {RUNS}):             {cached_seconds:.2f} s, "
          f"{megabytes(cached_bytes)} sent, CLI CPU {cpu['cached']:.2f} s (no compression)")
    print(f"floor: kaos workspace list (start + one request, median of {RUNS}): {floor:.2f} s; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"ratio re-deploy / first deploy: {cached_seconds / first[0]:.3f} in time, "
          f"{cached_bytes / first[1]:.5f} in bytes; re-deploy / re-deploy without the cache: "
          f"{cached_seconds / uncached_seconds:.3f}; re-deploy / floor: {cached_seconds / floor:.2f}")
    ok = cached_seconds < TARGET_SECONDS and cached_bytes < TARGET_BYTES
    print(f"target: re-deploy under {TARGET_SECONDS} s and under {megabytes(TARGET_BYTES)} sent -> "
          f"{'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
