"""Shared helpers of the benchmarks: settings, synthetic members, tables, machine load."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

from flask_clustershazbot import _json
from flask_clustershazbot.config import Settings
from flask_clustershazbot.records import GossipServer, ServerList

# A fixed wall clock for in-process runs: figures never depend on the date.
from flask_clustershazbot.testing import EPOCH_MS as EPOCH_MS

SECRET = "bench-gossip-secret"
CONTROL = "bench-control-secret"


def settings(base_url: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "secret": SECRET,
        "control_secret": CONTROL,
        "base_url": base_url,
        "master_list": "/nonexistent/master.json",
        "master_list_update": "/nonexistent/master.json",
        "master_list_update_auth": "",
    }
    values.update(kw)
    return Settings(**values)


def member_url(i: int) -> str:
    """A loopback address for member ``i`` (up to 15 million): never a private or public one,
    even where nothing is contacted."""
    return f"http://127.{1 + i // 62500}.{i // 250 % 250}.{1 + i % 250}:8080/"


def members(n: int, stamp: int = EPOCH_MS, offline_every: int = 10) -> ServerList:
    """``n`` members, every ``offline_every``-th offline, every 50th a monitor."""
    servers = [GossipServer(member_url(i), i % 50 == 0, stamp + i) for i in range(n)]
    online = tuple(s for i, s in enumerate(servers) if i % offline_every)
    offline = tuple(s for i, s in enumerate(servers) if not i % offline_every)
    return ServerList(online, offline)


def load() -> str:
    """The 1-minute load average and the core count, to print next to every figure."""
    one, _, _ = os.getloadavg()
    return f"load {one:.2f} on {os.cpu_count()} cores"


def environment() -> str:
    typed = ", msgspec records" if getattr(_json, "TYPED", False) else ""  # older packages: none
    return f"CPython {platform.python_version()}, JSON codec {_json.CODEC}{typed}, {load()}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table, right-aligned, that pastes into Markdown as is."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank rule; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


class NullScheduler:
    """A scheduler that runs nothing: for in-process benchmarks that drive the engine by hand."""

    def start(self) -> None:
        pass

    def after(self, delay: float, fn: Any) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def reset_after_fork(self) -> None:
        pass
