"""The Prometheus collector and server over the real C fast path, without root.

Frames go through the real C pipeline (the socketpair harness).  The
stand-ins are thin: `HarnessSwitch` has the attributes of
`vswitchd.switch.VSwitch` that the collector reads, over the harness's real
`fastpath.Switch`, and `RemovingFast` wraps that switch to remove a port in
the middle of a scrape.  No counter is faked.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests import listeners
from tests.frames import BROADCAST, eth, mac
from tests.listeners import free_port, http_get
from tests.unit.harness import Harness
from vswitchd import __version__
from vswitchd.config import PortConfig
from vswitchd.errors import VswitchError
from vswitchd.exporter import MetricsServer
from vswitchd.fastpath import COUNTER_HELP, DROP_REASONS, RING_STATS, TRAFFIC_COUNTERS, Switch
from vswitchd.metrics import SwitchCollector, port_metric_name, ring_metric_name
from vswitchd.policy_metrics import POLICY_TRAFFIC_COUNTERS
from vswitchd.ringstats import RING_STATS_HELP, RxRingReport

# Port id -> (name, ifname, VLAN) of the switch under test.
PORTS = {0: ("vm0", "tap-vm0", 1), 1: ("vm1", "tap-vm1", 1), 2: ("vm2", "tap-vm2", 10)}


@dataclass
class IO:
    fds: tuple[int, ...]


@dataclass
class AdapterPort:
    cfg: PortConfig
    id: int
    io: IO
    link_up: bool = True
    rx_ring: RxRingReport | None = None


@dataclass
class HarnessSwitch:
    """The VSwitch attributes SwitchCollector reads, over a real fastpath.Switch.

    The harness's switch has no worker threads: ``poll_once`` forwards in
    the calling thread and counts into context 0, which ``worker_stats(0)``
    reads.  Presenting it as one worker exercises the worker metrics with
    real values.
    """

    fast_switch: Switch | None
    ports: dict[str, AdapterPort] = field(default_factory=dict)
    n_workers: int = 1
    cpus: list[int] = field(default_factory=lambda: [3])
    generation: int = 7
    # What the collector reads of vswitchd.policy.Policies: its snapshot.
    policy: Any = field(default_factory=lambda: SimpleNamespace(report=(), removed={}))

    @property
    def fast(self) -> Switch:
        if self.fast_switch is None:
            raise VswitchError("the switch is not running")
        return self.fast_switch


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    for pid, (_, _, vlan) in PORTS.items():
        harness.add(pid, mode="access", access_vlan=vlan)
    yield harness
    harness.close()


@pytest.fixture
def vs(h: Harness) -> HarnessSwitch:
    sw = HarnessSwitch(h.switch)
    for pid, (name, ifname, vlan) in PORTS.items():
        cfg = PortConfig(name=name, type="tap", ifname=ifname, vlan=vlan, queues=1)
        sw.ports[name] = AdapterPort(cfg, pid, IO((h.ports[pid].sock.fileno(),)),
                                     link_up=pid != 2)
    return sw


@pytest.fixture
def registry(vs: HarnessSwitch) -> CollectorRegistry:
    reg = CollectorRegistry()
    reg.register(SwitchCollector(vs))
    return reg


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def port_labels(pid: int) -> dict[str, str]:
    name, ifname, _ = PORTS[pid]
    return {"port": name, "ifname": ifname, "type": "tap"}


def families(reg: CollectorRegistry) -> dict[str, Any]:
    text = generate_latest(reg).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def send_traffic(h: Harness) -> dict[str, int]:
    """Real frames through the C pipeline; returns the frame sizes used."""
    bcast = eth(BROADCAST, mac(1))                      # vm0 -> flooded to vm1
    reply = eth(mac(1), mac(2), payload=b"\x45" + bytes(99))   # vm1 -> vm0, learned
    h.inject(0, bcast)
    h.inject(1, reply)
    h.inject(0, b"\x00" * 10)                           # runt
    h.inject(0, eth(mac(2), BROADCAST))                 # multicast source
    h.inject(0, eth(mac(2), mac(1), vid=5))             # tagged on an access port
    h.inject(2, eth(BROADCAST, mac(3)))                 # alone on VLAN 10
    return {"bcast": len(bcast), "reply": len(reply)}


def promtool_check(text: bytes) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool not found (apt-get install prometheus); CI=true: "
                        "refusing to skip")
        pytest.skip("promtool not found (apt-get install prometheus)")
    return subprocess.run([promtool, "check", "metrics"], input=text.decode(),
                          capture_output=True, text=True, timeout=30)


# The collector.


def test_port_traffic_counters_follow_frames_through_the_c_pipeline(h, registry):
    sizes = send_traffic(h)
    m = "vswitchd_port_%s_total"
    assert value(registry, m % "receive_packets", **port_labels(0)) == 4
    assert value(registry, m % "receive_packets", **port_labels(1)) == 1
    assert value(registry, m % "receive_bytes", **port_labels(1)) == sizes["reply"]
    assert value(registry, m % "transmit_packets", **port_labels(1)) == 1
    assert value(registry, m % "transmit_bytes", **port_labels(1)) == sizes["bcast"]
    assert value(registry, m % "transmit_packets", **port_labels(0)) == 1
    assert value(registry, m % "transmit_bytes", **port_labels(0)) == sizes["reply"]
    assert value(registry, m % "flooded_packets", **port_labels(0)) == 1
    assert value(registry, m % "flooded_packets", **port_labels(1)) == 0
    for pid in PORTS:
        assert value(registry, m % "segmented_packets", **port_labels(pid)) == 0
        assert value(registry, m % "checksum_filled_packets", **port_labels(pid)) == 0
    # Exactly what the C counters say, for every traffic counter.
    for pid in PORTS:
        c = h.counters(pid)
        for name in set(TRAFFIC_COUNTERS) - set(POLICY_TRAFFIC_COUNTERS):
            assert value(registry, port_metric_name(name) + "_total", **port_labels(pid)) \
                == c[name]


def test_drops_are_exported_per_reason_for_every_port_zeros_included(h, registry):
    fams = families(registry)
    drops = fams["vswitchd_port_drops"]
    assert drops.type == "counter"
    series = {(s.labels["port"], s.labels["reason"]): s.value for s in drops.samples}
    assert set(series) == {(name, r) for name, _, _ in PORTS.values() for r in DROP_REASONS}
    assert set(series.values()) == {0}

    send_traffic(h)
    series = {(s.labels["port"], s.labels["reason"]): s.value
              for s in families(registry)["vswitchd_port_drops"].samples}
    assert series[("vm0", "runt")] == 1
    assert series[("vm0", "src_multicast")] == 1
    assert series[("vm0", "vlan_tagged_on_access")] == 1
    assert series[("vm2", "no_destination")] == 1
    for pid, (name, _, _) in PORTS.items():
        for reason in DROP_REASONS:
            assert series[(name, reason)] == h.counters(pid)[reason]


def test_port_link_state_and_queues_are_gauges(registry):
    assert value(registry, "vswitchd_port_up", port="vm0") == 1
    assert value(registry, "vswitchd_port_up", port="vm2") == 0
    assert value(registry, "vswitchd_port_queues", port="vm1") == 1


def test_mac_table_entries_are_counted_per_vlan_with_learning_stats(h, vs, registry):
    send_traffic(h)
    assert value(registry, "vswitchd_mac_table_entries", vlan="1") == 2
    assert value(registry, "vswitchd_mac_table_entries", vlan="10") == 1
    assert value(registry, "vswitchd_mac_table_capacity") == h.switch.macs.capacity
    assert value(registry, "vswitchd_mac_learned_total") == 3
    assert value(registry, "vswitchd_mac_flushed_total") == 0

    h.switch.macs.flush(vlan=10)
    assert value(registry, "vswitchd_mac_table_entries", vlan="10") is None
    assert value(registry, "vswitchd_mac_flushed_total") == 1
    stats = h.switch.macs.stats()
    for metric, field_name in (("moved", "moved"), ("aged", "aged"), ("table_full", "full")):
        assert value(registry, f"vswitchd_mac_{metric}_total") == getattr(stats, field_name)


def test_mac_table_full_is_counted(h, registry):
    cap = h.switch.macs.capacity
    for i in range(cap + 10):
        h.switch.macs.learn(1, f"02:00:00:01:{i >> 8 & 255:02x}:{i & 255:02x}", 0, h.now)
    full = value(registry, "vswitchd_mac_table_full_total")
    assert full == h.switch.macs.stats().full
    assert full is not None and full >= 10


def test_worker_metrics_read_the_polling_context(h, registry):
    send_traffic(h)
    stats = h.switch.worker_stats(0)
    assert stats.frames == 6
    assert value(registry, "vswitchd_worker_received_packets_total", worker="0") == 6
    assert value(registry, "vswitchd_worker_polls_total", worker="0") == stats.polls > 0
    assert value(registry, "vswitchd_worker_full_batches_total", worker="0") == 0
    busy = value(registry, "vswitchd_worker_busy_seconds_total", worker="0", cpu="3")
    idle = value(registry, "vswitchd_worker_idle_seconds_total", worker="0", cpu="3")
    assert busy == stats.busy_ns / 1e9 and idle == stats.idle_ns / 1e9


def test_info_and_config_generation(registry, vs):
    assert value(registry, "vswitchd_info", version=__version__) == 1
    assert value(registry, "vswitchd_config_generation") == 7
    vs.generation = 8
    assert value(registry, "vswitchd_config_generation") == 8


def test_names_types_and_help_follow_prometheus_conventions(registry):
    fams = families(registry)
    expected_counters = {
        "vswitchd_port_receive_packets", "vswitchd_port_receive_bytes",
        "vswitchd_port_transmit_packets", "vswitchd_port_transmit_bytes",
        "vswitchd_port_flooded_packets", "vswitchd_port_segmented_packets",
        "vswitchd_port_checksum_filled_packets", "vswitchd_port_drops",
        "vswitchd_mac_learned", "vswitchd_mac_moved", "vswitchd_mac_aged",
        "vswitchd_mac_flushed", "vswitchd_mac_table_full",
        "vswitchd_worker_busy_seconds", "vswitchd_worker_idle_seconds",
        "vswitchd_worker_received_packets", "vswitchd_worker_polls",
        "vswitchd_worker_full_batches",
        "vswitchd_mirror_packets", "vswitchd_mirror_dropped_packets",
        *(ring_metric_name(c) for c in RING_STATS),
        "vswitchd_acl_rule_matches", "vswitchd_acl_rule_matches_bytes", "vswitchd_acl_default",
        "vswitchd_acl_sessions_dropped", "vswitchd_qos_dropped_packets",
        "vswitchd_qos_dropped_bytes", "vswitchd_qos_held_packets",
        "vswitchd_vxlan_transmit_packets", "vswitchd_vxlan_transmit_bytes",
        "vswitchd_vxlan_receive_packets", "vswitchd_vxlan_receive_bytes",
        "vswitchd_vxlan_decap_drops",
    }
    # The text format has no info type: vswitchd_info is a gauge there.
    expected_gauges = {"vswitchd_port_up", "vswitchd_port_queues", "vswitchd_mac_table_entries",
                       "vswitchd_mac_table_capacity", "vswitchd_config_generation",
                       "vswitchd_info", "vswitchd_acl_sessions", "vswitchd_evpn_routes",
                       "vswitchd_evpn_session_up"}
    assert {n for n, f in fams.items() if f.type == "counter"} == expected_counters
    assert {n for n, f in fams.items() if f.type == "gauge"} == expected_gauges
    for name in expected_counters:
        assert {s.name for s in fams[name].samples} <= {name + "_total"}
    for counter in set(TRAFFIC_COUNTERS) - set(POLICY_TRAFFIC_COUNTERS):
        # help text comes from the C X-macro
        assert fams[port_metric_name(counter)].documentation == COUNTER_HELP[counter]
    assert all(f.documentation for f in fams.values())
    assert {tuple(sorted(s.labels)) for s in fams["vswitchd_port_receive_packets"].samples} \
        == {("ifname", "port", "type")}
    assert {tuple(sorted(s.labels)) for s in fams["vswitchd_worker_busy_seconds"].samples} \
        == {("cpu", "worker")}


def test_exposition_passes_promtool_check_metrics(h, vs, registry):
    send_traffic(h)
    add_ring_port(h, vs, RxRingReport((3, 3), (ring_counts(frames=5), ring_counts(frames=6))))
    result = promtool_check(generate_latest(registry))
    assert result.returncode == 0, result.stdout + result.stderr


def test_describe_lists_names_without_reading_the_switch():
    collector = SwitchCollector(HarnessSwitch(None))
    names = {m.name for m in collector.describe()}
    assert "vswitchd_port_drops" in names and "vswitchd_worker_polls" in names
    assert all(not m.samples for m in collector.describe() if m.name != "vswitchd")


def test_a_stopped_switch_exports_only_info(vs):
    vs.fast_switch = None
    reg = CollectorRegistry()
    reg.register(SwitchCollector(vs))
    assert set(families(reg)) == {"vswitchd_info"}


def test_a_closed_collector_stops_reading_the_switch(registry, vs):
    collector = SwitchCollector(vs)
    reg = CollectorRegistry()
    reg.register(collector)
    assert "vswitchd_port_drops" in families(reg)
    collector.close()
    assert set(families(reg)) == {"vswitchd_info"}


# Rx rings.


def ring_counts(**nonzero: int) -> dict[str, int]:
    return {**dict.fromkeys(RING_STATS, 0), **nonzero}


def add_ring_port(h: Harness, vs: HarnessSwitch, report: RxRingReport | None,
                  name: str = "up0", pid: int = 3) -> AdapterPort:
    """A netdev port with ``report`` as the event loop's last rx ring read."""
    fake = h.add(pid, mode="access", access_vlan=20)
    cfg = PortConfig(name=name, type="netdev", ifname=f"eth{pid}", vlan=20,
                     queues=len(report.queues) if report else 1)
    port = AdapterPort(cfg, pid, IO((fake.sock.fileno(),)), rx_ring=report)
    vs.ports[name] = port
    return port


