"""kaos_backend.logs.JobLog.follow, the in-process follow (the API's logs routes where the front does not take the
follow over, an executor's own log): every record in order, across the reads it makes, and bounded memory."""
import tracemalloc

from kaos_backend.logs import FOLLOW_READ_BYTES, JobLog


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_a_finished_log_is_followed_whole_and_in_order_across_reads(tmp_path):
    log = JobLog(tmp_path / "log")
    lines = [b"record %06d " % number + b"x" * (number % 300) for number in range(20_000)]
    lines.insert(5000, b"long " + b"y" * (3 * FOLLOW_READ_BYTES))  # a record longer than one read
    _write(log.path, lines)
    assert list(log.follow(lambda: True, interval=0.01)) == [line.decode() for line in lines]


def test_following_a_long_log_holds_a_read_not_the_log(tmp_path):
    log = JobLog(tmp_path / "log")
    _write(log.path, [b"%08d " % number + b"z" * 200 for number in range(100_000)])  # about 21 MB
    tracemalloc.start()
    try:
        count = sum(1 for _ in log.follow(lambda: True, interval=0.01))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 100_000
    assert peak < 2 * 1024 * 1024, f"following took {peak} bytes at its peak"
