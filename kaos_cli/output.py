"""`-o/--output table|json|yaml`: how a list, info or deploy command shows what it got.

`table` (the default) is the 1.x output. `json` and `yaml` print the API's own answer — the route's JSON body as
the wire objects give it back (`to_dict()`), e.g. `kaos train list -o json` prints what `GET /train/<ws>?limit=50`
answered — and nothing else on stdout: the table format's Info and ✔ lines are left out (the data says it),
warnings and hints still go to stderr, without colours, and no progress bar is drawn. Progress bars also need
stdout to be a terminal in table mode. Errors stay one `Error - ...` line on stderr with exit status 1.

A command takes the option with `@output_option` and shows its object with `if emit(answer): return` before its
table code."""
import json
import sys
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import click

FORMATS = ("table", "json", "yaml")
_META_KEY = "kaos.output"
_state = {"format": "table"}  # this run's format, for what runs after the command's context ended (the error line)


def _remember(ctx: click.Context, _param, value: str) -> str:
    ctx.meta[_META_KEY] = value
    _state["format"] = value
    return value


def output_option(command):
    """The shared `-o/--output [table|json|yaml]` option (read it with `current()`, not as a parameter)."""
    return click.option("-o", "--output", "output_format", type=click.Choice(FORMATS), default="table",
                        show_default=True, expose_value=False, callback=_remember,
                        help="How to show the result: tables, or the API's JSON objects as json or yaml "
                             "(nothing else on stdout)")(command)


def reset() -> None:
    """A new run: table until a command's `-o` says otherwise (the CLI's entry point calls this)."""
    _state["format"] = "table"


def current() -> str:
    """This run's format: `table`, `json` or `yaml`."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        return ctx.meta.get(_META_KEY, "table")
    return _state["format"]


def machine() -> bool:
    """Is stdout reserved for json or yaml (narrative to stderr, no colours, no bars)?"""
    return current() != "table"


def stdout_is_terminal() -> bool:
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def progress_wanted() -> bool:
    """Draw progress bars (on stderr)? Only for a person: stdout a terminal and the table format."""
    return not machine() and stdout_is_terminal()


def decorated() -> bool:
    """Colour the Info/Warning/Error levels and the marks? Only for a person, as for progress bars (click also
    drops colours written to a stream that is not a terminal)."""
    return progress_wanted()


def render_text(value: Any, fmt: str) -> str:
    """`value` (JSON values) as `fmt` text: JSON indented by 2, or YAML block style, keys in the API's order."""
    if fmt == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False).rstrip("\n")


def emit(value: Any) -> bool:
    """In json/yaml mode, print `value` (a wire object, or JSON values holding wire objects) on stdout and return
    True; in table mode return False (the command prints its table)."""
    fmt = current()
    if fmt == "table":
        return False
    click.echo(render_text(_plain(value), fmt), color=False)
    return True


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


Lists = Dict[str, list]


def list_pages(fetch: Callable[[int, Optional[str]], Tuple[Lists, Optional[str]]], keys: Sequence[str],
               limit: Optional[int]) -> Tuple[Lists, bool, Optional[str]]:
    """`paging.first_items`, plus the `continue` token of the next page after the items kept: the backend's last
    token when more follow and no list was cut here; None when all were shown (always with `--all`), and when
    a list was cut here (a `--limit` above the backend's page size), where no token fits."""
    from kaos_cli.paging import first_items

    fetched = {key: 0 for key in keys}
    last = {"token": None}

    def counting(size: int, token: Optional[str]):
        page, next_token = fetch(size, token)
        last["token"] = next_token
        for key in keys:
            fetched[key] += len(page.get(key) or [])
        return page, next_token

    lists, more = first_items(counting, keys, limit)
    cut = limit is not None and any(count > limit for count in fetched.values())
    return lists, more, last["token"] if more and not cut else None


def workspace_pages(list_call: Callable[..., Any], workspace: str, keys: Sequence[str],
                    limit: Optional[int]) -> Tuple[Lists, bool, Optional[str]]:
    """`list_pages` over a client's workspace listing: `list_call(workspace, limit=<size>, continue_token=<token>)`
    answers a page with the lists `keys` as attributes and its `continue_token`."""
    def fetch(size: int, token: Optional[str]):
        page = list_call(workspace, limit=size, continue_token=token)
        return {key: getattr(page, key) for key in keys}, page.continue_token

    return list_pages(fetch, keys, limit)
