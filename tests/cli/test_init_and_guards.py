"""`kaos init` (verified before writing) and the guards, against a scripted HTTP server."""
import stat

import pytest

from kaos_cli.state import Config
from tests.cli.conftest import one_line, write_config

OK = {"status": "ok", "version": "2.0.0", "executor": "local"}


def _health(server, token="secret"):
    def answer(request):
        if request.headers.get("x-token") != token:
            return 401, {"error_code": "AUTHORIZATION_FAILURE", "message": "Unauthorized Token"}, "application/json"
        return 200, OK, "application/json"

    server.handle("GET", "health", answer)


def test_init_success_writes_the_active_remote_context(kaos, project, server):
    _health(server)
    result = kaos("init", "-e", server.url, "-t", "secret")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"Info - kaos successfully connected to {server.url}"
    config = Config.load()
    assert config.active == "remote" and config.contexts == ["remote"]
    assert config.context("remote") == {"url": server.url, "token": "secret", "kind": "remote"}
    assert config.user == "tester"
    assert stat.S_IMODE((project / ".kaos" / "config").stat().st_mode) == 0o600
    request, = server.requests
    assert request.path == "/api/health" and request.query == {"user": ["tester"]}


def test_init_prompts_for_a_hidden_token(kaos, server):
    _health(server)
    result = kaos("init", "-e", server.url, input="secret\n")
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output
    assert Config.load().context("remote")["token"] == "secret"


def test_init_against_a_platform_with_a_part_down_connects_and_says_it(kaos, project, server):
    """The backend answered and took the token, but a part of it is down (here the engine its workloads run on:
    a Kubernetes API server that cannot be reached): init writes the context (nothing is wrong with it) and says
    what is down, instead of refusing to connect until the platform is whole again."""
    down = "The Kubernetes API server does not answer since 2026-12-01 04:16:32 UTC (at http://10.0.0.1:6443: ...)"
    server.route("GET", "health", 503, {"error_code": "PLATFORM_UNHEALTHY", "message": down, "part": "engine",
                                         "status": "degraded"})
    result = kaos("init", "-e", server.url, "-t", "secret")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"Warning - {down}", f"Info - kaos successfully connected to {server.url}"]
    assert Config.load().context("remote") == {"url": server.url, "token": "secret", "kind": "remote"}


def test_init_unreachable_writes_nothing(kaos, project, unused_port):
    url = f"http://127.0.0.1:{unused_port}/api/"
    assert one_line(kaos("init", "-e", url, "-t", "x")) == \
        f"Warning - Please ensure the endpoint is available - {url} is unreachable!"
    assert not (project / ".kaos").exists()


def test_init_wrong_token_writes_nothing(kaos, project, server):
    _health(server)
    assert one_line(kaos("init", "-e", server.url, "-t", "wrong")) == \
        f"Error - Unauthorized token - the backend at {server.url} rejected it"
    assert not (project / ".kaos").exists()


@pytest.mark.parametrize("url", ["ftp://host/api/", "notaurl", "host:8080/api/"])
def test_init_invalid_url(kaos, project, url):
    """An endpoint without http:// said "Missing endpoint!" (1.x's text for none given): it is given, and invalid."""
    assert one_line(kaos("init", "-e", url, "-t", "x")) == \
        f"Warning - Please run kaos init with a valid URL - {url} is invalid!"
    assert not (project / ".kaos").exists()


