"""`kaos train info` in the backend (`TrainService.info`): which failed partitions a JobInfo lists and counts, with
rows made directly, over SQLite and PostgreSQL (the `database_url` fixture runs both)."""
from datetime import datetime, timezone

import pytest
from kaos_model import JobState
from kaos_model.ids import new_job_id
from sqlalchemy import insert

from kaos_backend.errors import PageError
from kaos_backend.models import Job, Partition, Workspace

SUCCESS, FAILURE, KILLED = JobState.JOB_SUCCESS.value, JobState.JOB_FAILURE.value, JobState.JOB_KILLED.value
WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def train_job(services, partitions):
    """A killed train job in workspace `ws` with `partitions`: (state, started) per index; its id."""
    services.workspaces.create("ws")
    job_id = new_job_id()
    with services.db.session_scope() as session:
        workspace = session.query(Workspace).filter_by(name="ws").one()
        session.add(Job(id=job_id, workspace_id=workspace.id, kind="train", state=KILLED, user="tester",
                        branch="e23a2_9fd9d", started_at=WHEN, finished_at=WHEN, reason="killed on request"))
        session.flush()
        session.execute(insert(Partition), [
            {"job_id": job_id, "index": index, "model_id": f"{job_id}:{index:06x}", "state": state,
             "started_at": WHEN if started else None, "finished_at": WHEN,
             "reason": None if state == SUCCESS else f"reason {index}", "metrics": {"accuracy": 0.5}}
            for index, (state, started) in enumerate(partitions)])
    return job_id


def indices(job_info):
    return [int(partition["datum_id"].rsplit("-", 1)[1]) for partition in job_info["failed_partitions"]]


def test_a_killed_ten_thousand_grid_lists_twenty_failed_partitions_and_counts_them_all(services):
    partitions = ([(SUCCESS, True)] * 5 + [(FAILURE, True)] * 30 + [(KILLED, True)] * 5
                  + [(KILLED, False)] * 9_960)
    job_id = train_job(services, partitions)
    answer = services.train.info("ws", job_id)
    job_info = answer["response"]
    assert indices(job_info) == list(range(5, 25))  # the first twenty by index
    assert job_info["failed_count"] == 9_995        # every failed or killed partition
    assert all(partition["state"] == FAILURE and partition["reason"] == f"reason {index}"
               for index, partition in zip(range(5, 25), job_info["failed_partitions"]))
    assert len(job_info["partitions"]) == 5 and answer["page_count"] == 1


def test_partitions_killed_before_they_started_are_counted_not_listed(services):
    partitions = [(KILLED, False), (FAILURE, True), (SUCCESS, True), (KILLED, True), (KILLED, False),
                  (FAILURE, False)]  # the last: given up on before it started
    job_info = services.train.info("ws", train_job(services, partitions))["response"]
    assert indices(job_info) == [1, 3]
    assert [partition["state"] for partition in job_info["failed_partitions"]] == [FAILURE, KILLED]
    assert job_info["failed_count"] == 5


def test_a_job_without_failures_lists_none(services):
    job_info = services.train.info("ws", train_job(services, [(SUCCESS, True)] * 3))["response"]
    assert job_info["failed_partitions"] == [] and job_info["failed_count"] == 0
    assert len(job_info["partitions"]) == 3



@pytest.mark.parametrize("models, pages", [(3, "there is 1 page"), (12, "there are 2 pages")])
def test_a_page_past_the_last_says_how_many_pages_there_are(services, models, pages):
    job_id = train_job(services, [(SUCCESS, True)] * models)
    with pytest.raises(PageError) as error:
        services.train.info("ws", job_id, page_id=5)
    assert error.value.message == f"Page 5 does not exist: {pages} (from 0)"
