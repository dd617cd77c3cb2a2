"""The fast tests on every supported Python, each version in a venv of its own (``.nox/``).

    nox                        # the fast tests on 3.10 to 3.13: each version found here
    nox -s tests-3.13          # one version
    nox -s exits               # the exit tests alone, on each version
    nox -s tests-3.12 -- tests/test_cluster.py -x   # other tests or pytest options

A version whose interpreter is not found is skipped with a message, in CI too. Besides
``python3.X`` on ``PATH``, the newest ``3.X.*`` that pyenv installed is found (pyenv's
shims answer only for its selected versions). The whole suite runs on the default
interpreter: ``make test``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nox

VERSIONS = ["3.10", "3.11", "3.12", "3.13"]
#: What depends most on the interpreter: parsing and validation, threads and the scheduler,
#: the protocol's rounds, in-process clusters over HTTP, and the exit tests that stop
#: ``flask run`` with Ctrl-C and SIGTERM under the session's interpreter: about 50 s a
#: version.
FAST = [
    "tests/test_records.py",
    "tests/test_config.py",
    "tests/test_rtt.py",
    "tests/test_scheduling.py",
    "tests/test_engine_rounds.py",
    "tests/test_cluster.py",
    "tests/test_lifecycle.py",
]

#: The exit tests: a node stopped by Ctrl-C or SIGTERM under ``flask run`` or ``app.run()``,
#: or by a script's end, announces its shutdown. They met Python 3.12.0 and 3.12.1 refusing
#: new threads at exit; about 15 s.
EXITS = ["tests/test_lifecycle.py", "-k", "stopped or at_exit or in_flight or no_thread or budget"]

#: Left out of the sessions' installs: uwsgi compiles from source at every install (about
#: 35 s a version: uv finds its cached build stale), and only the uWSGI host tests use it,
#: which skip without it; they run on the default interpreter (``make test``).
NOT_INSTALLED = {"uwsgi"}

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = False  # nox's default in CI is to fail
nox.options.default_venv_backend = "uv|virtualenv"  # uv when installed: seconds, not a minute
if hasattr(nox.options, "download_python"):  # nox 2025.10+: never fetch an interpreter
    nox.options.download_python = "never"


def _pyenv_bins() -> list[str]:
    """The ``bin`` folder of pyenv's newest patch release of each version, if any."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    found = []
    for version in VERSIONS:
        patches = [
            p
            for p in root.glob(f"{version}.*")
            if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)
        ]
        if patches:
            newest = max(patches, key=lambda p: int(p.name.rsplit(".", 1)[1]))
            found.append(str(newest / "bin"))
    return found


os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


def _requirements() -> list[str]:
    """requirements-dev.txt without NOT_INSTALLED."""
    lines = (Path(__file__).parent / "requirements-dev.txt").read_text().splitlines()
    wanted = [line.split("#", 1)[0].strip() for line in lines]
    return [r for r in wanted if r and re.split(r"[\s\[<>=!~;]", r)[0] not in NOT_INSTALLED]


def _pytest(session: nox.Session, default: list[str]) -> None:
    """The package and the test requirements in the version's venv, then pytest."""
    session.install(".", *_requirements())
    session.run("python", "-m", "pytest", "-q", *(session.posargs or default))


@nox.session(python=VERSIONS)
def tests(session: nox.Session) -> None:
    """The unit tests and the in-process cluster tests (FAST)."""
    _pytest(session, FAST)


@nox.session(python=VERSIONS)
def exits(session: nox.Session) -> None:
    """The exit tests alone (EXITS)."""
    _pytest(session, EXITS)
