"""Text for people: ages of records and the members table of the CLI (and the live page)."""

from __future__ import annotations

import time
from typing import Any

from .records import ServerList


def printable(text: str) -> str:
    """``text`` with every character that is not printable escaped as Python writes it
    (``\\x1b``, ``\\r``, ``\\u202e``): text from a node cannot retitle or clear the
    terminal, move its cursor, reverse the line or print a line of its own."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def format_age(seconds: float) -> str:
    """``3 s ago``, ``5 min ago``, ``2 h ago``, ``4 d ago`` (``... ahead`` for a future stamp)."""
    if seconds < -1:
        return f"{format_age(-seconds).removesuffix(' ago')} ahead"
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def members_data(base_url: str, view: ServerList, with_offline: bool) -> dict[str, Any]:
    """The stable JSON shape of ``members --json``."""
    rows = [(s, "online") for s in view.online] + [(s, "offline") for s in view.offline]
    rows.sort(key=lambda row: row[0].base_url)
    return {
        "node": base_url,
        "online": len(view.online),
        "offline": len(view.offline) if with_offline else None,
        "members": [{**s.to_dict(), "state": state} for s, state in rows],
    }


def members_table(data: dict[str, Any], now_ms: int | None = None) -> str:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    header = ("BASE URL", "STATE", "MONITOR", "LAST UPDATE")
    rows = [
        (
            m["baseUrl"],
            m["state"],
            "yes" if m["monitor"] else "no",
            format_age((now_ms - m["lastUpdate"]) / 1000),
        )
        for m in data["members"]
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    offline = (
        "offline not shown: no control secret"
        if data["offline"] is None
        else f"{data['offline']} offline"
    )
    lines.append(f"{data['online']} online, {offline} (view of {data['node']})")
    return "\n".join(lines)
