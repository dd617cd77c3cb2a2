from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster import CONTROL, MASTER_AUTH, SECRET, MasterListServer, Node


@pytest.fixture(autouse=True)
def library_log_level() -> Iterator[None]:
    """Each test starts with the package logger's level as the suite found it: the
    simulator quiets it for thousands of engines (benchmarks/simulate.py), and a test that
    reads the log after one (caplog) would see nothing."""
    logger = logging.getLogger("flask_clustershazbot")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    """A fast node config with a file master list; tests override what they need."""
    return {
        "SHAZBOT_SECRET": SECRET,
        "SHAZBOT_CONTROL_SECRET": CONTROL,
        "SHAZBOT_BASE_URL": "http://127.0.0.1:1/",
        "SHAZBOT_MASTER_LIST": str(tmp_path / "master.json"),
        "SHAZBOT_GOSSIP_INTERVAL": 0.2,
        "SHAZBOT_MASTER_ANNOUNCE_MINIMUM": 0.5,
        "SHAZBOT_MASTER_ANNOUNCE_INTERVAL": 1.0,
        "SHAZBOT_RETRY_DELAY": 0.2,
        "SHAZBOT_REQUEST_TIMEOUT": 1.0,
        "SHAZBOT_MASTER_LIST_TIMEOUT": 2.0,
    }


@pytest.fixture
def master_server() -> Iterator[MasterListServer]:
    server = MasterListServer()
    yield server
    server.stop()


@pytest.fixture
def http_config(config: dict[str, Any], master_server: MasterListServer) -> dict[str, Any]:
    return {
        **config,
        "SHAZBOT_MASTER_LIST": master_server.url,
        "SHAZBOT_MASTER_LIST_UPDATE": master_server.url,
        "SHAZBOT_MASTER_LIST_UPDATE_AUTH": MASTER_AUTH,
    }


@pytest.fixture
def make_node(config: dict[str, Any]) -> Iterator[Callable[..., Node]]:
    """``make_node(**overrides)`` starts a node; every node is stopped at teardown."""
    nodes: list[Node] = []

    def make(port: int = 0, base: dict[str, Any] | None = None, **overrides: Any) -> Node:
        node = Node({**(base or config), **overrides}, port=port)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()
