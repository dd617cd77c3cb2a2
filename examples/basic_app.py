"""The original TypeScript library's Express example, redone in Flask.

The extension registers /clustershazbot/gossip, /list and /control itself,
starts the engine and shuts it down (with an announcement) at exit.

    SHAZBOT_SECRET=... SHAZBOT_CONTROL_SECRET=... \
    SHAZBOT_BASE_URL=http://127.0.0.1:3000/ SHAZBOT_MASTER_LIST=/tmp/master-list.json \
    python examples/basic_app.py --port 3000

The port is ``--port``, else ``PORT``, else 3000; SHAZBOT_BASE_URL must lead to it.
"""

import argparse
import os

from flask import Flask

from flask_clustershazbot import ClusterShazbot, GossipServer, peer_joined, peer_left

app = Flask(__name__)
shazbot = ClusterShazbot(app)  # settings come from SHAZBOT_* environment variables


@peer_joined.connect_via(app)
def on_join(sender: Flask, server: GossipServer) -> None:
    sender.logger.info("peer joined: %s", server.base_url)


@peer_left.connect_via(app)
def on_leave(sender: Flask, server: GossipServer) -> None:
    sender.logger.info("peer left: %s", server.base_url)


@app.get("/")
def index() -> dict:
    online = shazbot.server_list().online
    return {"peers": [s.base_url for s in online]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A clustershazbot node in a Flask app")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    app.run(port=parser.parse_args().port, threaded=True)