@pytest.mark.parametrize("path, reply", [
    ("", None),  # the backend's root: its own 404 NOT_FOUND JSON
    ("serve-x/", (404, "<!doctype html>\n<html><body><h1>Not Found</h1>\n<p>nothing here</p></body></html>",
                  "text/html")),
    ("site/", (200, "<html><body>a web site</body></html>", "text/html")),
    ("other/", (405, {"error_code": "METHOD_NOT_ALLOWED", "message": "Method GET is not allowed"},
                "application/json")),
], ids=["root", "html 404", "html 200", "405"])
def test_init_with_an_endpoint_that_is_not_the_api_says_what_it_is(kaos, project, server, path, reply):
    endpoint = f"http://127.0.0.1:{server.port}/{path}"
    if reply:
        server.routes[("GET", f"/{path}health")] = reply
    assert one_line(kaos("init", "-e", endpoint, "-t", "secret")) == (
        f"Error - No kaos backend API at {endpoint} - the endpoint is the backend's API URL, "
        f"e.g. http://127.0.0.1:{server.port}/api/")
    assert [request.path for request in server.requests] == [f"/{path}health"]
    assert not (project / ".kaos").exists()


def test_init_against_an_api_without_health_keeps_the_placeholder(kaos, project, server):
    assert one_line(kaos("init", "-e", server.url, "-t", "secret")) == (
        f"Error - No kaos backend API at {server.url} - the endpoint is the backend's API URL, "
        "e.g. http://<host>:<port>/api/")


def test_reinit_asks_and_keeps_other_contexts(kaos, project, server):
    _health(server)
    assert kaos("init", "-e", server.url, "-t", "secret").exit_code == 0
    config = Config.load()
    config.set_context("LOCAL", url="http://127.0.0.1:1/api/", token="t", kind="local")
    config.save()

    refused = kaos("init", "-e", server.url, "-t", "secret", input="n\n")
    assert refused.exit_code == 1
    assert "Warning - kaos is already initialized in this directory. Do you want to overwrite?" in refused.output
    assert refused.output.strip().endswith("Aborted!")

    forced = kaos("init", "-e", server.url, "-t", "secret", "-f")
    assert forced.exit_code == 0, forced.output
    assert "Warning - Force initialization of kaos" in forced.output
    assert Config.load().contexts == ["remote", "LOCAL"]
    assert Config.load().active == "remote"


# -- guards ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["workspace", "list"], ["workspace", "current"], ["workspace", "info"],
                                  ["workspace", "kill"], ["workspace", "create", "-n", "x"],
                                  ["workspace", "set", "-n", "x"]])
def test_no_kaos_dir(kaos, args):
    assert one_line(kaos(*args)) == "Warning - .kaos directory does not exist - first run kaos init"


def test_no_config_file(kaos, project):
    (project / ".kaos").mkdir()
    assert one_line(kaos("workspace", "list")) == "Warning - ./.kaos/config does not exist - run kaos init"


@pytest.mark.parametrize("content, problem", [(b"no section header\n", "File contains no section headers."),
                                              (b"\xff\xfe\x00", "not UTF-8 text")])
def test_a_malformed_config_is_one_line_and_init_f_replaces_it(kaos, project, server, content, problem):
    (project / ".kaos").mkdir()
    (project / ".kaos" / "config").write_bytes(content)
    malformed = f"Error - The kaos config {project / '.kaos' / 'config'} is malformed ({problem}) - run kaos init -f"
    assert one_line(kaos("workspace", "list")) == malformed
    assert one_line(kaos("init", "-e", server.url, "-t", "secret")) == malformed  # not overwritten unasked
    _health(server)
    forced = kaos("init", "-e", server.url, "-t", "secret", "-f")  # what the message advises works
    assert forced.exit_code == 0, forced.output
    assert "Warning - Force initialization of kaos" in forced.output
    assert Config.load().context("remote") == {"url": server.url, "token": "secret", "kind": "remote"}


def test_no_active_context(kaos, project):
    write_config(project, "[contexts]\nenvironments = remote\n")
    assert one_line(kaos("workspace", "list")) == \
        "Warning - active context not defined - first run kaos build set"


@pytest.mark.parametrize("config", [
    "[contexts]\nenvironments = LOCAL\n[active]\nenvironment = remote\n",
    "[contexts]\nenvironments = remote,LOCAL\n[active]\nenvironment = remote\n",  # listed, no section
    "[active]\nenvironment = remote\n",  # no [contexts] at all
])
def test_destroyed_active_context(kaos, project, config):
    write_config(project, config)
    assert one_line(kaos("workspace", "list")) == (
        "Warning - Active context/build remote has been destroyed. Check available contexts with - kaos build list")


