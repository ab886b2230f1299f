"""Flask app of the property valuation endpoint.

    GET  /ping         200 {"status": "ok"} once the model is loaded
    POST /invocations  body: a JSON object of features (see test_payload.json), or a list of them
                       -> {"result": [price, ...]}
                       400 {"error": reason} when the body is empty, not JSON, not such an object, misses a
                       feature or gives one that is not a number
                       500 when predicting fails; the traceback is in the endpoint's log (kaos serve logs)
"""
import logging

import flask

from model import BadInput, load_ctx, predict

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
    except BadInput as error:
        app.logger.info("Refused the request: %s", error)
        return flask.jsonify(error=str(error)), 400
    except Exception:
        app.logger.exception("Error while processing the request")
        return flask.Response("Error while processing the request", status=500, mimetype="text/plain")
    return flask.jsonify(result=result)
