"""A deploy of several train inputs holds its pipeline until its last input arrives (services/train.py,
`inputs_follow`): no training of a part of the deploy; a hold that outlives its bound, or a deploy whose upload
fails, lets the pipeline go as any upload would; a client that never says `inputs_follow` (kaos 1.x's) sees no hold."""
import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from kaos_backend.control.train_schedule import schedule
from kaos_backend.errors import InvalidBundle
from kaos_backend.models import Job, TrainPipeline
from kaos_backend.services.uploads import body_from_bytes
from tests.backend.helpers import features_zip, source_zip


def _built(services, source):
    with services.db.session_scope() as session:
        build = session.get(Job, source["job_id"])
        build.state, build.image = "JOB_SUCCESS", "built"


def _trainings(services):
    with services.db.session_scope() as session:
        return [(job.hyper_bundle_id is not None) for job in session.scalars(
            select(Job).where(Job.kind == "train").order_by(Job.created_at))]


def _params(values) -> bytes:
    return json.dumps({"a": values}).encode()


def test_a_deploy_s_parts_start_nothing_until_its_last_one(services):
    services.workspaces.create("ws")
    _built(services, services.train.submit_source("ws", body_from_bytes(source_zip()), inputs_follow=True))
    schedule(services)
    services.train.submit_features("ws", body_from_bytes(features_zip()), inputs_follow=True)
    schedule(services)
    assert _trainings(services) == []  # (code, data) without the hyperparameters that follow: held
    services.train.submit_params("ws", body_from_bytes(_params([1, 2])))
    schedule(services)
    assert _trainings(services) == [True]  # one training, with them


def test_a_hold_past_its_bound_lets_the_pipeline_go(services):
    services.workspaces.create("ws")
    _built(services, services.train.submit_source("ws", body_from_bytes(source_zip()), inputs_follow=True))
    services.train.submit_features("ws", body_from_bytes(features_zip()), inputs_follow=True)
    with services.db.session_scope() as session:  # the CLI died before its last upload, long ago
        for pipeline in session.scalars(select(TrainPipeline)):
            pipeline.held_until = datetime.now(timezone.utc) - timedelta(seconds=1)
    schedule(services)
    assert _trainings(services) == [False]


def test_a_failed_upload_ends_the_hold(services):
    services.workspaces.create("ws")
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    _built(services, services.train.submit_source("ws", body_from_bytes(source_zip()), inputs_follow=True))
    with pytest.raises(InvalidBundle):
        services.train.submit_features("ws", body_from_bytes(b"not a zip"), inputs_follow=True)
    schedule(services)
    assert _trainings(services) == [False]  # the inputs that arrived train, as after any upload


def test_a_client_that_never_says_inputs_follow_sees_no_hold(services):
    services.workspaces.create("ws")
    _built(services, services.train.submit_source("ws", body_from_bytes(source_zip())))
    services.train.submit_features("ws", body_from_bytes(features_zip()))
    schedule(services)
    assert _trainings(services) == [False]  # kaos 1.x's behaviour: each upload moves the pipeline
