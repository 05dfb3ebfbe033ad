"""The Prometheus exporter: a Collector that reads the C counters at scrape time.

Nothing here runs per packet.  The workers count into their own per-port
arrays (csrc/vs_counters.h); a scrape sums them through ``fastpath`` and
turns the sums into metric families, so an idle exporter costs nothing and a
busy one costs one pass over the ports per scrape.

Threads.  prometheus-client serves HTTP from its own thread, and each request
from a thread of its own, while ``VSwitch`` belongs to the event loop thread.
A scrape therefore only *reads*: it copies ``switch.ports`` before iterating
(the loop may add or remove a port meanwhile) and drops a port that was
removed while its counters were being read.  The C reads are relaxed atomic
loads, so a scrape never blocks a worker; it holds the GIL while it builds
the families, which delays the event loop by about the scrape time.

Rx ring counters are the exception: reading them resets the kernel's
counts and a ring is freed when its port goes, both the event loop
thread's business (vswitchd/ringstats.py).  A scrape exports the report
that thread last took (``Port.rx_ring``, refreshed every timer tick, so at
most a second old) and never touches a ring.

Serving.  vswitchd/exporter.py binds the HTTP listener(s) that serve the
registry this collector is registered on, and closes the collector
(``SwitchCollector.close()``) before the switch is freed.

Naming follows the Prometheus conventions (and node_exporter's
``node_network_receive_packets_total``): base units (seconds, bytes),
``_total`` on counters, and every port drop reason always exported, zeros
included, so ``rate()`` works from the first drop.  Per-queue counters are
not exported: the C fast path only counts per port.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from vswitchd import __version__, vxlan_report
from vswitchd.errors import VswitchError
from vswitchd.fastpath import (
    COUNTER_HELP,
    DROP_REASONS,
    RING_STATS,
    TRAFFIC_COUNTERS,
    MacStats,
    WorkerStats,
)
from vswitchd.policy_metrics import POLICY_TRAFFIC_COUNTERS, policy_families
from vswitchd.ringstats import RING_STATS_HELP, RxRingReport

NS = "vswitchd"

# C counter name -> metric name (without "_total").  A traffic counter added
# to csrc/vs_counters.h later is still exported, as vswitchd_port_<name>_total
# with its C help text, until it is given a proper name here.
PORT_COUNTER_METRICS: dict[str, str] = {
    "rx_packets": "port_receive_packets",
    "rx_bytes": "port_receive_bytes",
    "tx_packets": "port_transmit_packets",
    "tx_bytes": "port_transmit_bytes",
    "flooded": "port_flooded_packets",
    "segmented": "port_segmented_packets",
    "csum_filled": "port_checksum_filled_packets",
}

PORT_LABELS = ("port", "ifname", "type")
NS_PER_S = 1e9


class SwitchLike(Protocol):
    """What the collector reads from a ``vswitchd.switch.VSwitch``: ``ports``
    (name -> Port with ``cfg``, ``id``, ``io.fds``, ``link_up``, ``rx_ring``), ``fast`` (a
    ``fastpath.Switch``; raises VswitchError while stopped), ``n_workers``,
    ``cpus`` and ``generation``."""

    @property
    def ports(self) -> Mapping[str, Any]: ...

    @property
    def fast(self) -> Any: ...

    @property
    def n_workers(self) -> int: ...

    @property
    def cpus(self) -> Sequence[int]: ...

    @property
    def generation(self) -> int: ...

    @property
    def policy(self) -> Any: ...


def port_metric_name(counter: str) -> str:
    """The metric name (without "_total") of C traffic counter ``counter``."""
    return f"{NS}_{PORT_COUNTER_METRICS.get(counter, 'port_' + counter)}"


# One scrape's worth of reads, taken under the collector's lock.
_PortRow = tuple[Any, dict[str, int], RxRingReport | None]   # (Port, counters, rx ring)
_WorkerRow = tuple[int, str, WorkerStats]             # (worker, cpu, stats)


class SwitchCollector(Collector):
    """Exports a switch's port, MAC table and worker counters.

    ``collect()`` may run in any thread, several at once; after ``close()``
    it exports only ``vswitchd_info``.
    """

    def __init__(self, switch: SwitchLike) -> None:
        self._switch = switch
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Waits for a scrape in progress to finish reading, then stops
        reading the switch for good."""
        with self._lock:
            self._closed = True

    def describe(self) -> Iterable[Metric]:
        # The families without samples: lets the registry catch duplicate
        # names without reading a switch that may not be running yet.
        return self._families(None, [], collections.Counter(), None, None, [], (), {}, None) \
            + _mirror_families([])

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._closed:
                return [_info()]
            try:
                fast = self._switch.fast
            except VswitchError:
                return [_info()]     # not started yet, or stopping
            generation = self._switch.generation
            ports = self._read_ports(fast)
            macs = fast.macs
            # One C dump, counted without building an object per entry.
            per_vlan = collections.Counter(macs.count_by_vlan())
            capacity, mac_stats = macs.capacity, macs.stats()
            cpus = list(self._switch.cpus)
            workers = [(w, str(cpus[w % len(cpus)]) if cpus else "", fast.worker_stats(w))
                       for w in range(self._switch.n_workers)]
            policy = self._switch.policy
            reports, removed = policy.report, dict(policy.removed)
            mirrors = _read_mirrors(self._switch, fast)
            evpn = getattr(self._switch, "evpn", None)
            evpn_snap = evpn.metrics_snapshot() if evpn is not None else None
        return self._families(generation, ports, per_vlan, capacity, mac_stats, workers,
                              reports, removed, evpn_snap) + _mirror_families(mirrors)

    def _read_ports(self, fast: Any) -> list[_PortRow]:
        # list() first: the event loop thread may add or remove ports while
        # we iterate.
        ports = self._switch.ports
        rows: list[_PortRow] = []
        for port in list(ports.values()):
            port_id = port.id
            counters = fast.port_counters(port_id)
            # The event loop's last report, not the ring (module docstring).
            rx_ring = port.rx_ring
            # Removed (its id perhaps reused) while we read: skip it rather
            # than report another port's counters under its name.
            if port.id != port_id or ports.get(port.cfg.name) is not port:
                continue
            rows.append((port, counters, rx_ring))
        rows.sort(key=lambda row: row[0].cfg.name)
        return rows

    @staticmethod
    def _families(generation: int | None, ports: list[_PortRow],
                  per_vlan: collections.Counter[int], capacity: int | None,
                  mac_stats: MacStats | None, workers: list[_WorkerRow],
                  policy_reports: Sequence[Any], sessions_removed: Mapping[Any, int],
                  evpn: dict[str, Any] | None = None) -> list[Metric]:
        """All families from one scrape's reads; with no reads (None, empty
        lists), the same families without samples, for describe()."""
        out: list[Metric] = [
            _info(),
            GaugeMetricFamily(f"{NS}_config_generation",
                              "Configuration generation: 1 at start, +1 per applied change",
                              value=generation),
        ]
        out += _port_families(ports)
        out += _mac_families(per_vlan, capacity, mac_stats)
        out += _worker_families(workers)
        out += policy_families(policy_reports, sessions_removed,
                               [(port.cfg.name, counters) for port, counters, _ in ports])
        out += vxlan_report.metric_families(ports)
        out += vxlan_report.evpn_families(evpn)
        return out


