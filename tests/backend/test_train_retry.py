"""When a deploy of a combination of code, data and hyperparameters trained already starts a new train job
(services/train_retry.py `tried_again`; README, How it runs): only after a failure or a kill, and only with other
limits given by a deploy after it ended. The DOCKER platform's case (a limit the engine refused) is
tests/docker/test_attack_findings.py's."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from kaos_backend.control.train_schedule import schedule
from kaos_backend.models import Job
from kaos_backend.services.train_retry import tried_again
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, source_zip

REFUSED = {"cpu": 100000.0, "memory": None, "gpu": 0}
ENDED = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
AFTER = ENDED + timedelta(seconds=1)


def ended(state: str, resources) -> Job:
    return Job(state=state, resources=resources, finished_at=ENDED)


@pytest.mark.parametrize("state", ["JOB_FAILURE", "JOB_KILLED"])
def test_a_training_that_did_not_succeed_is_tried_again_with_other_limits_only(state):
    previous = ended(state, REFUSED)
    assert tried_again(previous, {"cpu": 1.0, "memory": None, "gpu": 0}, AFTER)
    assert tried_again(previous, None, AFTER)  # no limits at all is other limits too
    assert not tried_again(previous, {"cpu": 100000.0}, AFTER)  # the same limits, however spelled, start nothing
    assert not tried_again(previous, dict(REFUSED), AFTER)


def test_a_training_without_limits_is_tried_again_once_limits_are_given():
    previous = ended("JOB_FAILURE", None)
    assert not tried_again(previous, {"cpu": None, "memory": None, "gpu": 0}, AFTER)
    assert tried_again(previous, {"memory": "1Gi"}, AFTER)
    assert tried_again(previous, {"memory": "1Gi"}, ENDED.replace(tzinfo=None))  # SQLite's naive UTC


@pytest.mark.parametrize("state", ["JOB_SUCCESS", "JOB_RUNNING", "JOB_STARTING"])
def test_a_successful_or_unfinished_training_is_not_repeated_whatever_the_limits(state):
    assert not tried_again(Job(state=state, resources=REFUSED), {"cpu": 1.0}, AFTER)


@pytest.mark.parametrize("state", ["JOB_FAILURE", "JOB_KILLED"])
def test_limits_given_before_the_training_ended_do_not_try_it_again(state):
    previous = ended(state, REFUSED)
    assert not tried_again(previous, {"cpu": 1.0}, ENDED - timedelta(seconds=1))
    assert not tried_again(previous, {"cpu": 1.0}, None)


def _trainings(services):
    with services.db.session_scope() as session:
        return [(job.id, (job.resources or {}).get("memory")) for job in session.scalars(
            select(Job).where(Job.kind == "train").order_by(Job.created_at))]


def test_a_training_killed_after_a_deploy_with_other_limits_stays_killed(services):
    """Finding (a newcomer): `train deploy --memory 400Mi` while the same combination trained with 300Mi started
    nothing, as it should; but `train kill` of that training then started a new one with 400Mi at once: the kill
    seemed not to work. Limits now try a combination again only when given after its last training ended."""
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()), memory="300Mi")
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", "built"
    services.train.submit_features("ws", body_from_bytes(features_zip()), memory="300Mi")  # one deploy -s -d
    schedule(services)
    [(running, memory)] = _trainings(services)
    assert memory == "300Mi"
    services.train.submit_source("ws", body_from_bytes(source_zip()), memory="400Mi")  # while it runs
    schedule(services)
    assert len(_trainings(services)) == 1
    with services.db.session_scope() as session:  # as the train controller ends a killed job
        job = session.get(Job, running)
        job.state, job.finished_at = "JOB_KILLED", datetime.now(timezone.utc)
    schedule(services)
    assert [memory for _, memory in _trainings(services)] == ["300Mi"]  # stays killed
    services.train.submit_source("ws", body_from_bytes(source_zip()), memory="400Mi")  # now: a way out
    schedule(services)
    assert [memory for _, memory in _trainings(services)] == ["300Mi", "400Mi"]


def test_a_deploy_of_hyperparameters_alone_gives_its_limits_too(services):
    """An attacker's finding: `train deploy -h grid.json --cpu 2` after the grid's training failed left the limits
    as they were (the params upload never set them) and said the inputs had trained 'with these limits'."""
    import json
    services.workspaces.create("ws")
    source = services.train.submit_source("ws", body_from_bytes(source_zip()), inputs_follow=True, memory="300Mi")
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", "built"
    services.train.submit_features("ws", body_from_bytes(features_zip()), inputs_follow=True, memory="300Mi")
    grid = body_from_bytes(json.dumps({"n": [1]}).encode())
    services.train.submit_params("ws", grid, memory="300Mi")
    schedule(services)
    [(failed, memory)] = _trainings(services)
    assert memory == "300Mi"
    with services.db.session_scope() as session:
        job = session.get(Job, failed)
        job.state, job.finished_at = "JOB_FAILURE", datetime.now(timezone.utc)
    services.train.submit_params("ws", body_from_bytes(json.dumps({"n": [1]}).encode()), memory="1Gi")
    assert services.train.inspect("ws")["memory"] == "1Gi"
    schedule(services)
    assert [memory for _, memory in _trainings(services)] == ["300Mi", "1Gi"]
