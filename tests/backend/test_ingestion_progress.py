"""An ingestion's progress as `kaos train list` shows it (services/jobs.py): files downloaded so far, out of the
manifest's count when it is known."""
from types import SimpleNamespace

from kaos_backend.services.jobs import JobService


def progress(lines, state="JOB_RUNNING", total=None) -> str:
    service = JobService.__new__(JobService)  # (only the job's log is read)
    service._log = lambda job_id: SimpleNamespace(logs=lambda: lines)
    return service._ingestion_progress("job", state, total)


def test_progress_counts_the_files_downloaded():
    downloaded = "[12:00:00] downloaded s3://bucket/a.csv"
    assert progress([downloaded, "other"], total=4) == "Progress: 1 / 4 (25%)"
    assert progress([downloaded] * 2) == "Progress: 2 files"
    assert progress([downloaded]) == "Progress: 1 file"  # not "1 files"
    assert progress([]) == "Progress: 0 files"
    assert progress([], state="JOB_SUCCESS", total=3) == "Progress: 3 / 3 (100%)"
