"""Flask app of the MNIST endpoint.

    GET  /ping         200 {"status": "ok"} once the model is loaded
    POST /invocations  body: an image (jpg, png, ...) of one handwritten digit -> {"result": [digit]}
"""
import logging

import flask

from model import load_ctx, predict

logging.basicConfig(level=logging.INFO)

ctx = load_ctx("model.pkl")  # load trained model

app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    return flask.jsonify(status="ok")


@app.route("/invocations", methods=["POST"])
def invocations():
    try:
        result = predict(ctx, flask.request.get_data())
    except Exception:
        app.logger.exception("Error while processing the request")
        return flask.Response("Error while processing the request", status=500, mimetype="text/plain")
    return flask.jsonify(result=result)
