"""Artifact tokens (services/artifact_tokens.py) on SQLite and PostgreSQL: issued once and stored hashed, checked
for their own workload only, revoked by job, expired, renewed, and purged a day after they died."""
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from kaos_backend.db import Database
from kaos_backend.errors import ArtifactForbidden, AuthorizationError
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.models import ArtifactToken
from kaos_backend.services.artifact_tokens import ArtifactTokens

JOB = "a" * 32


def train_spec(index: int = 0) -> WorkloadSpec:
    return WorkloadSpec(job_id=f"{JOB}-{index}", kind="train", log=f"jobs/{JOB}",
                        source=Artifact(Artifact.BUNDLE, "1" * 64, "tiny", "tiny:12345"),
                        data=Artifact(Artifact.BUNDLE, "2" * 64, "features", "features:67890"),
                        output=Artifact.output_of(JOB, "abcdef"))


@pytest.fixture
def database(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def tokens(database):
    return ArtifactTokens(database)


def _set(database, **values):
    with database.session_scope() as session:
        session.execute(update(ArtifactToken).values(**values))


def test_a_token_grants_its_workload_its_spec(tokens):
    spec = train_spec()
    token = tokens.issue(spec, job=JOB)
    grant = tokens.check(token, spec.job_id)
    assert (grant.workload, grant.job, grant.spec) == (spec.job_id, JOB, spec)
    assert timedelta(hours=23) < grant.expires_at - datetime.now(timezone.utc) <= timedelta(hours=24)


def test_only_a_hash_of_the_secret_is_stored(tokens, database):
    token = tokens.issue(train_spec())
    selector, secret = token.split(".")
    with database.read_scope() as session:
        row = session.scalar(select(ArtifactToken))
    assert row.selector == selector and row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(row.spec) and secret != row.secret_hash


def test_each_token_is_new(tokens):
    assert len({tokens.issue(train_spec()) for _ in range(5)}) == 5


def test_another_workloads_token_is_forbidden(tokens):
    token = tokens.issue(train_spec(0), job=JOB)
    with pytest.raises(ArtifactForbidden, match=f"not for {JOB}-1"):
        tokens.check(token, f"{JOB}-1")


@pytest.mark.parametrize("given", [None, "", "garbage", "0" * 32 + "." + "A" * 43])
def test_no_token_or_an_unknown_one_is_unauthorized(tokens, given):
    tokens.issue(train_spec())
    with pytest.raises(AuthorizationError):
        tokens.check(given, f"{JOB}-0")


def test_a_right_selector_with_a_wrong_secret_is_unauthorized(tokens):
    selector, secret = tokens.issue(train_spec()).split(".")
    wrong = ("B" if secret[0] != "B" else "C") + secret[1:]
    with pytest.raises(AuthorizationError, match="Unknown"):
        tokens.check(f"{selector}.{wrong}", f"{JOB}-0")


def test_revoking_a_job_revokes_every_partitions_token(tokens):
    first, second = tokens.issue(train_spec(0), job=JOB), tokens.issue(train_spec(1), job=JOB)
    other = tokens.issue(WorkloadSpec(job_id="serve-ws-abcdef", kind="serve", log="endpoints/serve-ws-abcdef"))
    assert tokens.revoke(JOB) == 2
    for token, workload in ((first, f"{JOB}-0"), (second, f"{JOB}-1")):
        with pytest.raises(AuthorizationError, match="revoked"):
            tokens.check(token, workload)
    assert tokens.check(other, "serve-ws-abcdef").workload == "serve-ws-abcdef"
    assert tokens.revoke("serve-ws-abcdef") == 1  # an endpoint's: by its name
    assert tokens.revoke(JOB) == 0


def test_an_expired_token_is_unauthorized_and_renew_keeps_a_live_one(tokens, database):
    token = tokens.issue(train_spec(), ttl=timedelta(minutes=5))
    assert tokens.renew(f"{JOB}-0", timedelta(hours=2)) == 1
    assert tokens.check(token, f"{JOB}-0").expires_at - datetime.now(timezone.utc) > timedelta(hours=1)
    _set(database, expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
    with pytest.raises(AuthorizationError, match="expired"):
        tokens.check(token, f"{JOB}-0")
    assert tokens.renew(f"{JOB}-0") == 0  # an expired token stays expired


def test_rows_dead_for_a_day_are_purged_when_a_token_is_issued(tokens, database):
    tokens.issue(train_spec(0))
    long_ago = datetime.now(timezone.utc) - timedelta(days=2)
    _set(database, expires_at=long_ago)
    tokens.issue(train_spec(1))
    with database.read_scope() as session:
        assert session.scalars(select(ArtifactToken.workload)).all() == [f"{JOB}-1"]
