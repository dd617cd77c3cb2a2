"""The same with an app factory: one extension object, configured per app."""

from flask import Flask

from flask_clustershazbot import ClusterShazbot

shazbot = ClusterShazbot()


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config or {})  # SHAZBOT_* keys here win; environment variables fill the rest
    shazbot.init_app(app)

    @app.get("/peers")
    def peers() -> dict:
        return shazbot.health()

    return app
