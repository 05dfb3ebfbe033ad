"""Assigning rx queues to workers.

Pure functions over names and numbers, so the policy is tested without a
switch.  Assignments are sticky: a queue stays on its worker across config
changes (moving a queue reorders its flows for a moment), and new queues go
to the worker with the least load, counted in queues, or in measured
busy time when the caller passes it ("cycles", as Open vSwitch's
pmd-rxq-assign does).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

RxqKey = tuple[str, int]          # (port name, queue number)


def assign(queues: Iterable[RxqKey], n_workers: int,
           previous: Mapping[RxqKey, int] | None = None,
           load: Mapping[RxqKey, float] | None = None) -> dict[RxqKey, int]:
    """Maps every queue in ``queues`` to a worker in 0..n_workers-1.

    Queues in ``previous`` keep their worker (if it still exists); the others
    go, in order, to the least loaded worker.  ``load`` gives each known
    queue's cost (e.g. busy ns); an unknown queue costs the average, so with
    no measurements this is round robin by queue count.
    """
    if n_workers <= 0:
        return {}
    previous = previous or {}
    load = load or {}
    wanted = list(queues)
    default_cost = (sum(load.values()) / len(load)) if load else 1.0

    def cost(key: RxqKey) -> float:
        return load.get(key, default_cost) or default_cost

    totals = [0.0] * n_workers
    counts = [0] * n_workers
    result: dict[RxqKey, int] = {}
    for key in wanted:
        worker = previous.get(key)
        if worker is not None and 0 <= worker < n_workers:
            result[key] = worker
            totals[worker] += cost(key)
            counts[worker] += 1
    for key in wanted:
        if key in result:
            continue
        worker = min(range(n_workers), key=lambda w: (totals[w], counts[w], w))
        result[key] = worker
        totals[worker] += cost(key)
        counts[worker] += 1
    return result


def by_worker(assignment: Mapping[RxqKey, int]) -> dict[int, list[RxqKey]]:
    """Inverts ``assignment``: worker -> its queues, sorted."""
    out: dict[int, list[RxqKey]] = {}
    for key, worker in sorted(assignment.items()):
        out.setdefault(worker, []).append(key)
    return out