def test_active_context_found_among_several(kaos, project, server):
    """§11.14: the active context is compared with all contexts, not only the last."""
    write_config(project, f"""[contexts]
environments = remote,LOCAL
[active]
environment = remote
[context:remote]
url = {server.url}
token = secret
kind = remote
[context:LOCAL]
url = http://127.0.0.1:1/api/
token = t
kind = local
""")
    server.route("GET", "workspace", body={"names": ["a"]})
    result = kaos("workspace", "list")
    assert result.exit_code == 0, result.output


def test_missing_url_in_context(kaos, project):
    write_config(project, "[contexts]\nenvironments = remote\n[active]\nenvironment = remote\n[context:remote]\n"
                          "token = t\n")
    assert one_line(kaos("workspace", "list")) == "Warning - Missing endpoint! Please set with - kaos init"


def test_no_workspace_set(kaos, connected):
    connected.route("GET", "workspace", body={"names": ["a"]})
    for command in ("current", "info", "kill"):
        assert one_line(kaos("workspace", command)) == \
            "Warning - workspace not defined - first run kaos workspace set"


def test_workspace_deleted_on_the_server(kaos, connected):
    connected.route("GET", "workspace", body={"names": ["other"]})
    config = Config.load()
    config.set_workspace("gone")
    config.save()
    assert one_line(kaos("workspace", "current")) == (
        "Warning - Workspace gone has been deleted/killed. Please ensure the kaos train/serve commands are run "
        "on an active workspace. Check available workspaces with - kaos workspace list")


def test_unauthorized_is_one_line(kaos, connected):
    connected.route("GET", "workspace", 401, {"error_code": "AUTHORIZATION_FAILURE", "message": "Unauthorized Token"})
    assert one_line(kaos("workspace", "list")) == \
        f"Error - Unauthorized token - the backend at {connected.url} rejected it"


def test_server_error_page_is_one_line(kaos, connected):
    connected.route("GET", "workspace", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
    assert one_line(kaos("workspace", "list")) == "Error - HTTP 502 Bad Gateway: 502 Bad Gateway"


def test_guard_decorators(project, monkeypatch):
    """The decorators used by later command groups run their check before the command."""
    import click
    from click.testing import CliRunner

    from kaos_cli import guards
    from kaos_cli.main import KaosGroup

    calls = []

    @click.command()
    @guards.init_check
    def needs_init():
        calls.append("ran")

    @click.command()
    @guards.context_check
    def needs_context():
        calls.append("ran")

    group = KaosGroup(name="kaos", commands={"a": needs_init, "b": needs_context})
    assert "first run kaos init" in CliRunner().invoke(group, ["a"]).output
    write_config(project, "[default]\nuser = x\n")
    assert CliRunner().invoke(group, ["a"]).exit_code == 0
    assert "active context not defined" in CliRunner().invoke(group, ["b"]).output
    assert calls == ["ran"]


def test_an_unreachable_local_backend_says_what_to_run(kaos, project, unused_port):
    from tests.cli.conftest import write_config
    write_config(project, f"""[default]
user = tester

[contexts]
environments = LOCAL

[active]
environment = LOCAL

[context:LOCAL]
url = http://127.0.0.1:{unused_port}/api/
token = secret
kind = local
log = {project / '.kaos' / 'LOCAL' / 'backend.log'}
""")
    line = one_line(kaos("workspace", "list"))
    assert line.startswith(f"Warning - Please ensure the endpoint is available - http://127.0.0.1:{unused_port}/api/ "
                           "is unreachable! Is its backend running? See ")
    assert line.endswith("backend.log, or run kaos build deploy -c LOCAL -f")
