"""Pages of the list routes: `limit` and an opaque `continue` token, after Kubernetes' `metadata.continue`.

A token is a keyset, not an offset: for each list of the answer it holds the sort key of the last item sent
(`(created_at, id)` for jobs, `(created_at, name)` for endpoints, the name for workspaces), so the next page
starts right after that item whatever was added or removed meanwhile. It is base64url of a small JSON object
`{"v": 1, "scope": "<route/workspace>", "after": {"<list>": [key, ...]}}`; a list absent from `after` has no
more items. A token never expires; one that does not decode, or was made for another route or workspace, is
400 BAD_REQUEST.
"""
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from sqlalchemy import and_, or_

from kaos_backend.models import as_utc
from kaos_backend.errors import BadRequest
from kaos_model.whole_numbers import plain_whole_number

MAX_LIMIT = 1000  # items per list and page; also the page size when only `continue` is given
TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 2048  # a real one is a few hundred characters
MAX_KEY_CHARS = 255

Cursor = Tuple[str, ...]  # the sort key of the last item sent, as strings
Fetch = Callable[[Optional[int], Optional[Cursor]], Tuple[List[dict], Optional[Cursor]]]


@dataclass(frozen=True)
class PageRequest:
    """`limit` items per list; `token` the `continue` of the previous page (None: the first page)."""
    limit: int
    token: Optional[str] = None


def parse_limit(text: Optional[str]) -> Optional[int]:
    """`limit` as given in a query string: None when absent or empty, else an int in 1..MAX_LIMIT. Raises
    BadRequest for anything but plain decimal digits (` 5`, `+5`, `05` included) or a value out of bounds."""
    if text is None or text == "":
        return None
    value = plain_whole_number(text)
    if value is None:
        raise BadRequest(f"Query parameter limit must be a whole number from 1 to {MAX_LIMIT} in plain digits, "
                         f"not {text!r}")
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"Query parameter limit must be from 1 to {MAX_LIMIT}, not {value}")
    return value


def page_request(limit: Optional[str], token: Optional[str]) -> Optional[PageRequest]:
    """The page asked for by the query parameters `limit` and `continue`, or None when neither is given (the
    whole list, in the 1.x shape). Raises BadRequest for a limit out of 1..MAX_LIMIT or a token longer than
    MAX_TOKEN_CHARS."""
    size = parse_limit(limit)
    if token is not None and len(token) > MAX_TOKEN_CHARS:
        raise BadRequest(f"Query parameter continue is longer than a token of this API ({MAX_TOKEN_CHARS} "
                         "characters): pass the continue value of the previous page unchanged")
    token = token if token and token.strip() else None
    if size is None and token is None:
        return None
    return PageRequest(limit=size or MAX_LIMIT, token=token)


def encode_token(scope: str, after: Dict[str, Cursor]) -> str:
    payload = {"v": TOKEN_VERSION, "scope": scope, "after": {name: list(key) for name, key in after.items()}}
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")


def decode_token(token: str, scope: str, lists: Sequence[str]) -> Dict[str, Cursor]:
    """The cursors of a `continue` token made for `scope`, one per list that has more items. Raises BadRequest
    when the token is not one this route gave."""
    try:
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("utf-8"))
        after = payload["after"]
        valid = (type(payload.get("v")) is int and payload["v"] == TOKEN_VERSION and isinstance(after, dict) and after
                 and set(after) <= set(lists)
                 and all(isinstance(key, list) and key and all(_is_key_part(part) for part in key)
                         for key in after.values()))
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError, binascii.Error):
        valid = False
    if not valid:
        raise BadRequest("Query parameter continue is not a token of this list: pass the continue value of the "
                         "previous page unchanged, or leave it out for the first page")
    if payload.get("scope") != scope:
        raise BadRequest(f"Query parameter continue is a token of another list, not of {scope}")
    return {name: tuple(key) for name, key in after.items()}


def _is_key_part(part) -> bool:
    """A cursor part is printable text (no NUL, control character or lone surrogate, which the databases refuse)
    of at most MAX_KEY_CHARS."""
    return isinstance(part, str) and len(part) <= MAX_KEY_CHARS and part.isprintable()


def paged_lists(scope: str, request: PageRequest, fetchers: Dict[str, Fetch]) -> Tuple[Dict[str, list], Optional[str]]:
    """One page of each list of a route: `fetchers[name](limit, after)` returns a list's items after the cursor
    (None: from the newest) and the cursor of its last item when more follow. The page's lists, in the order of
    `fetchers`, and the `continue` token of the next page (None on the last one). A list that ended on an
    earlier page is empty on the later ones."""
    cursors = decode_token(request.token, scope, list(fetchers)) if request.token else None
    lists, after = {}, {}
    for name, fetch in fetchers.items():
        if cursors is not None and name not in cursors:
            lists[name] = []
            continue
        items, next_cursor = fetch(request.limit, None if cursors is None else cursors[name])
        lists[name] = items
        if next_cursor is not None:
            after[name] = next_cursor
    return lists, encode_token(scope, after) if after else None


def split_page(rows: list, limit: Optional[int], key: Callable[[object], Cursor]) -> Tuple[list, Optional[Cursor]]:
    """Rows fetched with `LIMIT limit + 1`: the page's rows, and the cursor of its last row when one more came."""
    if limit is None or len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, key(rows[-1])


# -- keysets ---------------------------------------------------------------------------------------------------
def moment_key(moment: datetime) -> str:
    """A stored time as a cursor part: ISO 8601 in UTC (naive values, as SQLite returns them, are UTC)."""
    return as_utc(moment).isoformat()


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
        moment = moment.astimezone(timezone.utc) if moment.tzinfo is not None else None
    except (ValueError, OverflowError):
        moment = None
    if moment is None:
        raise BadRequest("Query parameter continue is not a token of this list: it names no time")
    return moment


def newest_first_page(query, created_column, key_column, limit: Optional[int], after: Optional[Cursor]):
    """`query` ordered `created_at DESC, key DESC` from after the cursor `after` (None: from the newest), with
    `LIMIT limit + 1` (none for `limit` None) so that `split_page` can tell whether more follow. Raises
    BadRequest for a cursor of the wrong shape or time."""
    if after is not None:
        query = query.where(newest_first_after(created_column, key_column, after))
    query = query.order_by(created_column.desc(), key_column.desc())
    return query if limit is None else query.limit(limit + 1)


def newest_first_after(created_column, key_column, cursor: Cursor):
    """The rows after `cursor` (created_at, key) in the order `created_at DESC, key DESC`: a range on the
    listing index (the `created_at <=` term lets the database seek instead of filtering)."""
    if len(cursor) != 2:
        raise BadRequest("Query parameter continue is not a token of this list: its cursor has the wrong shape")
    created, key = _moment(cursor[0]), cursor[1]
    return and_(created_column <= created, or_(created_column < created, key_column < key))