def _info() -> Metric:
    info = InfoMetricFamily(NS, "vswitchd build information")
    info.add_metric([], {"version": __version__})
    return info


def _port_labels(port: Any) -> list[str]:
    """The PORT_LABELS values of ``port``."""
    return [port.cfg.name, port.cfg.ifname, port.cfg.type]


# vhost-user connection states (vswitchd/ports/vhostuser.py).
VHOST_STATES = ("listening", "connecting", "connected", "running")


def _port_families(rows: list[_PortRow]) -> list[Metric]:
    traffic = {c: CounterMetricFamily(port_metric_name(c), COUNTER_HELP[c], labels=PORT_LABELS)
               for c in TRAFFIC_COUNTERS if c not in POLICY_TRAFFIC_COUNTERS}
    drops = CounterMetricFamily(
        f"{NS}_port_drops", "Frames dropped, on the port they came in on (tx_error: went "
        "out of), by reason: " + ", ".join(DROP_REASONS), labels=("port", "reason"))
    up = GaugeMetricFamily(f"{NS}_port_up", "1 if the port's link is up, else 0",
                           labels=("port",))
    queues = GaugeMetricFamily(f"{NS}_port_queues", "Number of rx/tx queue pairs of the port",
                               labels=("port",))
    vhost = GaugeMetricFamily(
        f"{NS}_port_vhost_state", "vhost-user ports: 1 for the connection's state (one of "
        + ", ".join(VHOST_STATES) + "), 0 for the others", labels=("port", "state"))
    for port, counters, _ in rows:
        cfg = port.cfg
        labels = _port_labels(port)
        state = getattr(getattr(port, "backend", None), "state", None)
        if cfg.type == "vhostuser" and state:
            for s in VHOST_STATES:
                vhost.add_metric([cfg.name, s], 1 if s == state else 0)
        for c, family in traffic.items():
            family.add_metric(labels, counters[c])
        for reason in DROP_REASONS:
            drops.add_metric([cfg.name, reason], counters[reason])
        up.add_metric([cfg.name], 1 if port.link_up else 0)
        queues.add_metric([cfg.name], len(port.io.fds))
    # The vhost family only where there are vhost-user ports.
    return [*traffic.values(), drops, up, queues, *([vhost] if vhost.samples else []),
            *_ring_families(rows)]


