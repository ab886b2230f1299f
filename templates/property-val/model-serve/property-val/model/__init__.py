"""Property valuation serving bundle: `serve` starts gunicorn on wsgi:app (the Flask app of predict.py)."""
