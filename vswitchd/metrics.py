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

Lifetime.  A scrape must not touch the C switch once it is freed, so
``MetricsServer.stop()`` must run before ``VSwitch.stop()``: it stops the
HTTP server, then closes the collector, which waits for a scrape in progress
to finish reading; a later one (a request accepted just before) gets only
``vswitchd_info``.  Concurrent scrapes take turns on the collector's lock.

Moving.  A reload that changes ``[metrics] listen`` binds the new address
beside the old one, and closes the old one only once the rest of the reload
has succeeded (``MetricsServer.change_listen``): a bad address, or a bad
port elsewhere in the file, leaves the exporter where it was.  The collector
stays registered across a move, so both listeners serve the same counters.

Naming follows the Prometheus conventions (and node_exporter's
``node_network_receive_packets_total``): base units (seconds, bytes),
``_total`` on counters, and every port drop reason always exported, zeros
included, so ``rate()`` works from the first drop.  Per-queue counters are
not exported: the C fast path only counts per port.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from vswitchd import __version__
from vswitchd.config import MetricsConfig
from vswitchd.errors import VswitchError
from vswitchd.fastpath import (
    COUNTER_HELP,
    DROP_REASONS,
    RING_STATS,
    TRAFFIC_COUNTERS,
    MacStats,
    WorkerStats,
)
from vswitchd.ringstats import RING_STATS_HELP, RxRingReport

log = logging.getLogger(__name__)

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
        return self._families(None, [], collections.Counter(), None, None, [])

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
        return self._families(generation, ports, per_vlan, capacity, mac_stats, workers)

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
                  mac_stats: MacStats | None, workers: list[_WorkerRow]) -> list[Metric]:
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
        return out


def _info() -> Metric:
    info = InfoMetricFamily(NS, "vswitchd build information")
    info.add_metric([], {"version": __version__})
    return info


def _port_families(rows: list[_PortRow]) -> list[Metric]:
    traffic = {c: CounterMetricFamily(port_metric_name(c), COUNTER_HELP[c], labels=PORT_LABELS)
               for c in TRAFFIC_COUNTERS}
    drops = CounterMetricFamily(
        f"{NS}_port_drops", "Frames dropped, on the port they came in on (tx_error: went "
        "out of), by reason: " + ", ".join(DROP_REASONS), labels=("port", "reason"))
    up = GaugeMetricFamily(f"{NS}_port_up", "1 if the port's link is up, else 0",
                           labels=("port",))
    queues = GaugeMetricFamily(f"{NS}_port_queues", "Number of rx/tx queue pairs of the port",
                               labels=("port",))
    for port, counters, _ in rows:
        cfg = port.cfg
        labels = [cfg.name, cfg.ifname, cfg.type]
        for c, family in traffic.items():
            family.add_metric(labels, counters[c])
        for reason in DROP_REASONS:
            drops.add_metric([cfg.name, reason], counters[reason])
        up.add_metric([cfg.name], 1 if port.link_up else 0)
        queues.add_metric([cfg.name], len(port.io.fds))
    return [*traffic.values(), drops, up, queues, *_ring_families(rows)]


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
        cfg = port.cfg
        labels = [cfg.name, cfg.ifname, cfg.type]
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


def serving_change(was: str, now: str) -> str:
    """How the log and the reload reply say the exporter moved from ``was``
    to ``now`` ("" for not serving)."""
    if not now:
        return f"disabled (was serving on {was})"
    return f"now serving on {now} (was {was or 'disabled'})"


def _address(listen: str) -> tuple[str, int]:
    try:
        mc = MetricsConfig(listen)
        host, port = mc.host, mc.port
    except ValueError:
        raise VswitchError(f"metrics.listen: {listen!r} is not a valid listen "
                           "address (host:port or [ipv6]:port)") from None
    if host is None or port is None:
        raise VswitchError("metrics.listen: empty, the exporter is disabled")
    return host, port


