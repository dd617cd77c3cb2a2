"""The adaptive gossip timeout: TCP's estimate, clamped, per peer, with backoff."""

from __future__ import annotations

from flask_clustershazbot.rtt import RoundTrips

A, B = "http://127.0.0.1:9/", "http://127.0.0.1:11/"


def test_the_ceiling_applies_until_the_first_sample_then_fast_peers_get_the_floor() -> None:
    rt = RoundTrips(0.5, 5.0)
    assert rt.timeout(A) == 5.0
    for _ in range(20):
        rt.sample(A, 0.01)
    assert rt.timeout(A) == 0.5
    assert rt.timeout(B) == 0.5  # a peer without samples gets the node's estimate


def test_a_slow_peer_keeps_a_longer_timeout_than_the_node_and_never_above_the_ceiling() -> None:
    rt = RoundTrips(0.5, 5.0)
    for _ in range(20):
        rt.sample(A, 0.01)
        rt.sample(B, 1.0)
    assert 1.0 < rt.timeout(B) < 5.0
    assert rt.timeout(A) < rt.timeout(B)
    for _ in range(20):
        rt.sample(B, 60.0)
    assert rt.timeout(B) == 5.0


def test_a_timeout_doubles_the_next_wait_until_a_sample_resets_it() -> None:
    rt = RoundTrips(0.5, 5.0)
    for _ in range(20):
        rt.sample(A, 0.01)
    rt.timed_out(A)
    assert rt.timeout(A) == 1.0  # the floor, doubled (as TCP doubles its clamped RTO)
    for _ in range(5):
        rt.timed_out(A)
    assert rt.timeout(A) == 5.0
    rt.sample(A, 0.01)
    assert rt.timeout(A) == 0.5


def test_a_peer_never_sampled_backs_off_too_without_touching_the_others() -> None:
    """A slow peer this node never reached yet (rounds take peers round-robin, so some go
    unsampled for a while) must get longer timeouts after each one, or every retry and
    every helper's probe would time out just as fast and take it offline for being slow."""
    rt = RoundTrips(0.5, 5.0)
    for _ in range(20):
        rt.sample(A, 0.01)
    rt.timed_out(B)
    assert rt.timeout(B) == 1.0
    rt.timed_out(B)
    assert rt.timeout(B) == 2.0
    assert rt.timeout(A) == 0.5
    rt.sample(B, 0.01)
    assert rt.timeout(B) == 0.5


def test_a_timeout_before_any_sample_leaves_the_ceiling() -> None:
    rt = RoundTrips(0.5, 5.0)
    rt.timed_out(A)
    assert rt.timeout(A) == rt.timeout(B) == 5.0


def test_a_floor_above_the_ceiling_means_a_fixed_timeout() -> None:
    rt = RoundTrips(9.0, 5.0)
    rt.sample(A, 0.01)
    assert rt.timeout(A) == 5.0
