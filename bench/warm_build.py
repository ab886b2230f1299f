"""Speed target: a redeploy whose requirements did not change spends under 1 s in the build step.

Against a real backend with a fresh data directory: the cold build of a train bundle with a small but real
requirements.txt (one pinned package, installed by pip), then warm builds of the same bundle with only `train`
changed (a new bundle, a new build job, the same environment). Each is timed from the `POST /api/train/<ws>`
to the build job's JOB_SUCCESS as `GET /api/job/<ws>/<id>` reports it."""
import shutil
import statistics
import sys
import time
from pathlib import Path

from _backend import (MNIST, BackendApi, BenchFailure, backend_log_problems, exit_on_sigterm, job_phases,
                      running_backend, temporary_directory, zip_bundle)

WORKSPACE = "bench-build"
REQUIREMENTS = "six==1.16.0\n"
WARM_RUNS = 3
TARGET_SECONDS = 1.0
COLD_TIMEOUT = 600.0
WARM_TIMEOUT = 60.0


def timed_build(api: BackendApi, source_dir: Path, zip_path: Path, timeout: float) -> tuple:
    """(seconds from the POST to JOB_SUCCESS, build job id) of one submission of `source_dir`."""
    zip_bundle(source_dir, zip_path)
    start = time.perf_counter()
    answer = api.post_zip(f"train/{WORKSPACE}", zip_path)
    if not answer.get("job_id"):
        raise BenchFailure(f"the backend started no build for a new bundle: {answer}")
    state, seen = api.wait_for_job(WORKSPACE, answer["job_id"], timeout)
    if state != "JOB_SUCCESS":
        raise BenchFailure(f"build {answer['job_id']} ended {state}:\n"
                           f"{api.job_log_tail(WORKSPACE, answer['job_id'])}")
    return seen - start, answer["job_id"]


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-build-") as tmp:
        tmp = Path(tmp)
        source = tmp / "source"
        shutil.copytree(MNIST / "model-train", source)
        model = source / "mnist" / "model"
        (model / "requirements.txt").write_text(REQUIREMENTS)
        data_dir = tmp / "data"
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            api.create_workspace(WORKSPACE)
            cold, cold_id = timed_build(api, source, tmp / "cold.zip", COLD_TIMEOUT)
            print(f"cold build ({REQUIREMENTS.strip()}): {cold:.2f} s ({job_phases(data_dir, cold_id)})")
            warm = []
            for run in range(1, WARM_RUNS + 1):
                with open(model / "train", "a") as train:
                    train.write(f"# warm build run {run}\n")  # a new bundle; requirements untouched
                seconds, job_id = timed_build(api, source, tmp / f"warm-{run}.zip", WARM_TIMEOUT)
                warm.append(seconds)
                print(f"warm build {run}: {seconds:.2f} s ({job_phases(data_dir, job_id)})")
            environments = [path.name for path in (data_dir / "envs").iterdir() if path.is_dir()]
            problems = backend_log_problems(backend)
        median = statistics.median(warm)
        print(f"cold {cold:.2f} s, warm median {median:.2f} s -> ratio warm/cold {median / cold:.3f}")
        print(f"environments built: {len(environments)} (expected 1)")
        for line in problems:
            print(f"backend log: {line}")
        met = median < TARGET_SECONDS and len(environments) == 1
        print(f"warm build step <{TARGET_SECONDS:.0f} s: {'OK' if met else 'MISSED'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
