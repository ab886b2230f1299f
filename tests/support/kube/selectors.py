"""Label selectors and field selectors, as the `labelSelector` / `fieldSelector` query parameters spell them.

Label selector: requirements joined by commas, each one of `key`, `!key`, `key=value`, `key==value`,
`key!=value`, `key in (a,b)`, `key notin (a,b)`. Field selector: `path=value`, `path==value`, `path!=value`
joined by commas, where a path is dotted (`metadata.name`, `status.phase`, `spec.nodeName`,
`involvedObject.uid`); a missing field counts as "". A malformed selector is a 400, as on the real server.
"""
import re
from typing import Callable, Dict, List, Optional

from .errors import bad_request

Matcher = Callable[[dict], bool]
_SET = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


def _split(selector: str) -> List[str]:
    """Requirements at top-level commas (not those inside `in (a,b)`)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _label_requirement(text: str) -> Callable[[Dict[str, str]], bool]:
    match = _SET.match(text)
    if match:
        key, operator, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    match = _EQ.match(text)
    if match:
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    match = _EXISTS.match(text)
    if match:
        negated, key = match.groups()
        return (lambda labels: key not in labels) if negated else (lambda labels: key in labels)
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def label_matcher(selector: Optional[str]) -> Matcher:
    """A predicate on an object for a `labelSelector` (None or "" matches everything). Raises ApiError (400)."""
    requirements = [_label_requirement(part) for part in _split(selector or "")]

    def matches(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(requirement(labels) for requirement in requirements)
    return matches


def field_value(obj: dict, path: str) -> str:
    value = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def field_matcher(selector: Optional[str]) -> Matcher:
    """A predicate on an object for a `fieldSelector` (None or "" matches everything). Raises ApiError (400)."""
    requirements = []
    for part in _split(selector or ""):
        match = _EQ.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        requirements.append(match.groups())

    def matches(obj: dict) -> bool:
        return all((field_value(obj, path) == value) == (operator != "!=") for path, operator, value in requirements)
    return matches


def selector_matcher(selector: Optional[dict]) -> Matcher:
    """A predicate for a structured `LabelSelector` (`matchLabels`, `matchExpressions`) as workloads carry them."""
    selector = selector or {}
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []

    def matches(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if any(labels.get(key) != value for key, value in match_labels.items()):
            return False
        for expression in expressions:
            key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
            if operator == "In" and labels.get(key) not in values:
                return False
            if operator == "NotIn" and labels.get(key) in values:
                return False
            if operator == "Exists" and key not in labels:
                return False
            if operator == "DoesNotExist" and key in labels:
                return False
        return True
    return matches
