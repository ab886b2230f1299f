"""The express lane's request body that comes after its head (a part of express.Express, kept apart by
responsibility). Many clients write a request's head and its body separately (Python's http.client, and so
`requests` and urllib3, always do), so a read is often a whole head and the rest of the body follows in the next
read or reads. The lane takes such a head when it would take the request and the body has a declared length
(Content-Length) within EXPRESS_REQUEST_BYTES: the connection goes to the LANE_BODY state, its reads are collected
as they come and, once they make the head and exactly its body, `relay` takes them as one read (so every check of
a whole read applies, and a connection's repeated request still meets its plan).

The body gets `body_hold_seconds` (config.py; 50 ms by default) to come whole. Anything else, a body that comes
later, bytes past its end (a pipelined request) or a read that `relay` declines after all, goes the general way as
if the lane had never read it: the bytes collected are handed to the client's parser (client.Client._feed), whose
body timers and bounds start then. So a client that stalls costs the lane at most the hold and the bytes of one
read, and no upstream connection is taken before the body is whole.
"""
from kaos_backend.front.express_response import head_ends_at
from kaos_backend.front.reading import HEAD, LANE_BODY

EXPRESS_REQUEST_BYTES = 256 * 1024  # head and body together; a larger request is read the general way


class ExpressBody:
    """The request-body side of express.Express (a mixin: Express holds the attributes `collected`,
    `collected_size`, `expected`; `expected` is 0 when nothing is collected)."""
    __slots__ = ()

    def collect_from(self, data, expected: int) -> bool:
        """Hold `data`, a read that is a whole head and the start of its body, until the reads make `expected`
        bytes: True (the read is the lane's for now)."""
        self.collected = [data]
        self.collected_size = len(data)
        self.expected = expected
        client = self.client
        client.state = LANE_BODY
        client.deadline = client.on_deadline = None  # (bounded by the hold, not the client's deadline)
        self.front.body_holds.hold(self)
        return True

    def _collect_rest(self, data) -> bool:
        """`relay` for a read that is a whole head (parsed, with a Content-Length) and part of its body: held for
        the rest if the lane would take the request; False for the general path otherwise."""
        try:
            length = int(self.declared)
        except ValueError:
            return self._decline()
        payload = sum(len(piece) for piece in self.payload)
        head = len(data) - payload
        expected = head + length
        # the head ends where llhttp's ends (no byte of the head is taken for the body's), within the size bounds
        if (expected > EXPRESS_REQUEST_BYTES or length > self.max_body or not head_ends_at(data, head)
                or (head > self.small_head and not self._within_bounds()) or self._route() is None):
            return self._decline()
        self.headers = self.lines = self.payload = ()
        return self.collect_from(data, expected)

    def collect(self, data) -> None:
        """A read while the connection is in LANE_BODY: collected; once the body is whole, relayed."""
        self.collected.append(data)
        self.collected_size += len(data)
        if self.collected_size >= self.expected:
            self._end_collecting(whole=self.collected_size == self.expected)

    def body_hold_expired(self) -> None:
        """The body did not come whole within the hold: the general way takes what came."""
        if self.expected and self.client.state == LANE_BODY:
            self._end_collecting(whole=False)
        else:  # (the client left meanwhile)
            self.collected, self.expected = [], 0

    def _end_collecting(self, whole: bool) -> None:
        self.front.body_holds.release(self)
        collected = self.collected
        data = collected[0] if len(collected) == 1 else b"".join(collected)
        self.collected, self.expected = [], 0
        client = self.client
        client.state = HEAD
        if whole and self.relay(data):
            return
        client._feed(data)  # (HEAD, nothing active, queued or held: as data_received would, the general way)
