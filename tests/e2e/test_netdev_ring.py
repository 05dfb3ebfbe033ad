"""Netdev ports read through their PACKET_MMAP rx ring, end to end.

A namespace on a veth whose host end is a netdev port (AF_PACKET, rx ring)
talks to a namespace on a TAP port: ping, then TCP both ways with the
veth's GSO super-frames (up to ~64 KB, each one a single frame in the ring,
which must hold it whole: a clamped frame would be an oversize drop and
stall TCP).  Both ring versions are run (VSWITCHD_PACKET_RING=2/3), and
recvmmsg (=0, the default).  `vswitchctl show` and the exporter report
which rx path the port got and the ring's counters.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, ping, ping_loss, run
from tests.listeners import free_port

EXPECTED_DROPS = {"no_destination"}   # flooding before both ends are learned


def ring_mappings(pid: int) -> int:
    """How many packet-socket rings the daemon has mapped."""
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for line in f if "socket:[" in line)


@pytest.fixture
def daemon_env(monkeypatch: pytest.MonkeyPatch):
    def set_ring(value: str) -> None:
        monkeypatch.setenv("VSWITCHD_PACKET_RING", value)
    return set_ring


@pytest.fixture
def started(tmp_path: Path, require_root: None) -> Iterator[list[RunningDaemon]]:
    ds: list[RunningDaemon] = []
    yield ds
    for d in ds:
        rc = d.stop()
        assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"


def iperf(client_ns: str, server_ns: str, dst: str, port: int, secs: int = 3) -> str:
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = run(client_ns, "iperf3", "-c", dst, "-p", str(port), "-t", str(secs), "-J",
                check=False, timeout=secs + 30)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        return r.stdout
    finally:
        server.kill()
        server.wait()


def tap_and_veth(started: list[RunningDaemon], tmp_path: Path, netns, veth, *,
                 tap: dict | None = None, netdev: dict | None = None, workers: int = 1):
    """A daemon with a TAP port "t" in namespace a and a netdev port "v" on a
    veth whose peer is in namespace b, both up; returns (d, a, b, tap_if, ns_end)."""
    a, b = netns(), netns()
    host_end, ns_end = veth(peer_netns=b)
    tap_if = f"vt{a[-8:]}"
    d = RunningDaemon(tmp_path, {"t": {"type": "tap", "ifname": tap_if, "netns": a, **(tap or {})},
                                 "v": {"type": "netdev", "ifname": host_end, **(netdev or {})}},
                      switch={"workers": workers})
    d.start()
    started.append(d)
    run(b, "ip", "link", "set", ns_end, "up")
    return d, a, b, tap_if, ns_end


@pytest.mark.parametrize("ring", ["2", "3", "0"])
def test_netdev_ring_carries_ping_and_tcp_with_gso_frames(
        ring: str, daemon_env, started: list[RunningDaemon], tmp_path: Path, netns, veth) -> None:
    import json

    daemon_env(ring)
    d, a, b, tap_if, ns_end = tap_and_veth(started, tmp_path, netns, veth)
    d.wait_ports_up("t", "v")
    addr(a, tap_if, "10.77.9.1/24")
    run(b, "ip", "addr", "add", "10.77.9.2/24", "dev", ns_end)

    r = ping(b, "10.77.9.1", count=10, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout
    assert ring_mappings(d.proc.pid) == (0 if ring == "0" else 1)

    before = d.port("v")
    out = json.loads(iperf(b, a, "10.77.9.1", 5311))      # veth -> ring -> tap
    after = d.port("v")
    gbps = out["end"]["sum_received"]["bits_per_second"] / 1e9
    assert gbps > 0.3, f"{gbps} Gbit/s"
    frames = after["rx_packets"] - before["rx_packets"]
    mean = (after["rx_bytes"] - before["rx_bytes"]) / max(frames, 1)
    # GSO super-frames came through the ring whole: far beyond one MTU.
    assert mean > 8000, f"mean rx frame {mean:.0f} bytes over {frames} frames"

    out = json.loads(iperf(a, b, "10.77.9.2", 5312))      # tap -> sendmmsg -> veth
    assert out["end"]["sum_received"]["bits_per_second"] > 0.3e9

    stats = d.ctl("stats")
    for port in stats["ports"]:
        unexpected = {k: v for k, v in (port.get("drops") or {}).items()
                      if v and k not in EXPECTED_DROPS}
        assert not unexpected, f"port {port['name']}: {unexpected}"
    assert ring_mappings(d.proc.pid) == (0 if ring == "0" else 1)


@pytest.mark.parametrize("ring", ["1", "0"])
def test_netdev_ring_port_removal_unmaps_it(
        ring: str, daemon_env, started: list[RunningDaemon], tmp_path: Path, netns,
        veth) -> None:
    daemon_env(ring)
    d, a, b, tap_if, ns_end = tap_and_veth(started, tmp_path, netns, veth,
                                           netdev={"queues": 2}, workers=2)
    d.wait_ports_up("t", "v")
    addr(a, tap_if, "10.77.10.1/24")
    run(b, "ip", "addr", "add", "10.77.10.2/24", "dev", ns_end)
    assert ping_loss(ping(b, "10.77.10.1", count=5, interval=0.05).stdout) == 0
    # One ring per queue (fanout spreads flows over both).
    assert ring_mappings(d.proc.pid) == (0 if ring == "0" else 2)
    d.ctl("port", "del", "v")
    assert ring_mappings(d.proc.pid) == 0
    assert ping_loss(ping(b, "10.77.10.1", count=2, interval=0.05, deadline=2).stdout) == 100


@pytest.mark.parametrize("ring", ["3", "2", "0"])
def test_tagged_frame_on_netdev_trunk_keeps_its_vlan(
        ring: str, daemon_env, started: list[RunningDaemon], tmp_path: Path, netns,
        veth) -> None:
    # The receive path moves an 802.1Q tag into skb metadata before packet
    # sockets see the frame; the ring hands it back (tp_vlan_tci) and the
    # parser reinserts it.
    from tests.e2e.nsnet import Capture, send_frames
    from tests.frames import BROADCAST, eth

    daemon_env(ring)
    d, a, b, tap_if, ns_end = tap_and_veth(started, tmp_path, netns, veth, tap={"vlan": 10},
                                           netdev={"mode": "trunk", "vlans": "10"})
    run(a, "ip", "link", "set", tap_if, "up")
    d.wait_ports_up("t", "v")
    src = bytes.fromhex("020000000b01")
    with Capture(a, tap_if) as cap:
        cap.drain()
        send_frames(b, ns_end, [eth(BROADCAST, src, vid=10, payload=b"\x45" + bytes(45))] * 3)
        got = [f for f in cap.frames(1.0) if f[6:12] == src]
    assert len(got) == 3, (got, d.ctl("stats"))
    assert all(f[12:14] == b"\x08\x00" for f in got)  # delivered untagged to the access port


@pytest.mark.parametrize("rx_ring,mapped", [("v3", 1), ("off", 0)])
def test_rx_ring_config_key_picks_the_ring_per_port(
        rx_ring: str, mapped: int, started: list[RunningDaemon], tmp_path: Path, netns,
        veth) -> None:
    d, a, b, tap_if, ns_end = tap_and_veth(started, tmp_path, netns, veth,
                                           netdev={"rx_ring": rx_ring})
    d.wait_ports_up("t", "v")
    addr(a, tap_if, "10.77.10.1/24")
    run(b, "ip", "addr", "add", "10.77.10.2/24", "dev", ns_end)
    r = ping(b, "10.77.10.1", count=5, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout
    assert d.proc is not None and ring_mappings(d.proc.pid) == mapped


def ring_frames_samples(d: RunningDaemon) -> dict[str, float]:
    """vswitchd_port_rx_ring_frames_total by port, from one scrape."""
    return {s.labels["port"]: s.value
            for f in text_string_to_metric_families(d.scrape().decode())
            for s in f.samples if s.name == "vswitchd_port_rx_ring_frames_total"}


@pytest.mark.parametrize("rx_ring", ["v3", "off"])
def test_show_and_metrics_report_the_rx_path_and_ring_counters(
        rx_ring: str, started: list[RunningDaemon], tmp_path: Path, netns, veth) -> None:
    a, b = netns(), netns()
    host_end, ns_end = veth(peer_netns=b)
    tap_if = f"vt{a[-8:]}"
    d = RunningDaemon(tmp_path, {"t": {"type": "tap", "ifname": tap_if, "netns": a},
                                 "v": {"type": "netdev", "ifname": host_end, "rx_ring": rx_ring}},
                      switch={"workers": 1}, metrics=f"127.0.0.1:{free_port()}")
    d.start()
    started.append(d)
    run(b, "ip", "link", "set", ns_end, "up")
    d.wait_ports_up("t", "v")
    addr(a, tap_if, "10.77.11.1/24")
    run(b, "ip", "addr", "add", "10.77.11.2/24", "dev", ns_end)
    r = ping(b, "10.77.11.1", count=10, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout

    port = d.port("v")
    assert port["rx_ring"] == rx_ring
    assert [q["rx_ring"] for q in port["rx_ring_queues"]] == [rx_ring]
    assert d.port("t")["rx_ring"] is None           # a TAP has no packet socket
    if rx_ring == "off":
        assert port["rx_ring_stats"] is None
        # No ring, nothing to count: no samples rather than zeros.
        assert "v" not in ring_frames_samples(d)
        return

    stats = port["rx_ring_stats"]
    assert stats["frames"] >= 10 and stats["blocks"] > 0, stats
    assert stats["truncated"] == 0 and stats["kernel_drops"] == 0, stats
    assert stats["kernel_packets"] >= stats["frames"], stats
    # The kernel zeroes its counts each time they are read: the totals
    # must not go back when read again.
    again = d.port("v")["rx_ring_stats"]
    assert all(again[k] >= stats[k] for k in stats), (stats, again)
    text = d.ctl_raw("show").stdout
    assert "rx ring v (v3): frames " in text, text

    # The exporter's copy is refreshed every second by the event loop.
    deadline = time.monotonic() + 10
    while (got := ring_frames_samples(d).get("v", 0)) < stats["frames"]:
        assert time.monotonic() < deadline, f"frames sample {got} < {stats['frames']}"
        time.sleep(0.3)
    assert set(ring_frames_samples(d)) == {"v"}
