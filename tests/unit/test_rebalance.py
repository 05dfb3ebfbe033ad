"""Rx queue assignment and load-based rebalancing, on synthetic loads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vswitchd.rebalance import Plan, loads_from_delta, overloaded, plan, worker_loads
from vswitchd.rxq import assign, by_worker


def test_new_queues_are_spread_round_robin_without_measurements() -> None:
    got = assign([("a", 0), ("a", 1), ("b", 0), ("c", 0)], 2)
    assert sorted(got.values()) == [0, 0, 1, 1]


def test_existing_queues_keep_their_worker_when_ports_are_added() -> None:
    first = assign([("a", 0), ("b", 0)], 2)
    second = assign([("a", 0), ("b", 0), ("c", 0)], 2, previous=first)
    assert second[("a", 0)] == first[("a", 0)] and second[("b", 0)] == first[("b", 0)]


def test_cycles_assignment_puts_new_queue_on_least_loaded_worker() -> None:
    prev = {("a", 0): 0, ("b", 0): 1}
    got = assign([("a", 0), ("b", 0), ("c", 0)], 2, previous=prev,
                 load={("a", 0): 0.9, ("b", 0): 0.1})
    assert got[("c", 0)] == 1


def test_synthetic_overload_moves_queues_to_the_idle_worker() -> None:
    # Four busy queues of one port all on worker 0; worker 1 idle.
    current = {("vm", q): 0 for q in range(4)} | {("idle", 0): 1}
    loads = {("vm", q): 0.3 for q in range(4)} | {("idle", 0): 0.0}
    p = plan(current, loads, 2)
    assert p.before == (1.2, 0.0)
    assert max(p.after) <= 0.61
    assert p.moves == 2
    assert p.improvement_pct >= 49


def test_plan_keeps_an_optimal_assignment_lpt_would_worsen() -> None:
    # LPT would put 3+2+2 on one worker (7); the current split is 6/6.
    current = {("a", 0): 0, ("b", 0): 0, ("c", 0): 1, ("d", 0): 1, ("e", 0): 1}
    loads = {("a", 0): 3.0, ("b", 0): 3.0, ("c", 0): 2.0, ("d", 0): 2.0, ("e", 0): 2.0}
    p = plan(current, loads, 2)
    assert p.moves == 0 and p.after == (6.0, 6.0)


def test_balanced_assignment_moves_nothing() -> None:
    current = {("a", 0): 0, ("b", 0): 1}
    p = plan(current, {("a", 0): 0.5, ("b", 0): 0.5}, 2)
    assert p.moves == 0 and p.assignment == current


def test_overload_needs_every_sample_over_threshold_with_room_elsewhere() -> None:
    assert overloaded([[0.97, 0.2], [0.99, 0.3]], 0.95)
    assert not overloaded([[0.97, 0.2], [0.90, 0.3]], 0.95)     # dipped below once
    assert not overloaded([[0.97, 0.96]], 0.95)                 # nobody has room
    assert not overloaded([], 0.95)


def test_loads_come_from_busy_time_deltas() -> None:
    got = loads_from_delta({("a", 0): 100}, {("a", 0): 600, ("b", 0): 250}, 1000)
    assert got == {("a", 0): 0.5, ("b", 0): 0.25}


@given(st.dictionaries(st.tuples(st.sampled_from("abcdef"), st.integers(0, 3)),
                       st.floats(0, 1), min_size=1, max_size=20),
       st.integers(1, 4))
def test_plan_never_makes_the_busiest_worker_busier(loads, n_workers) -> None:
    current = assign(loads, n_workers)
    p: Plan = plan(current, loads, n_workers)
    assert set(p.assignment) == set(current)
    assert max(p.after) <= max(worker_loads(current, loads, n_workers)) + 1e-9
    assert sum(len(v) for v in by_worker(p.assignment).values()) == len(loads)