def ring_labels(name: str = "up0", pid: int = 3) -> dict[str, str]:
    return {"port": name, "ifname": f"eth{pid}", "type": "netdev"}


def test_rx_ring_counters_are_summed_over_the_ports_queues(h, vs, registry):
    add_ring_port(h, vs, RxRingReport((3, 3), (
        ring_counts(blocks=2, frames=100, kernel_packets=110, kernel_drops=10, truncated=1),
        ring_counts(blocks=1, frames=40, kernel_packets=40, kernel_freezes=1, vlan_restored=3),
    )))
    expected = {"blocks": 3, "frames": 140, "kernel_packets": 150, "kernel_drops": 10,
                "kernel_freezes": 1, "truncated": 1, "vlan_restored": 3}
    assert set(expected) == set(RING_STATS)
    for counter, total in expected.items():
        assert value(registry, ring_metric_name(counter) + "_total", **ring_labels()) == total
    assert value(registry, "vswitchd_port_rx_ring_frames_total", **ring_labels()) == 140
    assert value(registry, "vswitchd_port_rx_ring_kernel_drops_total", **ring_labels()) == 10


def test_only_ports_with_an_rx_ring_have_ring_samples(h, vs, registry):
    add_ring_port(h, vs, RxRingReport((3,), (ring_counts(frames=7),)))
    # Asked for a ring, refused by the kernel: it reads with recvmmsg.
    add_ring_port(h, vs, RxRingReport((None,), (None,)), name="up1", pid=4)
    # One queue of two got a ring: that one is counted.
    add_ring_port(h, vs, RxRingReport((None, 2), (None, ring_counts(frames=2))),
                  name="up2", pid=5)
    fams = families(registry)
    for c in RING_STATS:
        family = fams[ring_metric_name(c)]
        assert family.type == "counter"
        assert {s.labels["port"] for s in family.samples} == {"up0", "up2"}
        assert {tuple(sorted(s.labels)) for s in family.samples} == {("ifname", "port", "type")}
        assert family.documentation == RING_STATS_HELP[c] + ", summed over the port's queues"
    assert value(registry, "vswitchd_port_rx_ring_frames_total", **ring_labels("up2", 5)) == 2


