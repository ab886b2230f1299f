import click

from kaos_cli import render


def test_lines_and_streams(capsys):
    render.info("all good")
    render.warning("careful")
    render.error("broken")
    captured = capsys.readouterr()
    assert captured.out == "Info - all good\n"
    assert captured.err == "Warning - careful\nError - broken\n"


def test_levels_are_bold_and_coloured(terminal):
    assert render.line("Info", "x") == click.style("Info", fg="green", bold=True) + " - x"
    assert render.line("Warning", "x") == click.style("Warning", fg="yellow", bold=True) + " - x"
    assert render.line("Error", "x") == click.style("Error", fg="red", bold=True) + " - x"
    assert render.line("Aborting", "x") == click.style("Aborting", fg="red", bold=True) + " - x"


def test_no_colours_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("kaos_cli.output.stdout_is_terminal", lambda: False)
    assert render.line("Error", "x") == "Error - x"


def test_table_with_title_and_none():
    text = render.table(["ind", "name"], [[0, "mnist"], [1, None]], title="RUNNING")
    lines = text.splitlines()
    assert "RUNNING" in lines[0]
    assert "| ind | name  |" in text and "| 0   | mnist |" in text and "| 1   | None  |" in text


def test_marks():
    assert render.mark("/features:5c3ca") == "\u2714\n/features:5c3ca"
    assert render.mark(None) == "\u2717"
    assert render.mark("params.null") == "\u2717"
    assert render.mark("x", building=True) == "\u2a02\n<building>"
    assert render.bullets(["a", "b"]) == "- a\n- b"


def test_info_can_go_to_stderr(capsys):
    render.info("retrieving", err=True)
    render.success("Setting source bundle: /mnist:1909d")
    captured = capsys.readouterr()
    assert captured.err == "Info - retrieving\n"
    assert captured.out == " \u2714 Setting source bundle: /mnist:1909d\n"


def test_centered_table_and_title_row():
    assert render.table(["ind", "name"], [[0, "a"]], justify="center").splitlines()[3] == "|  0  |  a   |"
    text = render.titled_table("BUILDING", ["duration", "job_id"], [[20, "7a74b"]])
    assert text.splitlines() == [
        "+-------------------+",
        "|      BUILDING     |",
        "+----------+--------+",
        "| duration | job_id |",
        "+----------+--------+",
        "|    20    | 7a74b  |",
        "+----------+--------+",
    ]
