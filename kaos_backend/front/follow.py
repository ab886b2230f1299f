"""Log follows served from the front door's event loop, once the API has handed them off (kaos_backend.log_handoff).

A follow reads its log through the configured executor, as every reader of a log does: `open_log(name)` gives a
reader of the log's bytes that never blocks (`Executor.open_log`, executors/base.py; the local executor's is an
open file). A follow costs the front that reader and a few hundred bytes, and no thread anywhere while it waits.
Every `POLL_SECONDS` each follow reads what was appended to its log and sends it on; one SQL query (in a thread) per
poll tells, for all follows at once, which jobs have reached a terminal state and which endpoints are gone or
being killed. A follow ends once its job or endpoint has ended and its log is drained (the state is read before
the log, as `logs.records` does), and at once when its client goes away (the front calls `cancel`).

The bytes sent are the ones the API's own stream (`Executor.logs(follow=True)`) sends: every record with its
newline, bytes that are not UTF-8 replaced by U+FFFD, and a last record without a newline given one at the end.
Records go out whole (a record longer than `MAX_PENDING` is sent in parts), as HTTP/1.1 chunks, or as the bare
body of an HTTP/1.0 response that ends with its connection.
"""
import codecs
import time
from typing import Callable, Dict, Iterable, Optional, Protocol, Set, Tuple

from kaos_backend import log_handoff

POLL_SECONDS = 0.2          # as logs.records: how often a waiting follow looks at its log and its job
READ_SIZE = 64 * 1024       # one read of a log
HIGH_WATER = 256 * 1024     # bytes queued for a client above which its log is not read on
MAX_PENDING = 1024 * 1024   # characters of a record without its newline kept before they are sent anyway
READS_PER_POLL = 16         # a follow that is behind catches up by up to this many reads per turn of the loop

Key = Tuple[str, str]       # ("job", id) or ("endpoint", name): an endpoint's or a notebook's name
NOTEBOOK_PREFIX = "notebook-"


class Sink(Protocol):
    """The client side of a follow, as the front gives it."""

    def write(self, data: bytes) -> None:
        """Queue bytes for the client."""

    def backlog(self) -> int:
        """Bytes queued for the client and not yet sent."""

    def follow_done(self) -> None:
        """The response is complete (the front goes on to the client's next request, or closes)."""


class LogFollow:
    """One client's follow of one log."""

    def __init__(self, follows: "Follows", handoff: log_handoff.Handoff, reader, sink: Sink, chunked: bool):
        self.follows = follows
        self.handoff = handoff
        self.key = handoff.key()
        self.reader = reader        # the log's bytes (executors.base.LogReader)
        self.sink = sink
        self.chunked = chunked
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.pending = ""           # decoded text after the last newline sent
        self.line_open = False      # part of a record went out without its newline
        self.ended = False          # the job or endpoint has ended (as of a query made before the next read)
        self.closed = False
        self.scheduled = False

    def pump(self) -> None:
        """Send what the log holds beyond what was sent; end the follow once drained after the end."""
        self.scheduled = False
        if self.closed:
            return
        ended = self.ended  # the state as seen before this read
        got = False
        for _ in range(READS_PER_POLL):
            if self.sink.backlog() > HIGH_WATER:
                return  # the client is slow: the next poll reads on
            chunk = self._read()
            if not chunk:
                break
            got = True
            self._send_text(self.decoder.decode(chunk))
            if len(chunk) < READ_SIZE:
                break
        else:  # still behind: go on soon, after the other connections' turn
            self.scheduled = True
            self.follows.loop.call_soon(self.pump)
            return
        if ended and not got:
            self._finish()

    def cancel(self) -> None:
        """The client is gone (or the front stops): close the log, send nothing more."""
        if not self.closed:
            self.closed = True
            self._close_reader()
            self.follows.active.discard(self)

    def _read(self) -> bytes:
        try:
            return self.reader.read(READ_SIZE) or b""  # b"" too while the log is not written yet
        except OSError as error:
            self.follows.log(f"log follow cannot read {self.handoff.log}: {error}")
            return b""

    def _send_text(self, text: str) -> None:
        if not text:
            return
        text = self.pending + text
        cut = text.rfind("\n") + 1
        if len(text) - cut > MAX_PENDING:
            cut = len(text)
        self.pending = text[cut:]
        if cut:
            self._send(text[:cut].encode("utf-8"))
            self.line_open = not text[:cut].endswith("\n")

    def _send(self, data: bytes) -> None:
        self.sink.write(b"%x\r\n%b\r\n" % (len(data), data) if self.chunked else data)

    def _finish(self) -> None:
        rest = self.pending + self.decoder.decode(b"", final=True)
        if rest or self.line_open:
            self._send((rest + "\n").encode("utf-8"))
        if self.chunked:
            self.sink.write(b"0\r\n\r\n")
        self.cancel()
        self.sink.follow_done()

    def _close_reader(self) -> None:
        try:
            self.reader.close()
        except OSError:
            pass


