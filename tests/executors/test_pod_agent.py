"""The pod agent (kaos_backend/executors/pod_agent.py), stdlib only: its zip checks and the backend's bundle checks
refuse one corpus and accept another alike; run as a process (as a pod runs it, `python3 -c <source>`) against a
real HTTP server on 127.0.0.1 it unpacks, retries what may pass with backoff, gives up at once on a refusal, and
says each step in one line; under Python 3.7 too (1.x images)."""
import http.server
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from kaos_model import bundles as bundle_bounds

from kaos_backend import bundles
from kaos_backend.errors import InvalidBundle, PayloadTooLarge
from kaos_backend.executors import pod_agent
from kaos_backend.executors.pod_commands import agent_source
from tests.backend.helpers import symlink_entry, zip_bytes
from tests.backend.test_bundles import nested, nul_named_zip, renamed, twice_stored_zip

PYTHON_37 = Path("/root/.pyenv/versions/3.7.16/bin/python3")
LIMIT = 1_000_000


def with_method(data: bytes, method: int) -> bytes:
    """`data` (one stored member) claiming compression method `method` in its local and central headers."""
    data = bytearray(data)
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 8:local + 10] = method.to_bytes(2, "little")
    data[central + 10:central + 12] = method.to_bytes(2, "little")
    return bytes(data)


def encrypted(data: bytes) -> bytes:
    data = bytearray(data)
    data[data.index(b"PK\x03\x04") + 6] |= 1
    data[data.index(b"PK\x01\x02") + 8] |= 1
    return bytes(data)


def stored(entries: dict) -> bytes:
    import io
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, text in entries.items():
            archive.writestr(name, text)
    return buffer.getvalue()


REFUSED = {
    "dot-dot": zip_bytes({"a.csv": "1", "../x": "evil"}),
    "dot-dot-inside": zip_bytes({"a/../../x": "evil"}),
    "hidden-dot-dot": zip_bytes({"../.x": "evil"}),
    "absolute": zip_bytes({"/etc/x": "evil"}),
    "drive-letter": zip_bytes({"C:/x": "evil"}),
    "backslash": zip_bytes({"a\\..\\x": "evil"}),
    "long-name": zip_bytes({"a/" + "x" * 300: "1"}),
    "too-deep": zip_bytes({nested(bundle_bounds.MAX_BUNDLE_DEPTH + 1): "1"}),
    "too-long-path": zip_bytes({"f/" + "/".join(["n" * 200] * 30) + "/a": "1"}),
    "nul-byte": nul_named_zip(),
    "stored-twice": twice_stored_zip(),
    "dir-listed-twice": renamed(zip_bytes({"f/a.csv": "1", "f/sub/": None, "f/suc/": None}), "f/suc/", b"f/sub/"),
    "file-and-dir": zip_bytes({"a": "1", "a/b": "2"}),
    "symlink": zip_bytes({"a.csv": "1"}, special=[symlink_entry("link", "/etc/passwd")]),
    "fifo": zip_bytes({}, special=[("fifo", stat.S_IFIFO | 0o644, b"")]),
    "device": zip_bytes({}, special=[("dev", stat.S_IFCHR | 0o644, b"")]),
    "encrypted": encrypted(zip_bytes({"a.csv": "1"})),
    "unknown-compression": with_method(stored({"a.csv": "1"}), 99),
    "too-big": zip_bytes({"zeros": b"\0" * (LIMIT + 1)}),
}
ACCEPTED = {
    "tree": zip_bytes({"model/": None, "model/train": "#!/bin/sh\n", "data/a/b/c.csv": "1,2\n", "empty/": None}),
    "hidden-and-unicode": zip_bytes({"ünï/côde.py": "x = 1\n", "sub/.hidden": "h"}),
    "dir-implied-then-listed": zip_bytes({"f/sub/a.csv": "1", "f/sub/": None, "f/": None}),
    "at-the-limits": zip_bytes({nested(bundle_bounds.MAX_BUNDLE_DEPTH): "deep", "zeros": b"\0" * (LIMIT - 4)}),
    "empty": zip_bytes({}),
}


