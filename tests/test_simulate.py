"""The simulator drives the real engines in virtual time, and its runs repeat exactly."""

from __future__ import annotations

import math

from benchmarks.simulate import Cluster, asymmetric, dissemination, false_alarms


def test_a_simulated_cluster_learns_a_join_a_leave_and_a_crash() -> None:
    result = dissemination(30, seed=7)
    assert set(result) == {"join", "leave", "crash"}
    assert all(math.isfinite(rounds) for rounds in result.values()), result
    # A join reaches up to 20 peers at bootstrap, so 30 nodes know it within a few rounds.
    assert result["join"] < result["crash"]


def test_runs_repeat_exactly_with_the_same_seed_and_differ_with_another() -> None:
    assert dissemination(20, seed=3) == dissemination(20, seed=3)
    runs = {tuple(dissemination(20, seed=s).values()) for s in range(4)}
    assert len(runs) > 1


def test_a_partitioned_node_is_reported_offline_and_rejoins_when_healed() -> None:
    c = Cluster(10, seed=1)
    c.run_rounds(2)
    cut = list(c.net.nodes)[3]
    c.net.groups[cut] = 1  # nobody reaches it, it reaches nobody, but it keeps running
    assert math.isfinite(c.rounds_until(lambda: c.known_by_all(cut, False), 100))
    c.net.groups[cut] = 0
    # Offline peers are probed now and then: the healed node refutes and is back everywhere.
    assert math.isfinite(c.rounds_until(lambda: c.known_by_all(cut, True), 100))


def test_bytes_are_counted_and_gzip_saves_on_the_wire() -> None:
    a = false_alarms(40, seed=2, loss=0.0, rounds=4)
    assert a["reports"] == 0  # no loss, nobody crashed: nobody is reported offline
    assert 0 < a["wire_bytes"] < a["plain_bytes"]


def test_one_broken_direction_alarms_nobody_with_indirect_probes_but_did_with_retries_only() -> (
    None
):
    new = asymmetric(30, seed=5, links=3, rounds=60, rule="new")
    old = asymmetric(30, seed=5, links=3, rounds=60, rule="old")
    assert new["reports"] == 0
    assert old["reports"] > 0  # the rule before indirect probes: a local fault became news
    assert math.isfinite(new["crash"]) and math.isfinite(old["crash"])


def test_heavy_loss_raises_no_false_alarm_with_indirect_probes() -> None:
    assert false_alarms(30, seed=4, loss=0.2, rounds=120)["reports"] == 0
    assert false_alarms(30, seed=4, loss=0.2, rounds=120, rule="old")["reports"] > 0
