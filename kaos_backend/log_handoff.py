"""The hand-off of a log follow from the API to the front door (nginx's `X-Accel-Redirect` is the model).

A `?follow=true` logs request is authenticated and authorized by the API as any other (token, workspace, job or
endpoint existence); then, instead of holding a gunicorn thread for as long as the log is followed, the API
answers at once, 200 with an empty body and one header, `X-Kaos-Follow`, whose value says what to stream and
until when. The front door honours that header only on answers from the API's own socket and never relays it:
it streams the log from its event loop (kaos_backend.front.follow) with the rest of the API's head.

The header's value is one line of ASCII JSON:

    {"log": "jobs/<job id>", "job": "<job id>"}             # until the job's state is terminal
    {"log": "endpoints/<name>", "endpoint": "<name>"}       # until the endpoint is gone, being killed or given
                                                            # up (PIPELINE_FAILURE)
    {"log": "notebooks/<name>", "endpoint": "<name>"}       # a notebook (notebook-...): until it is gone, being
                                                            # killed, or stopped for good (culled, given up)

`log` is the log's name (executors/base.py), never a path: the front reads the log through the configured
executor (`open_log`), as everything else does.

Standard library only: the API and the front both import it.
"""
import json
from dataclasses import dataclass
from typing import Optional

HEADER = "X-Kaos-Follow"
HEADER_NAME = HEADER.lower().encode("ascii")   # as a parser hands header names over: lowercase bytes
APP_FLAG = "kaos_follow_handoff"                # in a Flask app's `extensions`: the front serves follows


@dataclass(frozen=True)
class Handoff:
    """What to follow: the log's name, and the job (or endpoint) whose end ends the follow."""
    log: str
    job: Optional[str] = None
    endpoint: Optional[str] = None

    def key(self):
        """("job", id) or ("endpoint", name): what the follow waits for."""
        return ("job", self.job) if self.job is not None else ("endpoint", self.endpoint)


def encode(handoff: Handoff) -> str:
    """The header value (ASCII, no CR/LF: any name survives as JSON escapes)."""
    fields = {"log": handoff.log}
    fields.update({"job": handoff.job} if handoff.job is not None else {"endpoint": handoff.endpoint})
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":"))


def decode(value: bytes) -> Handoff:
    """The hand-off in a header value; ValueError when it is not one (exactly one of job and endpoint)."""
    try:
        fields = json.loads(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"not a {HEADER} value: {error}") from None
    if not isinstance(fields, dict) or not isinstance(fields.get("log"), str) or not fields["log"]:
        raise ValueError(f"{HEADER} names no log")
    job, endpoint = fields.get("job"), fields.get("endpoint")
    if (job is None) == (endpoint is None) or not isinstance(job or endpoint, str):
        raise ValueError(f"{HEADER} names neither one job nor one endpoint")
    return Handoff(fields["log"], job=job, endpoint=endpoint)
