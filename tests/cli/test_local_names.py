"""Endpoint and notebook names name local files too (`<name>.log`, `<out_dir>/<ws>/<endpoint>/`): a name that is
not a plain file name is refused in one line before any request, whether given by name or found by -i
(kaos_cli.options.local_name); against the scripted HTTP server."""
import pytest

from kaos_cli import state
from tests.cli.conftest import one_line

BAD_NAMES = ["../x", "a/b", ".hidden", "a\\b", ""]
# group → its name option, what the refusal calls it, its index cache, the route prefix of its requests
GROUPS = {"serve": ("-e", "endpoint", "serve", "/api/inference"),
          "notebook": ("-n", "notebook", "notebook", "/api/notebook")}


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("name", BAD_NAMES)
def test_names_that_are_not_file_names_are_refused(kaos, ws, group, name):
    flag, what, _, prefix = GROUPS[group]
    for command in (("logs",), ("kill", "-y")):
        assert one_line(kaos(group, *command, flag, name)) == f"Error - Invalid {what} name {name!r}"
    assert not [request for request in ws.requests if request.path.startswith(prefix)]


@pytest.mark.parametrize("group", GROUPS)
def test_a_listed_name_that_is_not_a_file_name_is_refused(kaos, ws, group):
    _, what, cache, prefix = GROUPS[group]
    state.write_cache(cache, ["../escape"])
    assert one_line(kaos(group, "logs", "-i", "0")) == f"Error - Invalid {what} name '../escape'"
    assert not [request for request in ws.requests if request.path.startswith(prefix)]
