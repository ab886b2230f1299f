"""Load the trained property valuation model and price houses given as JSON."""
import json
import math
import os

import joblib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

HOW_TO_SEND = "send a JSON object of features, e.g. curl --data-binary @test_payload.json"


class BadInput(ValueError):
    """The request's body is not something this model can read; the message says why (a 400, not a 500)."""


def load_ctx(model_path):
    """Load the context saved by `train`: {"model", "scaler", "features"}.

    A relative path is looked up next to this file (where kaos puts the trained model's files).
    """
    model_path = os.path.join(HERE, model_path)
    ctx = joblib.load(model_path)
    return ctx


JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
              float: "a number", type(None): "null"}


def _kind(value):
    """A JSON value we did not expect, in words: "a string", "a list holding a number"."""
    if isinstance(value, list):
        if not value:
            return "an empty list"
        odd = next(item for item in value if not isinstance(item, dict))
        return "a list holding %s" % JSON_TYPES[type(odd)]
    return JSON_TYPES[type(value)]


def _number(house, name):
    value = house[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadInput("Feature %r is not a number: %s" % (name, json.dumps(value)))
    try:
        number = float(value)
    except ValueError:
        raise BadInput("Feature %r is not a number: %s" % (name, json.dumps(value))) from None
    if not math.isfinite(number):
        raise BadInput("Feature %r is not a finite number: %s" % (name, json.dumps(value)))
    return number


def json_to_features(body, features):
    """A JSON object of feature values (or a list of such objects) -> a matrix in the training column order.

    Raises BadInput when the body is empty, not JSON, not an object (or a non-empty list of objects), or
    misses a feature or gives one that is not a number. Keys beyond `features` are ignored.
    """
    if not body or not body.strip():
        raise BadInput("The body is empty: " + HOW_TO_SEND)
    try:
        houses = json.loads(body)
    except (ValueError, RecursionError) as error:  # not JSON, not Unicode text, or nested too deep
        raise BadInput("The body is not JSON (%s): %s" % (error, HOW_TO_SEND)) from None
    if isinstance(houses, dict):
        houses = [houses]
    if not isinstance(houses, list) or not houses or not all(isinstance(house, dict) for house in houses):
        raise BadInput("Expected a JSON object of features (or a non-empty list of such objects), not %s: %s"
                       % (_kind(houses), HOW_TO_SEND))
    missing = [name for name in features if any(name not in house for house in houses)]
    if missing:
        raise BadInput("Missing features: %s" % ", ".join(missing))
    return np.array([[_number(house, name) for name in features] for house in houses])


def predict(ctx, body):
    """The predicted sale prices, as a list of floats rounded to cents. Raises BadInput on a bad body."""
    features = ctx["scaler"].transform(json_to_features(body, ctx["features"]))
    return [round(float(price), 2) for price in ctx["model"].predict(features)]
