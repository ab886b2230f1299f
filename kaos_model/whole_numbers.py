"""Whole numbers given as text in a query string (`limit`, `page_id`, `parallelism`, `gpu`).

Only plain decimal is taken: the digits 0-9, no sign, no space around them, no leading zero (`0`, `5`, `1000`).
`int()` alone takes much more (` 5`, `+5`, `05`, `1_000`, Arabic-Indic digits), and a `+` in a query string
is a space once decoded, so `?limit=+5` would arrive as ` 5`: each of these is a 400 instead.
"""
import re
from typing import Optional

MAX_DIGITS = 18  # a longer number is past every bound of the API (and int() of thousands of digits is refused)
PLAIN_DECIMAL = re.compile(rf"0|[1-9][0-9]{{0,{MAX_DIGITS - 1}}}")


def plain_whole_number(text: str) -> Optional[int]:
    """The value of `text` when it is a plain decimal of at most MAX_DIGITS digits, else None."""
    if not isinstance(text, str) or not PLAIN_DECIMAL.fullmatch(text):
        return None
    return int(text)