class Follows:
    """Every follow of one front: `start` one per handed-off answer; polls while any is active.

    `finished(jobs, endpoints)` (blocking, run in a thread) answers which of the given job ids and endpoint
    names have ended, as `Key`s; `open_log(name)` gives a reader of the log named so (`log_reader`);
    `log(message)` reports trouble."""

    def __init__(self, loop, finished: Callable[[Set[str], Set[str]], Iterable[Key]], open_log: Callable,
                 log: Callable[[str], None] = print, poll_seconds: float = POLL_SECONDS):
        self.loop = loop
        self.finished = finished
        self.open_log = open_log
        self.log = log
        self.poll_seconds = poll_seconds
        self.active: Set[LogFollow] = set()
        self.timer = None
        self.querying = False
        self.last_failure = 0.0

    def start(self, value: bytes, sink: Sink, chunked: bool, head: bytes = b"") -> LogFollow:
        """A follow of what the header value `value` names, after the response head `head`: ValueError (and
        nothing written) when the value names nothing followable."""
        handoff = log_handoff.decode(value)
        try:
            reader = self.open_log(handoff.log)
        except Exception as error:  # noqa: BLE001 - a name that is not a log's, an executor that is not here
            raise ValueError(f"cannot read the log {handoff.log!r}: {error}") from None
        follow = LogFollow(self, handoff, reader, sink, chunked)
        sink.write(head)
        self.active.add(follow)
        self._query()
        follow.pump()
        if self.timer is None:
            self.timer = self.loop.call_later(self.poll_seconds, self._poll)
        return follow

    def close(self) -> None:
        for follow in list(self.active):
            follow.cancel()

    def _poll(self) -> None:
        self.timer = None
        if not self.active:
            return
        self._query()
        for follow in list(self.active):
            if not follow.scheduled:
                follow.pump()
        self.timer = self.loop.call_later(self.poll_seconds, self._poll)

    def _query(self) -> None:
        """Ask (in a thread) which followed jobs and endpoints have ended; one query at a time."""
        if self.querying or not self.active:
            return
        asked = list(self.active)
        jobs = {follow.key[1] for follow in asked if follow.key[0] == "job"}
        endpoints = {follow.key[1] for follow in asked if follow.key[0] == "endpoint"}
        self.querying = True
        future = self.loop.run_in_executor(None, self.finished, jobs, endpoints)
        future.add_done_callback(lambda done: self._answered(done, asked))

    def _answered(self, future, asked) -> None:
        self.querying = False
        try:
            ended = set(future.result())
        except Exception as error:  # noqa: BLE001 - the database is down: follows wait, and ask again
            if time.monotonic() - self.last_failure > 60:
                self.last_failure = time.monotonic()
                self.log(f"log follows cannot read job states: {error!r}")
            return
        for follow in asked:
            if follow.key in ended:
                follow.ended = True


def log_reader(config) -> Callable:
    """`open_log(name)` for `Follows`: the log named `name` read through the executor `config` (the backend's
    kaos_backend.config.Config) names, as every reader of a log reads it (executors.log_of)."""
    from kaos_backend.executors import log_of

    def open_log(name: str):
        return log_of(config, name).open_log()
    return open_log


