"""The three PATCH content types the official client sends (a dict body is sent as a strategic merge patch, a list
as a JSON patch, and `_content_type` may force a merge patch). JSON Patch (RFC 6902) is the `jsonpatch` library's;
the merge patches are small enough to be ours:

- JSON merge patch (RFC 7386): objects merge key by key, `null` deletes a key, anything else (lists included)
  replaces.
- Strategic merge patch: as a merge patch, except that lists of objects the Kubernetes schemas give a merge key
  merge item by item on that key (containers, env and volumes by `name`, ports by `containerPort`, conditions by
  `type`); the `$patch: delete` / `$retainKeys` directives are not supported (415 would be wrong: they are
  ignored, a documented limit of the fake).
"""
import copy

import jsonpatch

from .errors import ApiError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
# field name -> the merge key of its items, for the lists of objects a strategic merge patch merges
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort", "conditions": "type",
              "ownerReferences": "uid", "imagePullSecrets": "name", "tolerations": "key"}


def merge_patch(target, patch, strategic: bool = False, field: str = ""):
    """`target` with `patch` applied (neither is changed)."""
    if not isinstance(patch, dict):
        if strategic and isinstance(patch, list) and isinstance(target, list) and field in MERGE_KEYS:
            return _merge_list(target, patch, MERGE_KEYS[field])
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value, strategic, key)
    return result


def _merge_list(target: list, patch: list, key: str) -> list:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            return copy.deepcopy(patch)
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if index is None:
            result.append(merge_patch({}, item, True))
        else:
            result[index] = merge_patch(result[index], item, True)
    return result


def apply_patch(target: dict, body, content_type: str) -> dict:
    """`target` patched by `body` sent as `content_type`. Raises ApiError: 415 for another type, 422 for a JSON
    patch that does not apply."""
    kind = (content_type or "").split(";")[0].strip()
    if kind == JSON_PATCH:
        try:
            return jsonpatch.apply_patch(target, body)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as error:
            raise ApiError(422, "Invalid", f"the JSON patch does not apply: {error}")
    if kind in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return merge_patch(target, body, strategic=kind == STRATEGIC_MERGE_PATCH)
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                   f"media types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}")
