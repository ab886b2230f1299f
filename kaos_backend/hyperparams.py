"""Hyperparameter files: a JSON object of non-empty lists, expanded into the grid of their combinations."""
import itertools
import json
import math
from typing import Any, Dict, List

from kaos_backend.errors import BadRequest, InvalidHyperparams
from kaos_model.whole_numbers import plain_whole_number

MAX_PARAMS_BYTES = 1024 * 1024
MAX_COMBINATIONS = 10_000
MAX_PARALLELISM = 999_999  # partitions run at once
EXAMPLE = '{"lr": [0.1, 0.01], "depth": [3, 5]}'


def parse_params(data: bytes) -> Dict[str, List[Any]]:
    """The params object, keys in file order; InvalidHyperparams names the offending key."""
    if len(data) > MAX_PARAMS_BYTES:
        raise InvalidHyperparams(f"Hyperparameters file is too large ({len(data)} bytes, "
                                 f"the limit is {MAX_PARAMS_BYTES} bytes)")
    try:
        params = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float,
                            object_pairs_hook=_reject_duplicates)
    except UnicodeDecodeError:
        raise InvalidHyperparams("Hyperparameters file is not UTF-8 text") from None
    except ValueError as error:
        raise InvalidHyperparams(f"Hyperparameters file is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidHyperparams("Hyperparameters file is nested too deeply") from None
    if not isinstance(params, dict):
        raise InvalidHyperparams(f"Hyperparameters must be a JSON object of lists, like {EXAMPLE}")
    for key, values in params.items():
        if not key:
            raise InvalidHyperparams("Hyperparameter names must be non-empty")
        if not isinstance(values, list) or not values:
            raise InvalidHyperparams(f"Hyperparameter {key!r} must be a non-empty list of values, "
                                     f"got {json.dumps(values)}")
        for value in values:
            if isinstance(value, (list, dict)):
                raise InvalidHyperparams(f"Hyperparameter {key!r} must list plain values (numbers, strings, "
                                         f"booleans, null), got {json.dumps(value)}")
    combinations = 1
    for values in params.values():
        combinations *= len(values)
    if params and combinations > MAX_COMBINATIONS:
        raise InvalidHyperparams(f"Hyperparameters expand to {combinations} combinations; "
                                 f"the limit is {MAX_COMBINATIONS}")
    return params


def expand_grid(params: Dict[str, List[Any]]) -> List[Dict[str, Any]]:
    """The Cartesian product, key order kept, the first key varying slowest; `{}` → `[]`."""
    if not params:
        return []
    keys = list(params)
    return [dict(zip(keys, combination)) for combination in itertools.product(*params.values())]


def parse_parallelism(text) -> int:
    """`parallelism` as given in a query string (None or "" = 1), or as an int; at most MAX_PARALLELISM."""
    if text is None or text == "":
        return 1
    value = plain_whole_number(str(text)) if type(text) in (int, str) else None
    if value is None or not 1 <= value <= MAX_PARALLELISM:
        raise BadRequest(f"parallelism must be a whole number of at least 1 (at most {MAX_PARALLELISM}) in plain "
                         f"digits, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _reject_duplicates(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} appears twice")
        result[key] = value
    return result