def test_the_agent_keeps_the_bounds_of_kaos_model():
    assert (pod_agent.MAX_MEMBERS, pod_agent.MAX_DEPTH, pod_agent.MAX_PATH_BYTES, pod_agent.MAX_NAME_BYTES) == (
        bundle_bounds.MAX_BUNDLE_MEMBERS, bundle_bounds.MAX_BUNDLE_DEPTH, bundle_bounds.MAX_BUNDLE_PATH_BYTES,
        bundle_bounds.MAX_BUNDLE_NAME_BYTES)


@pytest.mark.parametrize("case", REFUSED)
def test_the_agent_and_the_backend_refuse_the_same_zips(tmp_path, case):
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(REFUSED[case])
    with pytest.raises((InvalidBundle, PayloadTooLarge)):
        bundles.safe_extract(bundle, tmp_path / "backend", LIMIT)
    with pytest.raises(pod_agent.Refused):
        pod_agent.unpack(str(bundle), str(tmp_path / "agent" / "dest"), LIMIT)
    # nothing written by either: the backend's destination is made empty, the agent's not at all
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == ["backend",
                                                                                           "bundle.zip"]


def _tree(root: Path) -> dict:
    return {path.relative_to(root).as_posix(): None if path.is_dir() else path.read_bytes()
            for path in sorted(root.rglob("*"))}


@pytest.mark.parametrize("case", ACCEPTED)
def test_the_agent_and_the_backend_accept_the_same_zips_alike(tmp_path, case):
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(ACCEPTED[case])
    bundles.safe_extract(bundle, tmp_path / "backend", LIMIT)
    pod_agent.unpack(str(bundle), str(tmp_path / "agent"), LIMIT)
    assert _tree(tmp_path / "agent") == _tree(tmp_path / "backend")


def test_a_size_the_zip_lies_about_is_caught_while_writing(tmp_path):
    data = bytearray(stored({"a.bin": b"x" * 1000}))
    central = data.index(b"PK\x01\x02")
    data[central + 24:central + 28] = (10).to_bytes(4, "little")  # the central directory says 10 bytes
    (tmp_path / "lying.zip").write_bytes(bytes(data))
    with pytest.raises((pod_agent.Refused, pod_agent.Transient)):
        pod_agent.unpack(str(tmp_path / "lying.zip"), str(tmp_path / "out"), 100)


def test_later_artifacts_merge_into_earlier_ones_and_scripts_become_executable(tmp_path):
    (tmp_path / "code.zip").write_bytes(zip_bytes({"serve": "#!/bin/sh\n", "model.pkl": "old", "lib/a.py": "a"}))
    (tmp_path / "model.zip").write_bytes(zip_bytes({"model.pkl": "trained", "lib/b.py": "b"}))
    pod_agent.unpack(str(tmp_path / "code.zip"), str(tmp_path / "code"), LIMIT, ("serve",))
    pod_agent.unpack(str(tmp_path / "model.zip"), str(tmp_path / "code"), LIMIT, ("serve",))
    assert _tree(tmp_path / "code") == {"lib": None, "lib/a.py": b"a", "lib/b.py": b"b",
                                        "model.pkl": b"trained", "serve": b"#!/bin/sh\n"}
    assert os.access(tmp_path / "code" / "serve", os.X_OK) and not os.access(tmp_path / "code" / "lib/a.py", os.X_OK)


def test_keep_leaves_the_files_already_there_and_adds_the_missing_ones(tmp_path):
    """A notebook's work directory seeded from its bundle: the user's edits win over the bundle's files."""
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "example.ipynb").write_text("edited")
    (tmp_path / "source.zip").write_bytes(zip_bytes({"example.ipynb": "as shipped", "lib/a.py": "a"}))
    files, _ = pod_agent.unpack(str(tmp_path / "source.zip"), str(tmp_path / "work"), LIMIT, keep=True)
    assert files == 1 and _tree(tmp_path / "work") == {"example.ipynb": b"edited", "lib": None, "lib/a.py": b"a"}


