"""Answering a list route: the whole lists in the 1.x shape, or (`limit`/`continue` given) one page of them with
the `continue` token of the next page beside them (docs/rest-api.md, Paging)."""
from typing import Callable, Dict

from kaos_backend.api import respond
from kaos_backend.api.request_parsing import page_arg
from kaos_backend.services.paging import Fetch, paged_lists


def list_response(scope: str, fetchers: Dict[str, Fetch], envelope: Callable[[Dict[str, list]], dict]):
    """`envelope(lists)` of every item of each list (the 1.x answer), or of one page of them plus
    `"continue": <token or null>`. `scope` names the list in its tokens: a token of another list is refused."""
    page = page_arg()
    if page is None:
        return respond(envelope({name: fetch(None, None)[0] for name, fetch in fetchers.items()}))
    lists, token = paged_lists(scope, page, fetchers)
    return respond({**envelope(lists), "continue": token})
