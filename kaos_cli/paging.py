"""How many items the list commands show: the newest 50 by default, `--limit N`, or `--all`; fetched from the
backend page by page (`limit` and `continue`, docs/rest-api.md)."""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import click

DEFAULT_LIMIT = 50
PAGE_MAX = 1000  # the backend's largest page

Lists = Dict[str, List[dict]]
FetchPage = Callable[[int, Optional[str]], Tuple[Lists, Optional[str]]]


def size_options(command):
    """`--limit N` and `--all`: how many items of each list to show."""
    command = click.option("--all", "show_all", is_flag=True,
                           help="Show every item (fetched page by page)")(command)
    return click.option("--limit", type=click.IntRange(min=1), metavar="N",
                        help=f"Show the first N items of each list [default: {DEFAULT_LIMIT}]")(command)


def wanted(limit: Optional[int], show_all: bool) -> Optional[int]:
    """The items per list to show (None: all) from `--limit` and `--all`."""
    if show_all and limit is not None:
        raise click.UsageError("Illegal usage: --limit is mutually exclusive with --all",
                               ctx=click.get_current_context())
    return None if show_all else limit or DEFAULT_LIMIT


def first_items(fetch: FetchPage, keys: Sequence[str], limit: Optional[int]) -> Tuple[Lists, bool]:
    """The first `limit` items (None: all) of each list, fetched page by page: `fetch(page_size, token)` answers
    one page's lists and the `continue` token of the next (None on the last). Also whether the backend holds more
    than was kept. A list shorter than its page has ended; a backend that ignores `limit` is cut here."""
    lists: Lists = {key: [] for key in keys}
    ended = set()
    token = None
    while True:
        short = [len(lists[key]) for key in keys if key not in ended]
        size = PAGE_MAX if limit is None else max(1, min(PAGE_MAX, max(limit - count for count in short)))
        page, token = fetch(size, token)
        for key in keys:
            items = list(page.get(key) or [])
            lists[key].extend(items)
            if len(items) < size:
                ended.add(key)
        if not any(page.get(key) for key in keys):  # nothing new: the token leads nowhere
            break
        if token is None or all(key in ended or limit is not None and len(lists[key]) >= limit for key in keys):
            break
    more = token is not None
    if limit is not None:
        for key in keys:
            if len(lists[key]) > limit:
                lists[key] = lists[key][:limit]
                more = True
    return lists, more


def counted(count: int, noun: str) -> str:
    """`count` and `noun`, plural unless one: "1 job", "50 jobs"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def more_hint(command: str, shown: str) -> str:
    """The line that says a list was cut (`shown`: what it shows, "the newest 50 of each table") and how to see
    the rest."""
    return f"Showing {shown}; there are more: kaos {command} list --all, or --limit N"
