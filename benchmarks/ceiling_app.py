"""The platform's ceiling for the endpoint benchmark: a Flask route that only reads the body.

Served under the same gunicorn settings as our node, at the same path, it measures what
Flask, werkzeug and gunicorn cost per request before any gossip work.
"""

from flask import Flask, Response, request

app = Flask("endpoint-ceiling")


@app.post("/clustershazbot/gossip")
def gossip() -> Response:
    request.get_data()
    return Response(b"{}", mimetype="application/json")
