"""Rebalancing rx queues across workers by measured load ("dynamic VMQ").

Pure functions over numbers, tested without a switch.  The switch samples
every ``rebalance_sample_s`` seconds: each worker's busy ratio and each
queue's busy time.  A worker that stayed above the load threshold in every
sample of the last interval, while another worker had room, makes the
switch ask ``plan()`` for a better assignment; it is applied only if it
lowers the busiest worker's load by at least the improvement threshold.
(Open vSwitch's pmd-auto-lb uses the same three knobs.)

Loads are fractions of one core (busy ns per wall ns).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vswitchd.rxq import RxqKey


@dataclass(frozen=True)
class Plan:
    assignment: dict[RxqKey, int]
    before: tuple[float, ...]         # per-worker load now
    after: tuple[float, ...]          # per-worker load expected after the move
    moves: int                        # queues that change worker

    @property
    def improvement_pct(self) -> float:
        worst = max(self.before, default=0.0)
        if worst <= 0:
            return 0.0
        return 100.0 * (worst - max(self.after, default=0.0)) / worst


def worker_loads(assignment: Mapping[RxqKey, int], loads: Mapping[RxqKey, float],
                 n_workers: int) -> tuple[float, ...]:
    totals = [0.0] * n_workers
    for key, worker in assignment.items():
        if 0 <= worker < n_workers:
            totals[worker] += loads.get(key, 0.0)
    return tuple(totals)


def plan(current: Mapping[RxqKey, int], loads: Mapping[RxqKey, float],
         n_workers: int) -> Plan:
    """The assignment that best evens out ``loads`` over ``n_workers``:
    heaviest queue first onto the least loaded worker (LPT), a queue's
    current worker winning ties so that nothing moves without a reason."""
    totals = [0.0] * n_workers
    assignment: dict[RxqKey, int] = {}
    for key in sorted(current, key=lambda k: (-loads.get(k, 0.0), k)):
        best = min(totals)
        candidates = [w for w in range(n_workers) if totals[w] == best]
        worker = current[key] if current[key] in candidates else candidates[0]
        assignment[key] = worker
        totals[worker] += loads.get(key, 0.0)
    before = worker_loads(current, loads, n_workers)
    if max(totals, default=0.0) >= max(before, default=0.0):
        # LPT is a heuristic (within 4/3 of optimal): never trade the current
        # assignment for one whose busiest worker is no better.
        return Plan(dict(current), before, before, 0)
    moves = sum(1 for k, w in assignment.items() if current.get(k) != w)
    return Plan(assignment, before, tuple(totals), moves)


def overloaded(history: Sequence[Sequence[float]], threshold: float) -> bool:
    """True when, in every sample of ``history`` (each a list of per-worker
    busy ratios), some worker was at or above ``threshold`` while another
    was below it: one worker stays overloaded while another has room."""
    if not history:
        return False
    for sample in history:
        if len(sample) < 2 or max(sample) < threshold or min(sample) >= threshold:
            return False
    return True


def loads_from_delta(before: Mapping[RxqKey, int], after: Mapping[RxqKey, int],
                     elapsed_ns: int) -> dict[RxqKey, float]:
    """Per-queue load over a sampling interval from busy-ns counters."""
    if elapsed_ns <= 0:
        return {k: 0.0 for k in after}
    return {k: max(0, v - before.get(k, 0)) / elapsed_ns for k, v in after.items()}


class LoadSampler:
    """Samples of cumulative busy time, turned into loads.

    ``take()`` records each worker's (busy ns, idle ns) and each queue's busy
    ns, all cumulative; against
    the previous sample it derives each worker's busy ratio and each queue's
    load, and keeps the last ``keep`` worker-ratio samples for
    ``overloaded()``.
    """

    def __init__(self) -> None:
        self._at_ns: int | None = None
        self._workers: list[tuple[int, int]] = []
        self._rxq_busy_ns: dict[RxqKey, int] = {}
        self.worker_ratio: list[float] = []
        self.rxq_load: dict[RxqKey, float] = {}
        self._history: deque[list[float]] = deque()

    def take(self, now_ns: int, workers: list[tuple[int, int]],
             rxq_busy_ns: dict[RxqKey, int], keep: int) -> None:
        if self._at_ns is not None:
            ratios = []
            for w, (busy_ns, idle_ns) in enumerate(workers):
                old_busy, old_idle = self._workers[w] if w < len(self._workers) else (0, 0)
                busy, idle = busy_ns - old_busy, idle_ns - old_idle
                ratios.append(busy / (busy + idle) if busy + idle > 0 else 0.0)
            self.worker_ratio = ratios
            self.rxq_load = loads_from_delta(self._rxq_busy_ns, rxq_busy_ns,
                                             now_ns - self._at_ns)
            self._history.append(ratios)
        self._at_ns, self._workers, self._rxq_busy_ns = now_ns, workers, rxq_busy_ns
        while len(self._history) > keep:
            self._history.popleft()

    def overloaded(self, threshold: float, needed: int) -> bool:
        """At least ``needed`` samples, each with one worker at or above
        ``threshold`` while another had room (see ``overloaded()``)."""
        return len(self._history) >= needed and overloaded(list(self._history), threshold)

    def forget_history(self) -> None:
        """After a rebalance: the old samples describe the old assignment."""
        self._history.clear()
