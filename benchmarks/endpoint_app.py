"""The app the endpoint benchmark serves under gunicorn: one route of its own, plus ClusterShazbot.

Configured by ``SHAZBOT_*`` environment variables (the seed's deployment model).
``BENCH_CODEC=json`` forces the standard library's JSON codec (as ``merge --codec json``).
"""

import os

from flask import Flask

from flask_clustershazbot import ClusterShazbot, _json

if os.environ.get("BENCH_CODEC") == "json":
    _json.force_std()

app = Flask("endpoint-bench")


@app.get("/ping")
def ping() -> str:
    return "pong"


ClusterShazbot(app)
