"""The express lane's exchange with the endpoint once its request is sent (a part of express.Express, kept apart by
responsibility): the response relayed (whole in one write, or its head first when its body is late), the
connection given back to the pool, and everything else handed to the general path (upstream.Upstream) with every
byte read so far. The state it works on is the Express's."""
import httptools

from kaos_backend.front import routing
from kaos_backend.front.body import Body
from kaos_backend.front.express_response import EXPRESS_RESPONSE_BYTES, plannable
from kaos_backend.front.parsing import Request
from kaos_backend.front.upstream import Upstream


class ExpressExchange:
    """The upstream side of express.Express (a mixin: Express holds the attributes). pool.Link calls the
    connection's events here; client.Client calls what it calls on an upstream (`abort`, `pause_reading`...)."""
    __slots__ = ()

    # -- the response (the pooled connection's pool.Link calls these)
    def data_received(self, data):
        answer = self.answer
        if (answer is not None and not self.raw_size and len(data) == answer[1] and not self.head_sent
                and data.startswith(answer[0])):  # (the common case of _answer_as_planned, inline: one call less)
            self.response.whole = True  # (as read whole: a write that pauses the client pauses nothing here)
            self.client.transport.write(answer[2] + data[len(answer[0]):])
            self._finish(trusted=True, keep_alive=True)
            return
        if not self.head_sent:
            if answer is not None and (self.answering or (not self.raw_size and data.startswith(answer[0]))):
                # byte for byte the head of the last response relayed: llhttp would read it the same way (see
                # express.Express._relay_as_planned), so it goes out as that one did once its body is whole
                self._answer_as_planned(data, answer)
                return
        self._read(data)

    def _read(self, data) -> None:
        """A read of the response, by the parser."""
        response = self.response
        try:
            response.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            stopped = True
        else:
            stopped = False
        if self.head_sent:  # the head is out (the hold ran out): the body follows as it comes
            if response.body:
                pieces, response.body = response.body, []
                self.client.transport.write(pieces[0] if len(pieces) == 1 else b"".join(pieces))
            if response.whole:
                self._finish(trusted=not stopped, keep_alive=response.keep_alive)
            elif stopped:  # not for a body of a known length; as the general path would, cut the client
                self.abort()
                self.client.abort()
            elif not self.client.write_paused:  # (paused by that write: the send timeout runs instead)
                self.client.arm(self.read_timeout, self.on_read_timeout)
            return
        self.raw.append(data)
        self.raw_size += len(data)
        if stopped:  # (handed over outside the except: the general parser's errors must not chain to this one)
            self._hand_over()
        elif response.whole:  # (the client is open: its leaving would have aborted this exchange)
            body = response.body
            head = response.head()
            self.client.transport.write(head + (body[0] if len(body) == 1 else b"".join(body)))
            if response.keep_alive:
                self._learn_answer(head, response.length)
            self._finish(trusted=True, keep_alive=response.keep_alive)
        elif self.raw_size > EXPRESS_RESPONSE_BYTES:
            self._hand_over()
        else:
            if response.length is not None:  # the head is whole: each read of its body re-arms the read timer, as
                self.client.arm(self.read_timeout, self.on_read_timeout)  # the general path's (until then: 504)
            if not self.held:
                self.held = True
                self.front.holds.hold(self)

    def _answer_as_planned(self, data, answer) -> None:
        """A read of a response whose head is the planned `answer`'s (head as read, whole size, head to send): sent
        once the body is whole, held for it meanwhile. Reads past the planned size (bytes after the response) are
        read by the parser as if there were no plan, from the response's first byte."""
        self.raw.append(data)
        self.raw_size += len(data)
        size = answer[1]
        if self.raw_size == size:
            raw = self.raw
            body = data[len(answer[0]):] if len(raw) == 1 else b"".join(raw)[len(answer[0]):]
            self.response.whole = True  # (as read whole: a write that pauses the client pauses nothing here)
            self.client.transport.write(answer[2] + body)
            self.answering = False
            self._finish(trusted=True, keep_alive=True)
            return
        if self.raw_size < size:
            if not self.answering:
                self.answering = True
                if not self.held:
                    self.held = True
                    self.front.holds.hold(self)
            self.client.arm(self.read_timeout, self.on_read_timeout)  # the head is whole, as the general path's
            return
        self._read_as_parsed()

    def _read_as_parsed(self) -> None:
        """The planned answer's reads so far, read by the parser as one (the plan is left)."""
        self.answering = False
        raw = self.raw
        self.raw, self.raw_size = [], 0
        self._read(raw[0] if len(raw) == 1 else b"".join(raw))

    def _learn_answer(self, head: bytes, length: int) -> None:
        """The plan of a kept-alive plain response just sent as `head`: its head as read, if short, ending where
        llhttp's ended (nothing after the body: it is whole, and a byte more would have stopped the lane)."""
        raw = self.raw
        data = raw[0] if len(raw) == 1 else b"".join(raw)
        raw_head = len(data) - length
        if plannable(data, raw_head):
            self.answer = (data[:raw_head], len(data), head)

    def hold_expired(self) -> None:
        """The body did not follow its head within the hold: the head goes out alone, as the general path's would,
        and the body follows in the lane; a head not whole yet goes to the general path."""
        if self.answering and self.transport is not None:  # a planned answer's body is late: parsed after all
            self._read_as_parsed()  # (still held: not held again)
            if self.transport is None or not self.held:
                return
        self.held = False
        if self.transport is None:
            return
        response = self.response
        if response.length is None:
            self._hand_over()._release_head()  # the general path's own hold has run out too
            return
        pieces, response.body = response.body, []
        self.head_sent = True  # (before the write: a client it pauses asks this lane to pause, not to hand over)
        self.raw = []
        self.client.transport.write(response.head() + b"".join(pieces) if pieces else response.head())
        if not self.client.write_paused:
            self.client.arm(self.read_timeout, self.on_read_timeout)

    def _finish(self, trusted: bool, keep_alive: bool) -> None:
        """The response is out: the connection back to the pool when the server keeps it alive (or closed, and its
        server distrusted when it sent bytes after the response, as the general path does), then the client's next
        request."""
        transport, link = self.transport, self.link
        if self.held or self.paused:
            self._forget(keep_reading=True)
        else:  # (what _forget does here, inline: the common end of a response)
            self.response.body = []
            self.answering = False
            self.raw = []
            self.head_sent = False
            self.headers = self.payload = ()  # (an idle connection keeps no request: a body may be 256 KiB)
            self.head = b""
        self.transport = self.link = None
        link.target = None  # (this lane goes on with the client: no late event of this connection may reach it)
        reusable = trusted and keep_alive and not transport.is_closing()
        if not reusable:  # the parser has seen the connection's last response (or an error): a new one for the next
            self.response = None
        key = self.key
        pool = self.front.pool
        if reusable:
            pool.give(key, transport)
        elif trusted:
            transport.close()
        else:
            transport.abort()
            pool.distrust(key)
        # the connection is back in the pool before the client's next request starts: one pipelined behind this
        # one goes on the same connection, as on the general path (upstream.Upstream.response_done)
        self.client.lane_finished()

    def _forget(self, keep_reading: bool = False) -> None:
        """Let go of the connection of the request in flight (its response read to the end when `keep_reading`;
        else a new reading for the next request: this one's parser is mid-message)."""
        if self.held:
            self.held = False
            self.front.holds.release(self)
        if self.paused:
            self.paused = False
            if keep_reading:
                self.transport.resume_reading()
        if keep_reading:
            self.response.body = []
        else:
            self.response = None
        self.transport = self.link = None
        self.raw = []
        self.raw_size = 0
        self.answering = False
        self.head_sent = False
        self.headers = self.payload = ()
        self.head = b""

    # -- handing over to the general path
    def _hand_over(self) -> Upstream:
        """The exchange goes on as an upstream.Upstream that sent this request on this connection and has read
        every byte read so far. Returns it."""
        client = self.client
        request = self._request()
        upstream = Upstream(client, request, self.key, self.head, self.front.pool)
        upstream.transport = self.transport
        upstream.reused = upstream.sent = True
        link = self.link
        upstream.reader = link.reader
        link.reader.reset(upstream)
        link.target = upstream
        client.active = request
        client.upstream = upstream
        if client.on_deadline is self.on_read_timeout:  # the read timer armed as the request went: the upstream's
            client.on_deadline = upstream._read_timeout  # (it re-arms it, for the body, once it has the head)
        raw = self.raw
        self._forget()
        if raw:
            upstream.data_received(raw[0] if len(raw) == 1 else b"".join(raw))
        return upstream

    def _request(self) -> Request:
        """The request in flight as the general path's parsing.Request."""
        config = self.config
        request = Request()
        request.method = self.method
        request.target = self.target
        request.headers = list(self.headers)  # (a plan's list may be this one: the general path must not change it)
        path, question, query = self.target.partition(b"?")
        name, _, rest = path[1:].partition(b"/")
        request.route = routing.Route(name.decode("ascii"), b"/" + rest.lstrip(b"/") + question + query,
                                      config.serve_max_body_bytes, False)
        payload = self.payload[0]
        if payload or request.header(b"content-length") is not None:
            request.body = body = Body(config.serve_max_body_bytes, config.body_memory_bytes, "")
            body.write(payload)
            request.length = len(payload)
        request.complete = True
        return request

    def _read_timeout(self) -> None:
        if self.transport is None:
            return
        if self.head_sent:  # between body reads: the status is out, only a cut connection tells the client
            self.abort()
            self.client.abort()
            return
        upstream = self._hand_over()
        if not upstream.done:
            (upstream._read_timeout if upstream.response is None else upstream._body_timeout)()

    # -- what the client and the connection ask of an upstream
    def abort(self) -> None:
        """The client is gone or refused: the upstream connection is dropped."""
        if self.transport is not None:
            self.link.target = None
            self.transport.abort()
            self._forget()

    def pause_reading(self) -> None:
        """The client reads its responses slower than they come (called from within the lane's own writes to the
        client: a whole response is out then, nothing to pause)."""
        if self.transport is None or self.response.whole:
            return
        if self.head_sent:
            self.paused = True
            self.transport.pause_reading()
        else:
            self._hand_over().pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.paused:
            self.paused = False
            self.transport.resume_reading()
            self.client.arm(self.read_timeout, self.on_read_timeout)  # (the send timeout's, until now)

    def connection_lost(self, exc) -> None:
        if self.transport is None:
            return
        if self.head_sent:  # the body ended early: so must the client's connection (as the general path)
            self._forget()
            self.client.abort()
        else:
            self._hand_over().connection_lost(exc)

    def eof_received(self):
        return False

    def pause_writing(self) -> None:
        pass  # the request went out in one write: nothing more to hold back

    def resume_writing(self) -> None:
        pass
