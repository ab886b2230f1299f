"""The root group: banner, command order, and one line + exit 1 for every failure."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click

from kaos_cli import main
from kaos_cli.errors import KaosError
from tests.cli.conftest import one_line

REPO = Path(__file__).resolve().parents[2]
SOURCE_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
SOURCE_ENV.pop("KAOS_STATE_DIR", None)
TAGLINE = "Open source cloud agnostic minimal DevOps private versioned ML platform."


def test_help_banner_and_order(kaos):
    result = kaos("--help")
    assert result.exit_code == 0
    assert TAGLINE in result.output
    assert "|__|\\__\\ /__/" in result.output  # the ASCII art is not rewrapped
    commands = result.output.split("Commands:")[1].split()
    listed = [word for word in commands if word in {"build", "destroy", "init", "template", "workspace", "train"}]
    assert listed == ["build", "destroy", "init", "template", "workspace", "train"]


def test_bare_kaos_prints_help_and_succeeds(kaos):
    result = kaos()
    assert result.exit_code == 0 and TAGLINE in result.output


def test_usage_errors_keep_clicks_behaviour(kaos):
    result = kaos("no-such-command")
    assert result.exit_code == 2
    assert "No such command" in result.output


def _with_command(callback):
    """Run the root group with one extra command that calls `callback`."""
    group = main.KaosGroup(name="kaos", commands={"boom": click.Command("boom", callback=callback)})
    from click.testing import CliRunner

    return CliRunner().invoke(group, ["boom"])


def test_kaos_error_is_one_line():
    def fail():
        raise KaosError("something is off", level="Warning")

    result = _with_command(fail)
    assert one_line(result) == "Warning - something is off"


def test_unexpected_error_is_one_line(monkeypatch):
    monkeypatch.delenv("KAOS_DEBUG", raising=False)

    def fail():
        raise ValueError("bad value")

    result = _with_command(fail)
    assert one_line(result) == ("Error - Unexpected error: ValueError: bad value "
                                "(set KAOS_DEBUG=1 for the traceback)")


def test_kaos_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("KAOS_DEBUG", "1")

    def fail():
        raise ValueError("bad value")

    result = _with_command(fail)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "Unexpected error: ValueError: bad value" in result.output


def test_keyboard_interrupt_is_aborted():
    def interrupt():
        raise KeyboardInterrupt

    result = _with_command(interrupt)
    assert result.exit_code == 1
    assert [line for line in result.output.splitlines() if line.strip()] == ["Aborted!"]


def test_help_imports_nothing_heavy():
    """`kaos --help` must not import requests, tqdm, terminaltables or the client."""
    code = textwrap.dedent("""
        import sys
        from kaos_cli.main import cli
        try:
            cli.main(["--help"], prog_name="kaos")
        except SystemExit:
            pass
        heavy = [m for m in ("requests", "tqdm", "terminaltables", "kaos_cli.client", "kaos_backend", "flask")
                 if m in sys.modules]
        print("HEAVY", heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=SOURCE_ENV).stdout
    assert "HEAVY []" in out


def test_console_entry_point_exit_codes(tmp_path):
    run = lambda *args: subprocess.run([sys.executable, "-c", "from kaos_cli.main import start; start()", *args],
                                       capture_output=True, text=True, cwd=tmp_path,
                                       env=SOURCE_ENV)
    ok = run("--help")
    assert ok.returncode == 0 and TAGLINE in ok.stdout
    failed = run("workspace", "list")
    assert failed.returncode == 1
    assert failed.stderr.strip() == "Warning - .kaos directory does not exist - first run kaos init"
    assert failed.stdout == ""


def test_a_closed_pipe_is_not_an_error(tmp_path):
    """`kaos template list | head -1`: the reader leaves early; kaos exits quietly, no traceback."""
    import subprocess
    import sys
    from pathlib import Path
    kaos = str(Path(sys.executable).with_name("kaos"))
    pipeline = subprocess.run(f"'{kaos}' template list | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}",
                              shell=True, executable="/bin/bash", cwd=tmp_path, capture_output=True, text=True)
    assert "Traceback" not in pipeline.stderr and "Error" not in pipeline.stderr


def test_every_cli_command_the_docs_name_exists():
    """`kaos train inspect` (README) is no command: the commands `kaos <group> <command>` and `<group> <command>`
    in backquotes of the README and docs/ name are the CLI's."""
    import re

    repo = Path(__file__).resolve().parents[2]
    groups = {name: command for name, command in main.cli.commands.items() if isinstance(command, click.Group)}
    pattern = re.compile(rf"`(?:kaos )?({'|'.join(groups)}) ([a-z][a-z-]*)")
    missing = set()
    for page in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for group, command in pattern.findall(page.read_text()):
            if command not in groups[group].commands:
                missing.add(f"{page.name}: {group} {command}")
    assert not missing, sorted(missing)
