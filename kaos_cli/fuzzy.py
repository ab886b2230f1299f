"""Did-you-mean suggestions: the (unrestricted) Damerau–Levenshtein distance."""
from typing import Iterable, List


def damerau_levenshtein(a: str, b: str) -> int:
    """Edits (insert, delete, substitute, transpose adjacent) turning `a` into `b`; a transposed pair may be
    edited further (Lowrance–Wagner), so `ca` → `abc` is 2."""
    if a == b:
        return 0
    if not a:
        return len(b)
    if not b:
        return len(a)
    infinity = len(a) + len(b)
    last_row_of = {}  # character -> last row (1-based) of `a` where it occurred
    # table with an extra border row/column of `infinity`
    table = [[infinity] * (len(b) + 2) for _ in range(len(a) + 2)]
    for i in range(len(a) + 1):
        table[i + 1][1] = i
    for j in range(len(b) + 1):
        table[1][j + 1] = j
    for i in range(1, len(a) + 1):
        last_col_match = 0
        for j in range(1, len(b) + 1):
            k = last_row_of.get(b[j - 1], 0)
            l = last_col_match
            cost = 0 if a[i - 1] == b[j - 1] else 1
            if cost == 0:
                last_col_match = j
            table[i + 1][j + 1] = min(
                table[i][j] + cost,                              # substitute / match
                table[i + 1][j] + 1,                             # insert
                table[i][j + 1] + 1,                             # delete
                table[k][l] + (i - k - 1) + 1 + (j - l - 1),     # transpose
            )
        last_row_of[a[i - 1]] = i
    return table[len(a) + 1][len(b) + 1]


def suggestions(name: str, candidates: Iterable[str], max_distance: int = 2) -> List[str]:
    """Candidates within `max_distance` of `name` (case-insensitive), closest first."""
    scored = []
    for candidate in candidates:
        distance = damerau_levenshtein(name.lower(), candidate.lower())
        if distance <= max_distance:
            scored.append((distance, candidate))
    return [candidate for _, candidate in sorted(scored)]
