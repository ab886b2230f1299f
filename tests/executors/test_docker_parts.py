"""The docker executor's pure parts, without an engine: the limits and arguments a container gets
(docker_spec.py), the engine's log lines and colours (docker_output.py), and the archive of what is copied into a
container (docker_staging.py)."""
import io
import os
import signal
import tarfile
from datetime import datetime, timezone

from kaos_backend.executors import docker_spec
from kaos_backend.executors.docker_output import Cursor, LogWriter, engine_line, strip_ansi
from kaos_backend.executors.docker_staging import code_archive


def test_cpu_memory_and_gpu_become_the_container_s_limits():
    assert docker_spec.resource_limits(1.5, 64 * 2 ** 20, 2) == {
        "nano_cpus": 1_500_000_000, "mem_limit": 64 * 2 ** 20, "memswap_limit": 64 * 2 ** 20,
        "device_requests": [{"Count": 2, "Capabilities": [["gpu"]]}]}
    assert docker_spec.resource_limits(None, None, 0) == {}


def test_a_serve_container_publishes_8080_on_loopback_and_runs_under_the_engine_s_init():
    arguments = docker_spec.container_arguments(
        name="n", command=["./serve"], workdir="/opt/program", env={"PORT": "8080"}, mounts=[],
        workload_labels={"io.kaos.kind": "serve"}, limits={}, publish=True)
    assert arguments["ports"] == {"8080/tcp": ("127.0.0.1", None)}
    assert arguments["init"] is True and arguments["entrypoint"] == ["./serve"] and arguments["command"] == []
    assert "ports" not in docker_spec.container_arguments(
        name="n", command=["./train", "/pfs/out/abcdef"], workdir="/w", env={}, mounts=[], workload_labels={},
        limits={}, publish=False)


def test_a_mount_target_with_a_colon_is_said_in_the_structured_form():
    assert docker_spec.data_target("features:9fd9d") == "/pfs/data/features:9fd9d"
    assert docker_spec.bind("/host", "/pfs/data/features:9fd9d", True) == \
        {"Type": "bind", "Source": "/host", "Target": "/pfs/data/features:9fd9d", "ReadOnly": True}


def test_a_build_never_pulls_uses_the_host_network_and_the_cache():
    arguments = docker_spec.build_arguments(context="/b/model", dockerfile="/b/Dockerfile", tag="build-train-w:abcde",
                                            base_image="kaos-base-python:bookworm", image_labels={"a": "b"})
    assert (arguments["pull"], arguments["network_mode"], arguments["buildargs"]) == \
        (False, "host", {"BASE_IMAGE": "kaos-base-python:bookworm"})
    assert "nocache" not in arguments
    assert docker_spec.build_arguments(context="c", dockerfile="d", tag="t", base_image=None,
                                       image_labels={})["buildargs"] == {}


def test_an_exit_code_over_128_is_the_signal_that_ended_the_main_process():
    assert docker_spec.exit_status(137) == -signal.SIGKILL
    assert docker_spec.exit_status(3) == 3 and docker_spec.exit_status(255) == 255  # 127 + 128 is no signal


def test_the_published_port_is_read_from_the_container():
    attrs = {"NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]}}}
    assert docker_spec.published_port(attrs) == 49153
    assert docker_spec.published_port({"NetworkSettings": {"Ports": {}}}) is None


def test_an_engine_line_has_its_time_in_nanoseconds():
    moment = int(datetime(2026, 11, 30, 17, 52, 10, tzinfo=timezone.utc).timestamp())
    assert engine_line(b"2026-11-30T17:52:10.197411679Z line 1\n") == (moment * 10 ** 9 + 197411679, b"line 1\n")
    assert engine_line(b"2026-11-30T17:52:10.1Z x") == (moment * 10 ** 9 + 100000000, b"x")
    assert engine_line(b"no time") == (None, b"no time")


def test_colour_codes_are_stripped_from_build_output():
    assert strip_ansi("\x1b[91mERROR: no such package\n\x1b[0m") == "ERROR: no such package\n"


def test_the_cursor_skips_what_was_written_and_survives_its_file(tmp_path):
    cursor = Cursor(str(tmp_path / "c"))
    assert cursor.since() is None and not cursor.seen(5)
    cursor.advance(3_000_000_000)
    again = Cursor(str(tmp_path / "c"))
    assert again.seen(3_000_000_000) and not again.seen(3_000_000_001) and again.since() == 2.0


def test_the_log_s_budget_counts_lines_not_written(tmp_path):
    writer = LogWriter(str(tmp_path / "log"), max_bytes=60)
    writer.output(b"a line that fits")
    writer.output(b"a line that does not fit in what is left of the budget")
    writer.record("kaos: a record of kaos's own")
    lines = (tmp_path / "log").read_text().splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == ["a line that fits", "kaos: a record of kaos's own"]
    assert writer.dropped_note().startswith("kaos: 1 lines (")


def test_the_archive_holds_regular_files_and_directories_the_later_tree_winning(tmp_path):
    code, model = tmp_path / "code", tmp_path / "model"
    (code / "pkg").mkdir(parents=True)
    (code / "train").write_text("#!/bin/sh\n")
    (code / "pkg" / "m.py").write_text("x = 1\n")
    (code / "model.pkl").write_text("old")
    model.mkdir()
    (model / "model.pkl").write_text("new")
    os.symlink("/etc/shadow", model / "link")
    archive, left_out = code_archive([code, model, tmp_path / "missing"])
    with tarfile.open(fileobj=io.BytesIO(archive.read())) as tar:
        members = {member.name: member for member in tar.getmembers()}
        assert tar.extractfile(members["pkg/m.py"]).read() == b"x = 1\n"
        last_pkl = [member for member in tar.getmembers() if member.name == "model.pkl"][-1]
        assert tar.extractfile(last_pkl).read() == b"new"
    assert members["train"].mode == 0o755 and members["pkg"].isdir()
    assert "link" not in members and left_out == ["link (a symbolic link)"]


def test_the_base_images_of_a_dockerfile_are_its_from_lines_with_their_arguments(tmp_path):
    from kaos_backend.executors.docker_bases import base_images

    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("ARG BASE_IMAGE=python:3.11-slim\nFROM ${BASE_IMAGE} AS build\nRUN true\n"
                          "FROM --platform=linux/amd64 build\nFROM scratch\nCOPY --from=build /x /x\n"
                          "from debian:bookworm-slim\n")
    assert base_images(dockerfile, {}) == ["python:3.11-slim", "debian:bookworm-slim"]
    assert base_images(dockerfile, {"BASE_IMAGE": "kaos-base-python:bookworm"}) == \
        ["kaos-base-python:bookworm", "debian:bookworm-slim"]
