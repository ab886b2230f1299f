"""Load the trained property valuation model and price houses given as JSON."""
import json
import os

import joblib
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load_ctx(model_path):
    """Load the context saved by `train`: {"model", "scaler", "features"}.

    A relative path is looked up next to this file (where kaos puts the trained model's files).
    """
    model_path = os.path.join(HERE, model_path)
    ctx = joblib.load(model_path)
    return ctx


def json_to_features(body, features):
    """A JSON object of feature values (or a list of them) -> a matrix in the training column order."""
    houses = json.loads(body)
    if isinstance(houses, dict):
        houses = [houses]
    if not isinstance(houses, list) or not houses or not all(isinstance(house, dict) for house in houses):
        raise ValueError("expected a JSON object of features or a non-empty list of them")
    missing = sorted({name for house in houses for name in features if name not in house})
    if missing:
        raise ValueError("missing features: %s" % ", ".join(missing))
    return np.array([[float(house[name]) for name in features] for house in houses])


def predict(ctx, body):
    """The predicted sale prices, as a list of floats rounded to cents."""
    features = ctx["scaler"].transform(json_to_features(body, ctx["features"]))
    return [round(float(price), 2) for price in ctx["model"].predict(features)]
