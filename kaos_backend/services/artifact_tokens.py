"""Job-scoped artifact tokens: what lets one workload running elsewhere (a pod on any node) fetch its inputs and hand
back its output over the internal routes (api/artifacts.py), and nothing else.

A token is `<selector>.<secret>`: the selector (16 random bytes, hex) names its row; of the secret (32 random
bytes, URL-safe base64) only the sha256 is stored, compared in constant time. The row keeps the workload's
`WorkloadSpec` as it was issued: which artifacts the workload may fetch, and where its output goes, are read from
it (never from the request). A token is good until it expires (24 hours by default; `renew` extends an endpoint's)
or is revoked (`revoke`, when its job ends); rows dead for a day are deleted when the next token is issued.

    tokens = ArtifactTokens(database)
    token = tokens.issue(spec, job=job_id)       # the only time the token is seen: give it to the workload
    grant = tokens.check(token, workload)        # a Grant, or AuthorizationError (401) / ArtifactForbidden (403)
    tokens.revoke(job_id)                        # every token of the job (all its partitions)
"""
import hashlib
import hmac
import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Optional

from sqlalchemy import delete, or_, update

from kaos_backend.db import Database
from kaos_backend.errors import ArtifactForbidden, AuthorizationError
from kaos_backend.executors.base import WorkloadSpec
from kaos_backend.models import ArtifactToken, as_utc

DEFAULT_TTL = timedelta(hours=24)
KEEP_DEAD = timedelta(days=1)   # an expired or revoked row is kept this long (to say "expired", not "unknown")
TOKEN_RE = re.compile(r"^([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")


class Grant(NamedTuple):
    """What a valid token allows: the workload it was issued for, as its spec says."""
    workload: str
    job: str
    spec: WorkloadSpec
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class ArtifactTokens:
    """Issue, check, renew and revoke artifact tokens in the platform's database."""

    def __init__(self, database: Database):
        self.db = database

    def issue(self, spec: WorkloadSpec, job: Optional[str] = None, ttl: timedelta = DEFAULT_TTL) -> str:
        """A new token for the workload `spec` (of the job `job`: a train job's id for each of its partitions, an
        endpoint's name; default `spec.job_id`), valid for `ttl`. Returned once: only its hash is kept."""
        selector, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
        now = _now()
        with self.db.session_scope() as session:
            session.execute(delete(ArtifactToken).where(or_(ArtifactToken.expires_at < now - KEEP_DEAD,
                                                            ArtifactToken.revoked_at < now - KEEP_DEAD)))
            session.add(ArtifactToken(selector=selector, secret_hash=_hash(secret), workload=spec.job_id,
                                      job=job or spec.job_id, spec=spec.to_dict(), created_at=now,
                                      expires_at=now + ttl))
        return f"{selector}.{secret}"

    def check(self, token: Optional[str], workload: str) -> Grant:
        """The grant of `token` for `workload`. AuthorizationError (401) for no token, one this platform did not
        issue, or one expired or revoked; ArtifactForbidden (403) for a valid token of another workload."""
        if not token:
            raise AuthorizationError("An artifact token is required (Authorization: Bearer <token>)")
        match = TOKEN_RE.match(token)
        with self.db.read_scope() as session:
            row = session.get(ArtifactToken, match.group(1)) if match else None
        if row is None or not hmac.compare_digest(row.secret_hash, _hash(match.group(2))):
            raise AuthorizationError("Unknown artifact token")
        if row.revoked_at is not None:
            raise AuthorizationError("The artifact token was revoked: its job has ended")
        if as_utc(row.expires_at) <= _now():
            raise AuthorizationError("The artifact token has expired")
        if row.workload != workload:
            raise ArtifactForbidden(f"The artifact token is not for {workload}")
        return Grant(row.workload, row.job, WorkloadSpec.from_dict(row.spec), as_utc(row.expires_at))

    def renew(self, workload: str, ttl: timedelta = DEFAULT_TTL) -> int:
        """Extend the workload's live tokens to `ttl` from now (a long-running endpoint); how many."""
        now = _now()
        with self.db.session_scope() as session:
            return session.execute(update(ArtifactToken).where(
                ArtifactToken.workload == workload, ArtifactToken.revoked_at.is_(None),
                ArtifactToken.expires_at > now).values(expires_at=now + ttl)).rowcount

    def revoke(self, job: str) -> int:
        """Revoke every live token of the job `job` (or of the workload of that name); how many."""
        with self.db.session_scope() as session:
            return session.execute(update(ArtifactToken).where(
                or_(ArtifactToken.job == job, ArtifactToken.workload == job),
                ArtifactToken.revoked_at.is_(None)).values(revoked_at=_now())).rowcount