class _BindError(VswitchError):
    """A listen address the kernel refused; ``errno`` says why."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_


class _Listener:
    """One bound HTTP server serving a registry, and the thread it runs in."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = _address(listen)
        try:
            # Binds here (immediate), serves from the server's own thread.
            self.server, self.thread = start_http_server(port, host, registry)
        except OSError as exc:
            raise _BindError(f"metrics.listen: cannot listen on {listen}: "
                             f"{exc.strerror or exc}", exc.errno) from None
        self.listen = listen

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    async def close(self) -> None:
        # shutdown() waits for serve_forever's next poll (up to 0.5 s), so
        # not on the event loop thread.  All three steps in that thread: if
        # the awaiting task is cancelled (the management socket closing
        # under a reload), the socket is still closed and the thread joined.
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class MetricsServer:
    """Serves ``/metrics`` for ``switch`` on ``listen`` ("host:port" or
    "[ipv6]:port", as in ``[metrics] listen``).

    ``registry`` is for tests: the switch's collector is registered on it
    while serving.  Without one the server makes its own (never the
    process-wide default) with the process, platform and GC collectors too.
    Stop it before the switch: see the module docstring.

    ``change_listen()`` moves a running exporter (a reload): several
    listeners may briefly serve the same registry and collector, so a move
    never leaves a moment with nothing listening.
    """

    def __init__(self, switch: SwitchLike, listen: str,
                 registry: CollectorRegistry | None = None) -> None:
        self.switch = switch
        self.listen = listen
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.collector: SwitchCollector | None = None
        self._listener: _Listener | None = None

    @property
    def port(self) -> int | None:
        """The TCP port being served, or None when stopped."""
        return None if self._listener is None else self._listener.port

    @property
    def serving_on(self) -> str:
        """The listen address being served, or "" when stopped."""
        return "" if self._listener is None else self._listener.listen

    async def start(self) -> None:
        self._listener = self._bind(self.listen)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await self._close(listener, last=True)

    @contextlib.asynccontextmanager
    async def change_listen(self, listen: str) -> AsyncIterator[None]:
        """Moves the exporter to ``listen`` ("" stops it) as one part of a
        bigger change, a reload, that may still fail in the ``async with``
        body.

        Entering binds ``listen`` beside the listener serving now, so a bad
        address raises VswitchError, naming ``metrics.listen``, before
        anything has changed.  If the body raises, the new listener is
        closed and the old one has never stopped serving.  If it returns,
        the old listener is closed and the exporter serves on ``listen``.
        """
        was = self.serving_on
        if listen == was:
            self.listen = listen
            yield
            return
        old = self._listener
        handed_over = False
        try:
            new = self._bind(listen) if listen else None
        except _BindError as exc:
            if not (old is not None and exc.errno == errno.EADDRINUSE
                    and _address(listen)[1] == old.port):
                raise
            # The same port on an overlapping address (127.0.0.1:9477 ->
            # 0.0.0.0:9477): the kernel lets only one of them listen, so the
            # port is handed over, and handed back if anything fails.
            new = await self._hand_over(old, listen)
            handed_over = True
        try:
            yield
        except BaseException:
            if new is not None:
                await self._close(new, last=old is None)
            if handed_over:
                assert old is not None
                self._listener = self._bind_back(old.listen)
            raise
        self._listener, self.listen = new, listen
        if old is not None and not handed_over:
            await self._close(old, last=new is None)
        log.info("metrics: %s", serving_change(was, listen))

    async def _hand_over(self, old: _Listener, listen: str) -> _Listener:
        """Closes ``old`` and binds ``listen`` on its port; if that fails,
        binds ``old``'s address again and raises.  Scrapes are refused for
        the moment in between."""
        self._listener = None
        await old.close()
        try:
            return self._bind(listen)
        except VswitchError:
            self._listener = self._bind_back(old.listen)
            raise

    def _bind_back(self, listen: str) -> _Listener | None:
        """Binds ``listen`` again after a failed hand-over; None (and an
        error in the log) if even that fails, e.g. another process took
        the port in between."""
        try:
            return self._bind(listen)
        except VswitchError as exc:
            log.error("metrics: could not return to %s: %s; exporter stopped", listen, exc)
            self._drop_collector()
            return None

    def _bind(self, listen: str) -> _Listener:
        """A listener on ``listen``; the first one registers the collector,
        so the registry never serves without it."""
        first = self.collector is None
        if first:
            self.collector = SwitchCollector(self.switch)
            self.registry.register(self.collector)
        try:
            return _Listener(listen, self.registry)
        except VswitchError:
            if first:
                self._drop_collector()
            raise

    async def _close(self, listener: _Listener, last: bool) -> None:
        await listener.close()
        if last:
            self._drop_collector()

    def _drop_collector(self) -> None:
        collector, self.collector = self.collector, None
        if collector is None:
            return
        # A request accepted before its listener closed may still be running
        # in its own thread: let it finish reading, and make any later read
        # a no-op.
        collector.close()
        self.registry.unregister(collector)
