"""docs/quickstart.md, done as a reader does it: its app.py, its exports and its three
`flask run` commands (ports and the master list's path moved to free ones in tmp),
three real processes on 127.0.0.1 that print each other joining, and Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from cluster import ctrl_c_as_in_a_terminal, free_port, host_env, wait_until

PAGE = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), re.M | re.S)


def test_three_flask_run_nodes_print_each_other_joining_and_leaving(tmp_path: Path) -> None:
    app_py = next(code for code in blocks("python") if code.startswith("# app.py\n"))
    (tmp_path / "app.py").write_text(app_py, encoding="utf-8")
    shell = blocks("sh")
    exports = next(code for code in shell if code.startswith("export "))
    shared = dict(shlex.split(line)[1].split("=", 1) for line in exports.splitlines())
    assert set(shared) == {"SHAZBOT_SECRET", "SHAZBOT_CONTROL_SECRET", "SHAZBOT_MASTER_LIST"}
    shared["SHAZBOT_MASTER_LIST"] = str(tmp_path / "master-list.json")  # not /tmp's
    runs = next(code for code in shell if " run --port " in code).splitlines()
    assert len(runs) == 3

    outer = {k: v for k, v in os.environ.items() if not k.startswith(("SHAZBOT_", "FLASK_"))}
    nodes: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    try:
        for line in runs:
            documented = re.search(r"--port (\d+)", line)[1]  # type: ignore[index]
            port = str(free_port())
            words = shlex.split(line.replace(documented, port))
            env = dict(word.split("=", 1) for word in words if re.match(r"[A-Z_]+=", word))
            argv = [word for word in words if not re.match(r"[A-Z_]+=", word)]
            assert argv[0] == "flask" and env == {"SHAZBOT_BASE_URL": f"http://127.0.0.1:{port}/"}
            log = tmp_path / f"node-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", *argv],
                    cwd=tmp_path,
                    env=host_env({**outer, **shared, **env}) | {"PYTHONUNBUFFERED": "1"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    preexec_fn=ctrl_c_as_in_a_terminal,
                )
            nodes.append((env["SHAZBOT_BASE_URL"], proc, log))

        def printed(log: Path, line: str) -> bool:
            return line in log.read_text(encoding="utf-8", errors="replace").splitlines()

        for url, _, log in nodes:
            for other, _, _ in nodes:
                if other != url:
                    wait_until(
                        lambda: printed(log, f"INFO:app:peer joined: {other}"),
                        60,
                        f"{url} to print {other} joining\n{log.read_text()}",
                    )
        # Ctrl-C on the third: it announces its shutdown, the others print it leaving.
        third_url, third, _ = nodes[2]
        third.send_signal(signal.SIGINT)
        assert third.wait(15) == 0
        for url, _, log in nodes[:2]:
            wait_until(
                lambda: printed(log, f"INFO:app:peer left: {third_url}"),
                15,
                f"{url} to print {third_url} leaving\n{log.read_text()}",
            )
        for _, proc, _ in nodes[:2]:
            proc.send_signal(signal.SIGINT)
        for _, proc, _ in nodes[:2]:
            assert proc.wait(15) == 0
    finally:
        for _, proc, _ in nodes:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
