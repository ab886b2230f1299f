"""How the CLI talks to a person: `Info/Warning/Error -` lines, tables and the state marks. With `-o json|yaml`
(`kaos_cli.output`) stdout holds the data alone: what would go to stdout is left out (the data says it), what
goes to stderr (warnings, errors, hints) still does, without colours."""
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import click

from kaos_cli.output import decorated, machine

CHECK = "\u2714"     # ✔ a value is set
CROSS = "\u2717"     # ✗ a value is missing
BUILDING = "\u2a02"  # ⨂ a value is being built

_COLOURS = {"Info": "green", "Warning": "yellow", "Error": "red", "Aborting": "red"}


def line(level: str, message: str) -> str:
    """`<Level> - message` with the level's bold colour (none unless both stdout and the line's stream are
    terminals, and none with `-o json|yaml`)."""
    if not decorated():
        return f"{level} - {message}"
    return f"{click.style(level, fg=_COLOURS.get(level, 'red'), bold=True)} - {message}"


def say(level: str, message: str, err: Optional[bool] = None) -> None:
    """Info goes to stdout; every other level goes to stderr (unless `err` says otherwise). With `-o json|yaml`
    the stdout lines are left out."""
    echo(line(level, message), err=level != "Info" if err is None else err)


def info(message: str, err: bool = False) -> None:
    """An Info line on stdout, or on stderr when stdout carries the data (logs)."""
    say("Info", message, err=err)


def warning(message: str) -> None:
    say("Warning", message)


def error(message: str) -> None:
    say("Error", message)


def echo(text: str = "", err: bool = False) -> None:
    """A line for the person on stdout (stderr when `err`); left out of stdout with `-o json|yaml`."""
    if err or not machine():
        click.echo(text, err=err)


def table(headers: Sequence[str], rows: Iterable[Sequence], title: Optional[str] = None,
          justify: Optional[str] = None) -> str:
    """An ASCII table (terminaltables `AsciiTable`); `None` cells are shown as `None` like the original.
    `justify` ("center", "right") applies to every column; `title` goes into the top border."""
    from terminaltables import AsciiTable

    data = [list(headers)] + [["None" if cell is None else str(cell) for cell in row] for row in rows]
    ascii_table = AsciiTable(data, title=title)
    if justify:
        ascii_table.justify_columns = {column: justify for column in range(len(headers))}
    return ascii_table.table


def wrapped(value, width: int = 60):
    """A table cell: long text (a failure's reason) wrapped so the table stays readable; other values as they are."""
    if not isinstance(value, str) or len(value) <= width:
        return value
    import textwrap
    return "\n".join(textwrap.wrap(value, width))


def reason(value):
    """The cell of a `reason` column: empty for an item without one (not the `None` of other columns' missing
    values), long text wrapped."""
    return "" if value is None else wrapped(value)


def print_table(headers: Sequence[str], rows: Iterable[Sequence], title: Optional[str] = None,
                justify: Optional[str] = None) -> None:
    echo(table(headers, rows, title, justify))


def titled_table(title: str, headers: Sequence[str], rows: Iterable[Sequence], justify: str = "center") -> str:
    """A table under a full-width title row, like the original's job listings::

        +---------------------------------+
        |             BUILDING            |
        +----------+--------+-----+-------+
        | duration | job_id | ... | state |
    """
    body = table(headers, rows, justify=justify)
    width = len(body.splitlines()[0])
    border = "+" + "-" * (width - 2) + "+"
    return f"{border}\n|{title.center(width - 2)}|\n{body}"


def print_listing(sections: Iterable[Tuple[str, Sequence, Sequence[str]]], empty: str,
                  extra: Optional[Dict[str, Tuple[str, Callable[[Any], Any]]]] = None) -> bool:
    """Print the titled tables of a `kaos … list` and return True, or warn `empty` and return False when every
    section is empty. A section `(title, items, columns)` with items gives a table: `ind`, the attributes
    `columns` of each item (long text wrapped), `reason` when an item has one (empty for the others), and the
    column `extra[title]` (`(header, cell of an item)`) when given."""
    tables = []
    for title, items, columns in sections:
        if not items:
            continue
        columns = tuple(columns) + (("reason",) if any(item.reason for item in items) else ())
        header, cell = (extra or {}).get(title, (None, None))
        rows = [[index] + [(reason if column == "reason" else wrapped)(getattr(item, column)) for column in columns]
                + ([cell(item)] if cell else [])
                for index, item in enumerate(items)]
        tables.append(titled_table(title, ("ind",) + columns + ((header,) if cell else ()), rows))
    if not tables:
        warning(empty)
        return False
    echo("\n\n".join(tables))
    return True


def success(message: str) -> None:
    """` ✔ message` — a step that worked."""
    echo(f" {click.style(CHECK, fg='green') if decorated() else CHECK} {message}")


def mark(value, building: bool = False) -> str:
    """A table cell for an input: `✔\\n<value>`, `⨂\\n<building>` or `✗`."""
    if building:
        return f"{BUILDING}\n<building>"
    if value is None or "null" in str(value):
        return CROSS
    return f"{CHECK}\n{value}"


def bullets(names: Iterable[str]) -> str:
    return "\n".join(f"- {name}" for name in names)


def confirm(message: str, default: bool = False, abort: bool = False, level: str = "Warning") -> bool:
    """Ask `<Level> - message [y/N]`; the level is coloured only on a terminal (click's prompt does not strip
    colours itself)."""
    import sys

    isatty = getattr(sys.stdout, "isatty", None)
    text = line(level, message) if isatty and isatty() else f"{level} - {message}"
    return click.confirm(text, default=default, abort=abort)
