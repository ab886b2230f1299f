"""A training's output handed back (services/pod_output.py) as the API worker takes it: a body cut short, one over
the upload limit or over the unpacked limit leaves nothing; hand-backs racing each other store one output."""
import io
import threading

import pytest

from kaos_backend.errors import InvalidBundle, OutputExists, PayloadTooLarge
from kaos_backend.executors.base import Artifact, WorkloadSpec
from kaos_backend.services.pod_output import PodOutput
from tests.backend.helpers import zip_bytes

JOB = "c" * 32
SPEC = WorkloadSpec(job_id=f"{JOB}-0", kind="train", log=f"jobs/{JOB}", output=Artifact.output_of(JOB, "abcdef"))


class CutShort(io.RawIOBase):
    """A request body whose client goes away after `size` bytes (as werkzeug raises ClientDisconnected)."""

    def __init__(self, data: bytes, size: int):
        self.data, self.size = io.BytesIO(data[:size]), size

    def read(self, size=-1):
        chunk = self.data.read(min(size, 1000) if size and size > 0 else 1000)
        if not chunk:
            raise ConnectionResetError("the client went away")
        return chunk


@pytest.fixture
def output(tmp_path):
    return PodOutput(tmp_path / "data", max_upload_bytes=200_000, max_bundle_bytes=1_000_000)


def leftovers(output: PodOutput):
    out = output.layout.output_dir(JOB, "abcdef").parent
    return sorted(path.name for path in out.iterdir()) if out.exists() else []


def test_a_body_cut_short_leaves_nothing(output):
    data = zip_bytes({"model/a.bin": bytes(range(256)) * 400})
    with pytest.raises(ConnectionResetError):
        output.receive(SPEC, CutShort(data, len(data) // 2))
    assert leftovers(output) == []


def test_a_body_over_the_upload_limit_leaves_nothing(output):
    import os
    with pytest.raises(PayloadTooLarge, match="larger than the limit"):
        output.receive(SPEC, io.BytesIO(zip_bytes({"model/noise": os.urandom(300_000)})))
    assert leftovers(output) == []


def test_a_zip_over_the_unpacked_limit_leaves_nothing(output):
    with pytest.raises(PayloadTooLarge):
        output.receive(SPEC, io.BytesIO(zip_bytes({"model/zeros": b"\0" * 2_000_000})))
    assert leftovers(output) == []


def test_a_body_that_is_not_a_zip_is_an_invalid_bundle(output):
    with pytest.raises(InvalidBundle, match="malformed"):
        output.receive(SPEC, io.BytesIO(b"not a zip"))
    assert leftovers(output) == []


def test_an_empty_output_is_stored_empty(output):
    assert output.receive(SPEC, io.BytesIO(zip_bytes({}))) == {"output": f"{JOB}/abcdef", "files": 0, "bytes": 0,
                                                               "created": True}
    assert leftovers(output) == ["abcdef"]


def test_racing_hand_backs_store_one_output(output):
    same = zip_bytes({"model/scale.txt": "3"})
    other = zip_bytes({"model/scale.txt": "4"})
    answers, barrier = [], threading.Barrier(6)

    def hand_back(data):
        barrier.wait()
        try:
            answers.append(output.receive(SPEC, io.BytesIO(data))["created"])
        except OutputExists:
            answers.append("conflict")

    threads = [threading.Thread(target=hand_back, args=(same if index % 2 else other,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers.count(True) == 1 and len(answers) == 6
    kept = (output.layout.output_dir(JOB, "abcdef") / "model" / "scale.txt").read_text()
    assert answers.count(False) == 2 and answers.count("conflict") == 3  # the 2 others like the kept one
    assert kept in ("3", "4") and leftovers(output) == ["abcdef"]