def test_a_link_planted_in_the_destination_is_not_followed(tmp_path):
    (tmp_path / "dest").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "dest" / "sub").symlink_to(tmp_path / "outside")
    (tmp_path / "a.zip").write_bytes(zip_bytes({"sub/x": "evil"}))
    with pytest.raises(pod_agent.Refused, match="outside"):
        pod_agent.unpack(str(tmp_path / "a.zip"), str(tmp_path / "dest"), LIMIT)
    assert list((tmp_path / "outside").iterdir()) == []


# -- the agent as a process, against a real HTTP server ---------------------------------------------------------
class Script:
    """What the test server answers, request by request: (status, body) in turn, the last one repeated."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    def next(self, handler):
        self.requests.append((handler.command, handler.path, handler.headers.get("Authorization"),
                              handler.rfile.read(int(handler.headers.get("Content-Length") or 0))))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def server():
    scripts = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            status, body = scripts["now"].next(self)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = answer

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def serve(*answers) -> str:
        scripts["now"] = Script(*answers)
        return f"http://127.0.0.1:{httpd.server_address[1]}"
    serve.requests = lambda: scripts["now"].requests
    yield serve
    httpd.shutdown()
    httpd.server_close()


def run_agent(*arguments, python=sys.executable, token="the-token", timeout=60):
    env = {"PATH": os.environ["PATH"], **({"KAOS_ARTIFACT_TOKEN": token} if token else {})}
    return subprocess.run([str(python), "-c", agent_source(), *arguments], env=env, capture_output=True,
                          text=True, timeout=timeout)


def interpreters():
    found = [pytest.param(sys.executable, id="python3")]
    found.append(pytest.param(PYTHON_37, id="python3.7", marks=[
        pytest.mark.allow_skip_in_ci,
        pytest.mark.skipif(not PYTHON_37.exists(), reason=f"no Python 3.7 at {PYTHON_37}")]))
    return found


@pytest.mark.parametrize("python", interpreters())
def test_fetch_retries_what_may_pass_and_unpacks(tmp_path, server, python):
    error = json.dumps({"error_code": "INTERNAL_ERROR", "message": "busy"}).encode()
    base = server((503, error), (200, zip_bytes({"train": "#!/bin/sh\n", "lib/a.py": "a"})))
    plan = {"artifacts": [{"name": "source", "url": f"{base}/internal/artifacts/w-0/source",
                           "dest": str(tmp_path / "pfs" / "code"), "scripts": ["train"]}],
            "dirs": [str(tmp_path / "pfs" / "out" / "abcdef")]}
    result = run_agent("--backoff", "0.05", "fetch", json.dumps(plan), python=python)
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "starting to download data"
    assert lines[1].startswith("kaos: downloading source failed (503 Service Unavailable: busy), trying again in ")
    assert lines[2].startswith("finished downloading data after ") and lines[2].endswith("ms")
    assert lines[3].startswith(f"kaos: downloaded source into {tmp_path / 'pfs' / 'code'}: 2 files, 11 bytes after ")
    assert len(lines) == 4
    assert [request[:3] for request in server.requests()] == [
        ("GET", "/internal/artifacts/w-0/source", "Bearer the-token")] * 2
    assert os.access(tmp_path / "pfs" / "code" / "train", os.X_OK)
    assert stat.S_IMODE((tmp_path / "pfs" / "out" / "abcdef").stat().st_mode) == 0o777


@pytest.mark.parametrize("status, code", [(401, "AUTHORIZATION_FAILURE"), (403, "FORBIDDEN"), (404, "NOT_FOUND")])
def test_fetch_gives_up_at_once_on_a_refusal(tmp_path, server, status, code):
    base = server((status, json.dumps({"error_code": code, "message": "no such thing"}).encode()))
    plan = {"artifacts": [{"name": "data", "url": f"{base}/a", "dest": str(tmp_path / "data")}]}
    result = run_agent("fetch", json.dumps(plan))
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith(f"kaos: could not download data: {status} ")
    assert result.stdout.splitlines()[-1].endswith(": no such thing")
    assert len(server.requests()) == 1 and result.stderr == ""


def test_fetch_gives_up_after_its_attempts(tmp_path, server):
    base = server((502, b"<html>bad gateway</html>"))
    plan = {"artifacts": [{"name": "data", "url": f"{base}/a", "dest": str(tmp_path / "data")}]}
    result = run_agent("--attempts", "3", "--backoff", "0.01", "fetch", json.dumps(plan))
    assert result.returncode == 1 and len(server.requests()) == 3
    assert result.stdout.splitlines()[-1] == ("kaos: could not download data: 502 Bad Gateway: no details "
                                              "(after 3 attempts)")


@pytest.mark.parametrize("case", ["dot-dot", "absolute", "symlink"])
def test_fetch_refuses_an_unsafe_zip_writing_nothing_outside(tmp_path, server, case):
    base = server((200, REFUSED[case]))
    dest = tmp_path / "pfs" / "code"
    plan = {"artifacts": [{"name": "source", "url": f"{base}/a", "dest": str(dest)}]}
    result = run_agent("fetch", json.dumps(plan))
    assert result.returncode == 1 and len(server.requests()) == 1
    assert result.stdout.splitlines()[-1].startswith("kaos: could not download source: member ")
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == ["pfs"]


def test_a_connection_refused_is_tried_again_then_reported(tmp_path):
    from tests.support.backend import free_port
    plan = {"artifacts": [{"name": "data", "url": f"http://127.0.0.1:{free_port()}/a", "dest": str(tmp_path / "d")}]}
    result = run_agent("--attempts", "2", "--backoff", "0.01", "fetch", json.dumps(plan))
    assert result.returncode == 1
    assert "Connection refused" in result.stdout.splitlines()[1]
    assert result.stdout.splitlines()[-1].startswith("kaos: could not download data: ")


@pytest.mark.parametrize("python", interpreters())
def test_upload_zips_the_output_and_puts_it(tmp_path, server, python):
    out = tmp_path / "out"
    (out / "model").mkdir(parents=True)
    (out / "model" / "model.pkl").write_bytes(b"weights")
    (out / "metrics").mkdir()
    (out / "empty").mkdir()
    (out / "model" / "link").symlink_to("/etc/passwd")
    base = server((201, json.dumps({"created": True}).encode()))
    result = run_agent("upload", str(out), f"{base}/internal/artifacts/w-0/output", python=python)
    assert result.returncode == 0, result
    assert result.stdout.splitlines()[:2] == ["kaos: uploading the output",
                                              "kaos: left out of the output: model/link (a symbolic link)"]
    assert result.stdout.splitlines()[2].startswith(f"kaos: uploaded {out}: 1 files, 7 bytes after ")
    [(method, path, authorization, body)] = server.requests()
    assert (method, path, authorization) == ("PUT", "/internal/artifacts/w-0/output", "Bearer the-token")
    (tmp_path / "sent.zip").write_bytes(body)
    bundles.safe_extract(tmp_path / "sent.zip", tmp_path / "received")
    assert _tree(tmp_path / "received") == {"empty": None, "metrics": None, "model": None,
                                            "model/model.pkl": b"weights"}


def test_upload_reports_a_conflict_in_one_line(tmp_path, server):
    (tmp_path / "out").mkdir()
    base = server((409, json.dumps({"error_code": "OUTPUT_EXISTS", "message": "handed back already"}).encode()))
    result = run_agent("upload", str(tmp_path / "out"), f"{base}/o")
    assert result.returncode == 1 and result.stderr == ""
    assert result.stdout.splitlines()[-1] == ("kaos: could not upload the output: 409 Conflict: handed back "
                                              "already")


def test_without_a_token_the_agent_says_so(tmp_path):
    result = run_agent("upload", str(tmp_path), "http://127.0.0.1:9/o", token=None)
    assert (result.returncode, result.stdout) == (1, "kaos: could not upload: KAOS_ARTIFACT_TOKEN is not set\n")


def test_the_agent_source_is_the_module_without_its_docstring():
    source = agent_source()
    assert source.startswith("import ") and "def unpack(" in source
    assert len(source.encode()) < 64 * 1024  # an argv element may hold 128 KiB: the agent stays well inside
    compile(source, "pod_agent", "exec")
    assert shutil.which("python3")
