"""The records a workload's log starts with, as the original's (Pachyderm) workers wrote them (the seed
debugging page): "processing job <id>", "starting to download data", "finished downloading data after <ms>ms",
"beginning to run user code". An executor writes them around its staging of the workload's artifacts; a
controller writes them for a job that needs no workload (a warm build, a manifest ingested already)."""
import time
from contextlib import contextmanager
from typing import Iterator, List

START_RECORD = "beginning to run user code"


def processing(job_id: str) -> List[str]:
    """What a workload's log begins with (`WorkloadSpec.preamble`): the job it is part of."""
    return [f"processing job {job_id}"]


class Preamble:
    """The records of one start: `first` (`processing(job_id)`), then the download, timed by `downloading()`."""

    def __init__(self, first: List[str]):
        self.first = list(first)
        self._elapsed_ms = 0.0

    @classmethod
    def for_job(cls, job_id: str) -> "Preamble":
        return cls(processing(job_id))

    @contextmanager
    def downloading(self) -> Iterator[None]:
        started = time.monotonic()
        yield
        self._elapsed_ms = (time.monotonic() - started) * 1000

    def lines(self) -> List[str]:
        return self.first + ["starting to download data",
                             f"finished downloading data after {self._elapsed_ms:.6f}ms", START_RECORD]
