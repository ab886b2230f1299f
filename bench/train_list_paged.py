"""Speed target: with 10,000 train jobs (and 500 builds) in one workspace, `GET /api/train/<ws>?limit=50` answers
in under 50 ms (median of 21 after 2 warmups, over HTTP). Printed beside it, measured in the same run over the
same keep-alive session: the unpaged `GET /api/train/<ws>` (every job, the 1.x answer) and the ratio; and a deep
page (`limit=50` with the `continue` token after 9,000 jobs), which costs the same as the first because the
token is a keyset on the listing index, not an offset.

The jobs are made as in `train_list_scale.py`: the workspace through the API, the rows bulk inserted while the
backend is stopped."""
import json
import sys
from pathlib import Path

from _backend import BackendApi, BenchFailure, backend_log_problems, exit_on_sigterm, running_backend, \
    temporary_directory
from train_list_scale import BUILD_JOBS, TRAIN_JOBS, WORKSPACE, insert_jobs, median_request

PAGE = 50
DEEP_JOBS = 9_000  # the deep page starts after this many training jobs
TARGET_SECONDS = 0.050


def page(api: BackendApi, limit: int, token: str = None) -> dict:
    params = {"limit": limit, **({"continue": token} if token else {})}
    return api.call("GET", f"train/{WORKSPACE}", params=params)


def deep_token(api: BackendApi) -> str:
    """The `continue` token after the newest DEEP_JOBS training jobs, walked in pages of 1,000."""
    token, seen = None, 0
    while seen < DEEP_JOBS:
        answer = page(api, 1000, token)
        seen += len(answer["response"]["training"])
        token = answer["continue"]
        if token is None:
            raise BenchFailure(f"the pages ended after {seen} training jobs")
    return token


def check_first_page(api: BackendApi) -> None:
    answer = page(api, PAGE)
    counts = {key: len(value) for key, value in answer["response"].items()}
    if counts != {"training": PAGE, "building": PAGE, "ingesting": 0} or not answer.get("continue"):
        raise BenchFailure(f"the first page holds {counts} and continue={answer.get('continue')!r}")


def main() -> int:
    exit_on_sigterm()
    with temporary_directory("kaos-bench-paged-") as tmp:
        data_dir = Path(tmp) / "data"
        with running_backend(data_dir) as backend:
            BackendApi(backend).create_workspace(WORKSPACE)
        seconds = insert_jobs(data_dir)
        print(f"inserted {TRAIN_JOBS} train jobs and {BUILD_JOBS} build jobs in {seconds:.1f} s")
        with running_backend(data_dir) as backend:
            api = BackendApi(backend)
            check_first_page(api)
            unpaged_size = len(json.dumps(api.train_list(WORKSPACE)))
            paged_size = len(json.dumps(page(api, PAGE)))
            token = deep_token(api)
            unpaged = median_request(api, f"train/{WORKSPACE}")
            paged = median_request(api, f"train/{WORKSPACE}?limit={PAGE}")
            deep = median_request(api, f"train/{WORKSPACE}?limit={PAGE}&continue={token}")
            problems = backend_log_problems(backend)
        print(f"GET /api/train/{WORKSPACE} (every job, ~{unpaged_size / 1e6:.1f} MB JSON): "
              f"median {unpaged * 1000:.1f} ms")
        print(f"GET /api/train/{WORKSPACE}?limit={PAGE} (~{paged_size / 1e3:.0f} kB JSON): "
              f"median {paged * 1000:.1f} ms -> ratio to unpaged {paged / unpaged:.3f} ({unpaged / paged:.0f}x faster)")
        print(f"GET /api/train/{WORKSPACE}?limit={PAGE}&continue=<after {DEEP_JOBS} jobs>: "
              f"median {deep * 1000:.1f} ms -> ratio to the first page {deep / paged:.2f}")
        for line in problems:
            print(f"backend log: {line}")
        met = paged < TARGET_SECONDS
        print(f"paged median <{TARGET_SECONDS * 1000:.0f} ms: {'OK' if met else 'MISSED'}")
        return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
