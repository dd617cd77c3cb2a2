"""The ownership benchmark's simulator runs: owners diverge around each event and agree again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks import ownership
from benchmarks.ownership import check_weights, disagreement

ownership.PROGRESS = False


def test_owners_disagree_around_events_and_agree_again_in_the_simulator() -> None:
    check_weights([f"key-{i}" for i in range(30)])  # the sampler's owners are Ring's
    rows = disagreement(30, keys=20, seed=3, step=0.5, hold=30)
    by_event = {
        e: [r for r in rows if r["event"] == e] for e in ("join", "crash", "partition", "healed")
    }
    bad: Callable[[dict[str, Any]], Any] = lambda r: r["disagree"] or r["twice"] or r["orphaned"]  # noqa: E731
    # Each event shows its window: the newcomer's keys claimed twice, the victim's orphaned,
    # both halves owning keys during the partition.
    assert max(r["twice"] for r in by_event["join"]) > 0
    assert max(r["orphaned"] for r in by_event["crash"]) > 0
    assert max(r["twice"] for r in by_event["partition"]) > 0
    # ... and every event but the (unhealed) partition ends with the whole cluster agreeing.
    for event in ("join", "crash", "healed"):
        assert not bad(by_event[event][-1]), event
