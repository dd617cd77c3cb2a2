"""The app the endpoint benchmark serves under gunicorn: one route of its own, plus ClusterShazbot.

Configured by ``SHAZBOT_*`` environment variables (the seed's deployment model).
"""

from flask import Flask

from flask_clustershazbot import ClusterShazbot

app = Flask("endpoint-bench")


@app.get("/ping")
def ping() -> str:
    return "pong"


ClusterShazbot(app)
