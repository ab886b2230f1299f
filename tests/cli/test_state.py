import os
import stat

import pytest

from kaos_cli import state
from kaos_cli.errors import IndexProblem, KaosError
from kaos_cli.state import Config


def test_state_dir_follows_cwd_and_override(project, monkeypatch, tmp_path):
    assert state.state_dir() == project / ".kaos"
    monkeypatch.setenv("KAOS_STATE_DIR", str(tmp_path / "elsewhere"))
    assert state.state_dir() == tmp_path / "elsewhere"


def test_round_trip(project):
    config = Config.load()
    config.set_user("alice")
    config.set_context("remote", url="http://h:1/api/", token="t%ok=en", kind="remote")
    config.set_context("LOCAL", url="http://127.0.0.1:8080/api/", token="x", kind="local", pid=42, port=8080)
    config.set_active("LOCAL")
    config.set_workspace("mnist")
    config.save()

    again = Config.load()
    assert again.user == "alice"
    assert again.contexts == ["remote", "LOCAL"]
    assert again.active == "LOCAL"
    assert again.context("remote") == {"url": "http://h:1/api/", "token": "t%ok=en", "kind": "remote"}
    assert again.context("LOCAL")["pid"] == "42"
    assert again.workspace == "mnist"
    text = (project / ".kaos" / "config").read_text()
    assert "[context:LOCAL]" in text and "environments = remote,LOCAL" in text


def test_config_is_private_and_written_atomically(project, monkeypatch):
    config = Config.load()
    config.set_context("remote", url="u", token="secret", kind="remote")
    config.save()
    path = project / ".kaos" / "config"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(state.os, "replace", lambda src, dst: (replaced.append((src, dst)), real_replace(src, dst)))
    config.set_workspace("w")
    config.save()
    (src, dst), = replaced
    assert os.path.dirname(src) == str(project / ".kaos") and dst == path
    assert not os.path.exists(src)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in (project / ".kaos").iterdir()) == ["config"]


def test_failed_write_keeps_the_old_file(project, monkeypatch):
    path = project / ".kaos" / "config"
    state.write_private(path, "old")

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(state.os, "replace", broken)
    with pytest.raises(OSError):
        state.write_private(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["config"]


def test_missing_sections_never_raise(project):
    config = Config.load()  # no file at all
    assert not config.exists
    assert config.contexts == [] and config.active is None and config.workspace is None
    assert config.context("remote") is None and config.context(None) is None
    assert config.user == "tester" and not config.has_user

    (project / ".kaos").mkdir()
    (project / ".kaos" / "config").write_text("[active]\n[contexts]\n")
    config = Config.load()
    assert config.contexts == [] and config.active is None and config.context("LOCAL") is None


def test_remove_context_clears_active_only_when_it_was_active(project):
    config = Config.load()
    config.set_context("remote", url="a", token="t", kind="remote")
    config.set_context("LOCAL", url="b", token="t", kind="local")
    config.set_active("remote")
    config.remove_context("LOCAL")
    assert config.active == "remote" and config.contexts == ["remote"]
    config.remove_context("remote")
    assert config.active is None and config.contexts == []


def test_malformed_config_is_a_kaos_error(project):
    (project / ".kaos").mkdir()
    (project / ".kaos" / "config").write_text("no section header\n")
    with pytest.raises(KaosError, match="malformed"):
        Config.load()


def test_cache_round_trip_and_delete(project):
    state.write_cache("workspace", ["a", "b"])
    assert state.read_cache("workspace") == ["a", "b"]
    assert stat.S_IMODE((project / ".kaos" / ".workspace.cache").stat().st_mode) == 0o600
    state.write_cache("backend", ["LOCAL"])
    state.delete_caches()
    assert state.read_cache("workspace") is None
    assert state.read_cache("backend") == ["LOCAL"]


def test_a_cache_or_token_file_nested_too_deeply_is_no_cache(project):
    from kaos_cli import notebook_tokens

    deep = "[" * 100000 + "]" * 100000
    state.write_cache("train", ["a"])
    state.cache_path("train").write_text(deep)
    assert state.read_cache("train") is None
    (project / ".kaos" / notebook_tokens.FILE_NAME).write_text(deep)
    assert notebook_tokens.token_of("http://h/api/", "notebook-ws-x", "0" * 16) is None
    with pytest.raises(ValueError, match="nested too deeply"):
        state.parse_json(deep)


def test_index_needs_a_cache(project):
    with pytest.raises(IndexProblem) as problem:
        state.resolve_index("workspace", 0)
    assert str(problem.value) == "Index not available until running `kaos workspace list`"
    with pytest.raises(IndexProblem, match="`kaos build list`"):
        state.resolve_index("backend", 0)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_valid_indices(project, index):
    state.write_cache("train", ["j0", "j1", "j2"])
    assert state.resolve_index("train", index) == f"j{index}"


@pytest.mark.parametrize("index", [3, 4, -1])
def test_invalid_indices(project, index):
    state.write_cache("train", ["j0", "j1", "j2"])
    with pytest.raises(IndexProblem) as problem:
        state.resolve_index("train", index)
    assert str(problem.value) == f"Index {index} does not exist... Run `kaos train list` again"


def test_corrupt_cache_counts_as_missing(project):
    (project / ".kaos").mkdir()
    (project / ".kaos" / ".serve.cache").write_text("{not json")
    with pytest.raises(IndexProblem, match="not available until running `kaos serve list`"):
        state.resolve_index("serve", 0)
