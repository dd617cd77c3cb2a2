"""The app the endpoint benchmark serves under gunicorn: one route of its own, plus ClusterShazbot.

Configured by ``SHAZBOT_*`` environment variables (the original's deployment model).
``BENCH_CODEC=json`` forces the standard library's JSON codec (as ``merge --codec json``).
"""

import os

from flask import Flask

from flask_clustershazbot import ClusterShazbot, _json

if os.environ.get("BENCH_CODEC") == "json":
    if hasattr(_json, "force_std"):
        _json.force_std()
    else:  # an older package (--before)
        _json.loads, _json.dumps, _json.CODEC = _json.std_loads, _json.std_dumps, "json (forced)"

app = Flask("endpoint-bench")


@app.get("/ping")
def ping() -> str:
    return "pong"


ClusterShazbot(app)