def ring_metric_name(counter: str) -> str:
    """The metric name (without "_total") of rx ring counter ``counter``."""
    return f"{NS}_port_rx_ring_{counter}"


def _ring_families(rows: list[_PortRow]) -> list[Metric]:
    # Only ports whose queues have a ring get samples: a port that fell back
    # to recvmmsg (or never asked for a ring) has nothing to count, and a
    # zero would read as "ring on, no traffic".
    families = {c: CounterMetricFamily(ring_metric_name(c),
                                       RING_STATS_HELP[c] + ", summed over the port's queues",
                                       labels=PORT_LABELS)
                for c in RING_STATS}
    for port, _, rx_ring in rows:
        totals = None if rx_ring is None else rx_ring.totals
        if totals is None:
            continue
        labels = _port_labels(port)
        for c, family in families.items():
            family.add_metric(labels, totals[c])
    return list(families.values())


def _mac_families(per_vlan: collections.Counter[int], capacity: int | None,
                  stats: MacStats | None) -> list[Metric]:
    entries = GaugeMetricFamily(f"{NS}_mac_table_entries", "Learned MAC addresses, by VLAN",
                                labels=("vlan",))
    for vlan in sorted(per_vlan):
        entries.add_metric([str(vlan)], per_vlan[vlan])

    def counter(name: str, help_text: str, field: str) -> Metric:
        value = None if stats is None else getattr(stats, field)
        return CounterMetricFamily(f"{NS}_mac_{name}", help_text, value=value)

    return [
        entries,
        GaugeMetricFamily(f"{NS}_mac_table_capacity", "Capacity of the MAC table, in entries",
                          value=capacity),
        counter("learned", "MAC addresses learned as new entries", "learned"),
        counter("moved", "Learned MAC addresses seen on another port", "moved"),
        counter("aged", "MAC entries removed by aging", "aged"),
        counter("flushed", "MAC entries removed by a flush (port down or removed, VLAN "
                "change, fdb flush)", "flushed"),
        counter("table_full", "MAC addresses not learned because the table was full", "full"),
    ]


def _worker_families(rows: list[_WorkerRow]) -> list[Metric]:
    wl = ("worker",)
    busy = CounterMetricFamily(f"{NS}_worker_busy_seconds",
                               "Time the worker spent reading, forwarding and sending frames",
                               labels=("worker", "cpu"))
    idle = CounterMetricFamily(f"{NS}_worker_idle_seconds",
                               "Time the worker spent waiting for frames",
                               labels=("worker", "cpu"))
    frames = CounterMetricFamily(f"{NS}_worker_received_packets",
                                 "Frames the worker read from its rx queues", labels=wl)
    polls = CounterMetricFamily(f"{NS}_worker_polls",
                                "Non-empty rx bursts the worker read (mean burst size = "
                                "received_packets / polls)", labels=wl)
    full = CounterMetricFamily(f"{NS}_worker_full_batches",
                               "Rx bursts that filled a whole batch", labels=wl)
    for w, cpu, s in rows:
        worker = str(w)
        busy.add_metric([worker, cpu], s.busy_ns / NS_PER_S)
        idle.add_metric([worker, cpu], s.idle_ns / NS_PER_S)
        frames.add_metric([worker], s.frames)
        polls.add_metric([worker], s.polls)
        full.add_metric([worker], s.batches_full)
    return [busy, idle, frames, polls, full]


def _read_mirrors(switch: Any, fast: Any) -> list[tuple[str, Any]]:
    """(name, MirrorStats) of every configured mirror (vswitchd/mirrors.py);
    none for a switch-like object without mirrors."""
    table, config = getattr(switch, "mirrors", None), getattr(switch, "config", None)
    if table is None or config is None:
        return []
    return [(name, table.stats(fast, name)) for name, _ in config.mirrors]


def _mirror_families(rows: list[tuple[str, Any]]) -> list[Metric]:
    sent = CounterMetricFamily(f"{NS}_mirror_packets", "Copies a mirror sent to its output port",
                               labels=("mirror",))
    dropped = CounterMetricFamily(f"{NS}_mirror_dropped_packets",
                                  "Copies a mirror dropped: output port full or down, or a "
                                  "super-frame it cannot take", labels=("mirror",))
    for name, stats in rows:
        sent.add_metric([name], stats.packets)
        dropped.add_metric([name], stats.dropped)
    return [sent, dropped]