def finished_query(database_url: str) -> Callable[[Set[str], Set[str]], Set[Key]]:
    """`finished(jobs, endpoints)` over SQL, read-only: the jobs whose state is terminal or whose row is gone,
    and the endpoints whose row is gone, which are being killed or gave up (services.inference.endpoint_ended: the
    API's own follow ends on the same); a name `notebook-...` in `endpoints` is a notebook's
    (services.notebooks.notebook_ended)."""
    from kaos_model import JobState
    from sqlalchemy import create_engine, select
    from sqlalchemy.engine import make_url

    from kaos_backend.models import Endpoint, Job, Notebook
    from kaos_backend.services.inference import endpoint_ended
    from kaos_backend.services.notebooks import notebook_ended

    terminal = {state.value for state in JobState if state.is_terminal}
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_engine(url, future=True, connect_args={"timeout": 30})
    else:
        engine = create_engine(url, future=True, pool_pre_ping=True)

    def finished(jobs: Set[str], endpoints: Set[str]) -> Set[Key]:
        ended: Set[Key] = set()
        with engine.connect() as connection:
            if jobs:
                states: Dict[str, str] = dict(connection.execute(
                    select(Job.id, Job.state).where(Job.id.in_(sorted(jobs)))).all())
                ended.update(("job", job) for job in jobs if job not in states or states[job] in terminal)
            served = {name for name in endpoints if not name.startswith(NOTEBOOK_PREFIX)}
            for model, names, rule in ((Endpoint, served, endpoint_ended),
                                       (Notebook, endpoints - served, notebook_ended)):
                if names:
                    rows = {name: (desired, state) for name, desired, state in connection.execute(
                        select(model.name, model.desired, model.state).where(model.name.in_(sorted(names)))).all()}
                    ended.update(("endpoint", name) for name in names if rule(*rows.get(name, (None, None))))
        return ended
    return finished


class _FollowOwner:
    """A handed-off follow as its client connection sees it: in the place of an upstream (the client aborts it
    when it leaves), and the Sink the follow writes to."""

    def __init__(self, client):
        self.client = client
        self.follow: Optional[LogFollow] = None

    # -- what the client calls on its upstream
    def abort(self) -> None:
        if self.follow is not None:
            self.follow.cancel()

    def pause_reading(self) -> None:
        pass  # the follow reads on only while the client's send buffer is below HIGH_WATER

    def resume_reading(self) -> None:
        if self.follow is not None and not self.follow.closed and not self.follow.scheduled:
            self.follow.scheduled = True
            self.client.loop.call_soon(self.follow.pump)

    # -- Sink
    def write(self, data: bytes) -> None:
        self.client.send(data)

    def backlog(self) -> int:
        transport = self.client.transport
        return 0 if transport is None or transport.is_closing() else transport.get_write_buffer_size()

    def follow_done(self) -> None:
        if self.client.upstream is self:
            self.client.response_finished()


def api_handoff(follows: Follows):
    """The `routing.API_HANDOFFS` handler for `X-Kaos-Follow`: `handler(client, request, response) -> bool`."""
    from kaos_backend.front.heads import end_to_end, json_response, response_head

    def handler(client, request, response) -> bool:
        value = next((value for name, _, value in response.headers if name == log_handoff.HEADER_NAME), None)
        if response.status != 200 or value is None:
            return False
        owner = _FollowOwner(client)
        chunked = request.version == "1.1"
        extra = [b"Transfer-Encoding: chunked"] if chunked else []
        if not chunked:
            client.keep_alive = False
        if not client.keep_alive:
            extra.append(b"Connection: close")
        head = response_head(response.status, response.status_text,
                             end_to_end(response.headers, drop=(log_handoff.HEADER_NAME,)), extra)
        client.upstream = owner
        client.disarm()  # a follow waits for the workload's next line as long as it takes: the client leaving ends it
        try:
            owner.follow = follows.start(value, owner, chunked, head)
        except ValueError as error:
            follows.log(f"the API handed off a log follow that cannot be followed: {error}")
            client.send(json_response(502, "INTERNAL_ERROR",
                                      "The kaos API server broke off the request: see the backend log"))
            client.response_finished()
        return True
    return handler
