"""A bad setting under real gunicorn (examples/gunicorn.conf.py, the package's settings):
one line that names it, not a traceback per worker and another from the ``on_exit`` hook
(it printed 119 lines with 4 tracebacks)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cluster import CONTROL, SECRET, free_port, gunicorn_command, host_env

MESSAGE = "SHAZBOT_GOSSIP_INTERVAL must be a number of seconds greater than 0, got 'abc'"
#: gunicorn's own log lines: ``[date] [pid] [LEVEL] ...``.
GUNICORN_LINE = re.compile(r"\[[^]]+\] \[\d+\] \[[A-Z]+\] ")


def run_with_a_bad_setting(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    port = free_port()
    env = host_env(
        {
            "TMPDIR": str(tmp_path),
            "SHAZBOT_SECRET": SECRET,
            "SHAZBOT_CONTROL_SECRET": CONTROL,
            "SHAZBOT_BASE_URL": f"http://127.0.0.1:{port}/",
            "SHAZBOT_MASTER_LIST": str(tmp_path / "master.json"),
            "SHAZBOT_GOSSIP_INTERVAL": "abc",
            "TEST_SIGNAL_LOG": str(tmp_path / "signals.log"),
            "TEST_ROUND_LOG": str(tmp_path / "rounds.log"),
        }
    )
    command = gunicorn_command(port, "gunicorn_app:create_app()", *args)
    return subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("workers", ["4", "8"])
def test_a_bad_setting_stops_the_host_with_one_line(tmp_path: Path, workers: str) -> None:
    done = run_with_a_bad_setting(tmp_path, "--workers", workers)
    output = done.stdout + done.stderr
    assert done.returncode == 4, output  # gunicorn's "App failed to load."
    assert "Traceback" not in output
    ours = [line for line in output.splitlines() if not GUNICORN_LINE.match(line)]
    assert ours == [MESSAGE], output
    assert "Reason: App failed to load." in output
    # No worker acted as the node: the master never loaded the app to announce anything.
    assert "announce the host's shutdown" not in output


def test_a_bad_setting_with_preload_is_one_line_too(tmp_path: Path) -> None:
    done = run_with_a_bad_setting(tmp_path, "--preload")
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert [line for line in output.splitlines() if line.strip()] == [f"Error: {MESSAGE}"]
