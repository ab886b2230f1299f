"""`kaos train info`: a train job as a paged JobInfo (reference §5.4, §6.7), its partitions' inputs and output as
1.x's DataDescriptors."""
import math
from typing import Any, List, Optional

from kaos_model import JobState
from kaos_model.wire import JobInfo, JobInfoPage, PartitionInfo
from sqlalchemy import func, select

from kaos_backend.errors import BadRequest, MetricNotFound, PageError
from kaos_backend.models import Bundle, Job, Partition
from kaos_backend.services.descriptors import bundle_descriptor, image_descriptor, output_descriptor
from kaos_backend.services.jobs import find_job, seconds_between
from kaos_model.whole_numbers import plain_whole_number

PAGE_SIZE = 10
MAX_FAILED_SHOWN = 20  # failed partitions listed by `train info`; `failed_count` says how many failed in all
FAILED_STATES = (JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value)
BUILD_KIND = "build-train"


def job_info(session, workspace: str, job_id: str, sort_by: Optional[str] = None, page_id: Any = 0,
             ascending: bool = False) -> JobInfoPage:
    """One page of PAGE_SIZE successful partitions (sorted by the metric `sort_by` if given), the first
    MAX_FAILED_SHOWN partitions by index that ran and failed or were killed (extra `failed_partitions`), and
    `failed_count`, every failed or killed partition (those killed before they started included).
    Raises JobNotFound, PageError, MetricNotFound, BadRequest (a metric that is not a number)."""
    page = _page_number(page_id)
    job = find_job(session, workspace, job_id, kinds=("train",))
    describe = _PartitionDescriber(session, workspace, job)
    of_job = select(Partition).where(Partition.job_id == job.id)
    rows = [describe(partition) for partition in session.scalars(
        of_job.where(Partition.state == JobState.JOB_SUCCESS.value).order_by(Partition.index))]
    failed_count = session.scalar(select(func.count()).select_from(Partition).where(
        Partition.job_id == job.id, Partition.state.in_(FAILED_STATES)))
    # those that ran: a partition killed (or given up on) before it started has nothing to show
    failed = [describe(partition) for partition in session.scalars(
        of_job.where(Partition.state.in_(FAILED_STATES), Partition.started_at.is_not(None))
        .order_by(Partition.index).limit(MAX_FAILED_SHOWN))]
    metrics = sorted({name for row in rows for name in row.extra["metrics"]})
    if sort_by:
        rows = _sorted_by_metric(rows, sort_by, ascending)
    page_count = max(1, math.ceil(len(rows) / PAGE_SIZE))
    if page >= page_count:
        pages = "there is 1 page" if page_count == 1 else f"there are {page_count} pages"
        raise PageError(f"Page {page} does not exist: {pages} (from 0)")
    info = JobInfo(job_id=job.id, state=job.state, available_metrics=metrics,
                   process_time=seconds_between(job.started_at, job.finished_at),
                   partitions=rows[page * PAGE_SIZE:(page + 1) * PAGE_SIZE],
                   extra={"reason": job.reason, "failed_partitions": failed, "failed_count": failed_count})
    return JobInfoPage(page_id=page, page_count=page_count, response=info)


class _PartitionDescriber:
    """PartitionInfo of the partitions of one train job (its bundles and build looked up once)."""

    def __init__(self, session, workspace: str, job: Job):
        bundles = {bundle.id: bundle for bundle in session.scalars(select(Bundle).where(
            Bundle.id.in_([job.source_bundle_id, job.data_bundle_id, job.hyper_bundle_id])))}
        self.workspace, self.job = workspace, job
        self.source = bundles.get(job.source_bundle_id)
        self.data = bundles.get(job.data_bundle_id)
        self.hyper = bundles.get(job.hyper_bundle_id)
        self.data_kind = self.data.kind if self.data is not None else "features"
        build_id = session.scalar(select(Job.id).where(
            Job.kind == BUILD_KIND, Job.source_bundle_id == job.source_bundle_id,
            Job.state == JobState.JOB_SUCCESS.value).order_by(Job.created_at.desc()).limit(1)) \
            if job.source_bundle_id else None
        self.code = bundle_descriptor(workspace, "source-train", self.source)
        self.image = image_descriptor(workspace, self.source, build_id)

    def __call__(self, partition: Partition) -> PartitionInfo:
        job, workspace = self.job, self.workspace
        hyperparams = None
        if partition.hyper_file:
            hyperparams = bundle_descriptor(workspace, "params", self.hyper, path=f"/{partition.hyper_file}")
            hyperparams.extra["values"] = partition.hyperparams
        return PartitionInfo(
            datum_id=f"{job.id}-{partition.index}", code=self.code,
            data=bundle_descriptor(workspace, self.data_kind, self.data), image=self.image,
            output=output_descriptor(workspace, job.id, partition.model_id, job.user),
            score=None, hyperparams=hyperparams,
            extra={"metrics": partition.metrics or {}, "state": partition.state, "reason": partition.reason})


def _page_number(page_id: Any) -> int:
    """`page_id` as given in a query string (None or "" = 0), or as an int."""
    if page_id is None or page_id == "":
        return 0
    page = page_id if type(page_id) is int else plain_whole_number(page_id)
    if page is None or page < 0:
        raise PageError(f"Page id must be a whole number from 0 in plain digits, not {page_id!r}")
    return page


def _sorted_by_metric(rows: List[PartitionInfo], metric: str, ascending: bool) -> List[PartitionInfo]:
    if not any(metric in row.extra["metrics"] for row in rows):
        raise MetricNotFound(f"Metric {metric} not found")
    scored, unscored = [], []
    for row in rows:
        value = row.extra["metrics"].get(metric)
        if value is None:
            unscored.append(row)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadRequest(f"Metric {metric} is not numeric (e.g. {str(value)[:40]!r}): it cannot be sorted on")
        row.score = f"{value:.4f}"
        scored.append((value, row))
    scored.sort(key=lambda pair: pair[0], reverse=not ascending)
    return [row for _, row in scored] + unscored

