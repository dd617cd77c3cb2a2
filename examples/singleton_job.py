"""Put membership to work: a job that runs on one node of the cluster, and keys split
between the nodes. See docs/ownership.md for what is (and is not) guaranteed.

    SHAZBOT_SECRET=... SHAZBOT_CONTROL_SECRET=... \
    SHAZBOT_BASE_URL=http://127.0.0.1:3000/ SHAZBOT_MASTER_LIST=/tmp/master-list.json \
    python examples/singleton_job.py

Start a second one on another port (and SHAZBOT_BASE_URL) with the same master list:
the report runs on one of them only, and ``/users/<id>`` names the node owning each user.
"""

import os
import sqlite3

from apscheduler.triggers.cron import CronTrigger
from flask import Flask, g

from flask_clustershazbot import ClusterShazbot

app = Flask(__name__)
shazbot = ClusterShazbot(app)  # settings come from SHAZBOT_* environment variables

#: Stands in for your shared database (PostgreSQL, MySQL ...): a job that must run at most
#: once records its tick there, and a second runner of the same tick finds it taken.
JOB_DB = os.environ.get("EXAMPLE_JOB_DB", "/tmp/clustershazbot-example-jobs.sqlite3")


def claim(name: str) -> bool:
    """True for the first runner of this job's tick, False for any other (exactly-once)."""
    with sqlite3.connect(JOB_DB) as db:
        db.execute("CREATE TABLE IF NOT EXISTS job_run (name TEXT, tick TEXT, PRIMARY KEY (name, tick))")
        try:
            db.execute("INSERT INTO job_run VALUES (?, ?)", (name, g.shazbot_tick.isoformat()))
        except sqlite3.IntegrityError:
            return False
    return True


@shazbot.singleton_job("nightly-report", trigger=CronTrigger(hour=3, minute=0, timezone="UTC"))
def nightly_report() -> None:
    # Usually one node runs this; during a partition each side might, so claim the tick.
    if claim("nightly-report"):
        app.logger.info("sending the nightly report for %s", g.shazbot_tick.date())


@shazbot.singleton_job("refresh-cache", seconds=60)
def refresh_cache() -> None:
    # Harmless if it ever runs twice: no claim needed.
    app.logger.info("refreshing the shared cache")


@app.get("/users/<user_id>")
def user(user_id: str) -> dict:
    # Each user's work belongs to one node; the others could forward the request there.
    key = f"user:{user_id}"
    return {"owner": shazbot.owner(key), "here": shazbot.owns(key)}


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "3000")), threaded=True)