def test_a_scrape_reads_the_loops_rx_ring_report_not_the_ring(h, vs, registry):
    # The event loop replaces the report whole; a scrape in between sees the
    # old one, then the new one, and never a ring that may be freed.
    port = add_ring_port(h, vs, RxRingReport((3,), (ring_counts(frames=1),)))
    assert value(registry, "vswitchd_port_rx_ring_frames_total", **ring_labels()) == 1
    port.rx_ring = RxRingReport((3,), (ring_counts(frames=9),))
    assert value(registry, "vswitchd_port_rx_ring_frames_total", **ring_labels()) == 9


class RemovingFast:
    """The real fastpath.Switch, plus a race: the first read of a port's
    counters happens while the event loop removes that port."""

    def __init__(self, vs: HarnessSwitch, victim: str) -> None:
        assert vs.fast_switch is not None
        self._real, self._vs, self._victim = vs.fast_switch, vs, victim

    def port_counters(self, port_id: int) -> dict[str, int]:
        if self._victim in self._vs.ports and self._vs.ports[self._victim].id == port_id:
            del self._vs.ports[self._victim]
        return self._real.port_counters(port_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_port_removed_mid_scrape_is_left_out(h, vs):
    send_traffic(h)
    vs.fast_switch = RemovingFast(vs, "vm1")  # type: ignore[assignment]
    reg = CollectorRegistry()
    reg.register(SwitchCollector(vs))
    ports = {s.labels["port"] for s in families(reg)["vswitchd_port_receive_packets"].samples}
    assert ports == {"vm0", "vm2"}


def test_scrapes_survive_ports_changing_in_another_thread(h, vs, registry):
    send_traffic(h)
    spare = {f"x{i}": AdapterPort(PortConfig(name=f"x{i}", type="tap", ifname=f"x{i}"), 40 + i,
                                  IO((0,))) for i in range(50)}
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for name, port in spare.items():
                vs.ports[name] = port
            for name in spare:
                vs.ports.pop(name, None)

    t = threading.Thread(target=churn)
    t.start()
    try:
        for _ in range(50):
            generate_latest(registry)
    finally:
        stop.set()
        t.join()
    assert value(registry, "vswitchd_port_receive_packets_total", **port_labels(0)) == 4


def test_scrape_cost_with_a_full_8192_entry_mac_table(capsys):
    """Prints the cost; asserts nothing about time."""
    h = Harness(mac_capacity=16384)
    try:
        for pid, (_, _, vlan) in PORTS.items():
            h.add(pid, mode="access", access_vlan=vlan)
        i = 0
        while len(h.switch.macs) < 8192:     # a few land in full buckets: learn more
            h.switch.macs.learn(1 + i % 64, f"02:00:00:02:{i >> 8:02x}:{i & 255:02x}",
                                i % 3, h.now)
            i += 1
        vs = HarnessSwitch(h.switch)
        reg = CollectorRegistry()
        reg.register(SwitchCollector(vs))
        dumps, scrapes = [], []
        for _ in range(10):
            t0 = time.perf_counter()
            h.switch.macs.dump()
            dumps.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            generate_latest(reg)
            scrapes.append(time.perf_counter() - t0)
        assert sum(value(reg, "vswitchd_mac_table_entries", vlan=str(v)) or 0
                   for v in range(1, 65)) == 8192
        with capsys.disabled():
            print(f"\nMAC table of 8192 entries: dump() median "
                  f"{statistics.median(dumps) * 1e3:.2f} ms, whole scrape median "
                  f"{statistics.median(scrapes) * 1e3:.2f} ms")
    finally:
        h.close()


# The HTTP server.


async def test_server_serves_metrics_and_stop_releases_the_port(h, vs):
    send_traffic(h)
    port = free_port()
    server = MetricsServer(vs, f"127.0.0.1:{port}")
    await server.start()
    try:
        assert server.port == port
        url = f"http://127.0.0.1:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        text = body.decode()
        assert 'vswitchd_port_receive_packets_total{ifname="tap-vm0",port="vm0",type="tap"} ' \
               '4.0' in text
        assert "process_cpu_seconds_total" in text     # its own registry has them
        assert server.collector is not None
    finally:
        await server.stop()
    assert server.port is None and server.collector is None
    with socket.socket() as s:       # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    await server.stop()               # a second stop is a no-op


async def test_server_uses_the_injected_registry_and_restarts(vs):
    reg = CollectorRegistry()
    server = MetricsServer(vs, f"127.0.0.1:{free_port()}", registry=reg)
    for _ in range(2):                # start/stop are symmetric, so repeatable
        await server.start()
        try:
            assert reg.get_sample_value("vswitchd_config_generation") == 7
            assert reg.get_sample_value("process_cpu_seconds_total") is None
        finally:
            await server.stop()
        assert reg.get_sample_value("vswitchd_config_generation") is None


async def test_server_listens_on_ipv6_brackets(vs):
    try:
        port = free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = MetricsServer(vs, f"[::1]:{port}")
    await server.start()
    try:
        url = f"http://[::1]:{port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read())
        assert b"vswitchd_info" in body
    finally:
        await server.stop()


async def test_bind_failure_names_the_key_and_the_reason(vs):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        reg = CollectorRegistry()
        server = MetricsServer(vs, f"127.0.0.1:{port}", registry=reg)
        with pytest.raises(VswitchError) as exc:
            await server.start()
    assert str(exc.value) == (f"metrics.listen: cannot listen on 127.0.0.1:{port}: "
                              "Address already in use")
    assert server.collector is None and list(reg.collect()) == []
    await server.stop()


async def test_an_invalid_listen_address_is_refused(vs):
    with pytest.raises(VswitchError, match=r"^metrics\.listen: "):
        await MetricsServer(vs, "nowhere").start()


# Moving the server (a reload).


def scrape(port: int, host: str = "127.0.0.1") -> bytes:
    return http_get(f"http://{host}:{port}/metrics")


def refused(port: int) -> bool:
    return listeners.refused("127.0.0.1", port)


@pytest.fixture
async def serving(vs: HarnessSwitch):
    """A started server on a free loopback port, stopped afterwards."""
    server = MetricsServer(vs, f"127.0.0.1:{free_port()}", registry=CollectorRegistry())
    await server.start()
    yield server
    await server.stop()


async def assert_serving(server: MetricsServer, listen: str) -> None:
    """``server`` says it serves on ``listen`` and does."""
    port = int(listen.rsplit(":", 1)[1])
    assert (server.port, server.listen) == (port, listen)
    assert b"vswitchd_info" in await asyncio.to_thread(scrape, port)


async def test_change_listen_serves_on_the_new_port_and_closes_the_old(serving, caplog):
    old, new = serving.port, free_port()
    collector = serving.collector
    caplog.set_level("INFO", logger="vswitchd.exporter")
    async with serving.change_listen(f"127.0.0.1:{new}"):
        # Inside the change both listen: nothing is closed before it is done.
        assert b"vswitchd_info" in await asyncio.to_thread(scrape, new)
        assert b"vswitchd_info" in await asyncio.to_thread(scrape, old)
    assert (serving.port, serving.listen) == (new, f"127.0.0.1:{new}")
    assert serving.collector is collector          # the same counters, not re-registered
    assert refused(old)
    assert b"vswitchd_config_generation 7.0" in await asyncio.to_thread(scrape, new)
    assert caplog.messages == [f"metrics: now serving on 127.0.0.1:{new} (was 127.0.0.1:{old})"]


async def test_change_listen_to_a_busy_port_fails_and_keeps_serving_on_the_old(serving):
    old = serving.port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        entered = False
        with pytest.raises(VswitchError) as exc:
            async with serving.change_listen(f"127.0.0.1:{port}"):
                entered = True
    assert not entered                              # refused before the reload went on
    assert str(exc.value) == (f"metrics.listen: cannot listen on 127.0.0.1:{port}: "
                              "Address already in use")
    await assert_serving(serving, f"127.0.0.1:{old}")


async def test_change_listen_to_the_same_port_on_an_overlapping_address_hands_it_over(
        serving, caplog):
    port = serving.port
    caplog.set_level("INFO", logger="vswitchd.exporter")
    async with serving.change_listen(f"0.0.0.0:{port}"):
        # The new listener has the port already; the old one is closed.
        assert b"vswitchd_info" in await asyncio.to_thread(scrape, port)
    await assert_serving(serving, f"0.0.0.0:{port}")
    assert caplog.messages == [f"metrics: now serving on 0.0.0.0:{port} "
                               f"(was 127.0.0.1:{port})"]


async def reload_failing_after_the_bind(server: MetricsServer, listen: str) -> None:
    """change_listen(listen) around a reload whose other part fails."""
    with pytest.raises(VswitchError, match="ports.vm9"):
        async with server.change_listen(listen):
            raise VswitchError("ports.vm9: the rest of the reload failed")


async def test_a_reload_failing_after_a_hand_over_returns_the_port(serving):
    port = serving.port
    await reload_failing_after_the_bind(serving, f"0.0.0.0:{port}")
    await assert_serving(serving, f"127.0.0.1:{port}")


async def test_change_listen_to_an_invalid_address_names_the_key(serving):
    with pytest.raises(VswitchError, match=r"^metrics\.listen: 'nowhere' is not a valid "):
        async with serving.change_listen("nowhere"):
            pass
    assert b"vswitchd_info" in await asyncio.to_thread(scrape, serving.port)


async def test_a_reload_failing_after_the_bind_closes_the_new_port_and_keeps_the_old(serving):
    old, new = serving.port, free_port()
    await reload_failing_after_the_bind(serving, f"127.0.0.1:{new}")
    assert refused(new)
    await assert_serving(serving, f"127.0.0.1:{old}")


async def test_an_empty_listen_disables_the_exporter_and_an_address_enables_it(
        serving, caplog):
    old = serving.port
    caplog.set_level("INFO", logger="vswitchd.exporter")
    async with serving.change_listen(""):
        pass
    assert refused(old)
    assert (serving.port, serving.serving_on, serving.collector) == (None, "", None)
    assert serving.registry.get_sample_value("vswitchd_config_generation") is None

    new = free_port()
    async with serving.change_listen(f"127.0.0.1:{new}"):
        pass
    assert b"vswitchd_config_generation 7.0" in await asyncio.to_thread(scrape, new)
    assert caplog.messages == [
        f"metrics: disabled (was serving on 127.0.0.1:{old})",
        f"metrics: now serving on 127.0.0.1:{new} (was disabled)",
    ]


async def test_enabling_on_a_busy_port_leaves_the_exporter_disabled(vs):
    reg = CollectorRegistry()
    server = MetricsServer(vs, "", registry=reg)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(VswitchError, match="Address already in use"):
            async with server.change_listen(f"127.0.0.1:{busy.getsockname()[1]}"):
                pass
    assert (server.port, server.listen, server.collector) == (None, "", None)
    assert list(reg.collect()) == []


async def test_an_unchanged_listen_keeps_the_listener_and_logs_nothing(serving, caplog):
    port = serving.port
    caplog.set_level("INFO", logger="vswitchd.exporter")
    async with serving.change_listen(f"127.0.0.1:{port}"):
        pass
    assert serving.port == port and caplog.messages == []
    assert b"vswitchd_info" in await asyncio.to_thread(scrape, port)
