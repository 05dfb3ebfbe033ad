"""vswitchd end to end: real TAPs in real namespaces ("VMs"), real traffic.

Each test starts the daemon on its own config and socket, moves its TAPs
into namespaces it created, and removes everything by exact name.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, addr, mac_of, ping, ping_loss, run, send_frames
from tests.frames import BROADCAST, eth, parse_vlan

Factory = Callable[..., RunningDaemon]



def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def test_ping_between_two_access_ports_of_one_vlan(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a, vlan=10), "b": tap(b, vlan=10)})
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), "10.77.0.1/24")
    addr(b, ifn(b), "10.77.0.2/24")
    r = ping(a, "10.77.0.2", count=5, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout


def test_no_reachability_between_different_vlans(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a, vlan=10), "b": tap(b, vlan=20)})
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), "10.77.1.1/24")
    addr(b, ifn(b), "10.77.1.2/24")
    r = ping(a, "10.77.1.2", count=3, interval=0.2, deadline=3)
    assert ping_loss(r.stdout) == 100
    assert d.port("b")["tx_packets"] == 0


def test_trunk_receives_tagged_and_its_tagged_frames_reach_access_port_untagged(
        daemon: Factory, netns) -> None:
    a, t, c = netns(), netns(), netns()
    d = daemon({"a": tap(a, vlan=30), "t": tap(t, mode="trunk", vlans="1-100"),
                "c": tap(c, vlan=40)})
    d.wait_ports_up("a", "t", "c")
    for ns in (a, t, c):
        run(ns, "ip", "link", "set", ifn(ns), "up")
    a_mac = bytes.fromhex(mac_of(a, ifn(a)).replace(":", ""))
    with Capture(t, ifn(t)) as cap_t, Capture(a, ifn(a)) as cap_a, Capture(c, ifn(c)) as cap_c:
        for cap in (cap_t, cap_a, cap_c):
            cap.drain()
        probe = eth(BROADCAST, a_mac, ethertype=0x88B5, payload=b"from-access".ljust(46, b"."))
        send_frames(a, ifn(a), [probe])
        got = [f for f in cap_t.frames() if f[12:14] == b"\x81\x00" and b"from-access" in f]
        assert [parse_vlan(f) for f in got] == [30]

        tagged = eth(a_mac, bytes.fromhex("020000000099"), vid=30, ethertype=0x88B5,
                     payload=b"from-trunk".ljust(46, b"."))
        send_frames(t, ifn(t), [tagged])
        got_a = [f for f in cap_a.frames() if b"from-trunk" in f]
        assert got_a and parse_vlan(got_a[0]) is None
        assert not [f for f in cap_c.frames(0.2) if b"from-trunk" in f]
    fdb = d.ctl("fdb", "show", "--vlan", "30")
    assert {"vlan": 30, "mac": "02:00:00:00:00:99", "port": "t"} in [
        {k: e[k] for k in ("vlan", "mac", "port")} for e in fdb]


def test_unknown_unicast_is_flooded_once_then_seen_only_on_destination(
        daemon: Factory, netns) -> None:
    a, b, c = netns(), netns(), netns()
    d = daemon({"a": tap(a), "b": tap(b), "c": tap(c)})
    d.wait_ports_up("a", "b", "c")
    for ns in (a, b, c):
        run(ns, "ip", "link", "set", ifn(ns), "up")
    src = bytes.fromhex("020000000a0a")
    dst = bytes.fromhex("020000000b0b")
    with Capture(b, ifn(b)) as cap_b, Capture(c, ifn(c)) as cap_c:
        cap_b.drain()
        cap_c.drain()
        send_frames(a, ifn(a), [eth(dst, src, ethertype=0x88B5, payload=b"unknown".ljust(46))])
        assert len([f for f in cap_b.frames() if b"unknown" in f]) == 1
        assert len([f for f in cap_c.frames() if b"unknown" in f]) == 1
        # dst speaks: it is learned on b
        send_frames(b, ifn(b), [eth(BROADCAST, dst, ethertype=0x88B5, payload=b"hello".ljust(46))])
        time.sleep(0.1)
        cap_b.drain()
        cap_c.drain()
        send_frames(a, ifn(a), [eth(dst, src, ethertype=0x88B5, payload=b"known".ljust(46))])
        assert len([f for f in cap_b.frames() if b"known" in f]) == 1
        assert [f for f in cap_c.frames() if b"known" in f] == []


def test_fdb_show_lists_learned_macs_and_aging_removes_them(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a, vlan=5), "b": tap(b, vlan=5)}, switch={"mac_aging_s": 2})
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), "10.77.2.1/24")
    addr(b, ifn(b), "10.77.2.2/24")
    assert ping_loss(ping(a, "10.77.2.2", count=2, interval=0.1).stdout) == 0
    macs = {(e["mac"], e["port"]) for e in d.ctl("fdb", "show", "--vlan", "5")}
    assert (mac_of(a, ifn(a)), "a") in macs and (mac_of(b, ifn(b)), "b") in macs
    only_a = d.ctl("fdb", "show", "--port", "a")
    assert {e["port"] for e in only_a} == {"a"}
    # Silence both namespaces (no IPv6 chatter, no ARP refresh): entries age out.
    for ns in (a, b):
        run(ns, "ip", "link", "set", ifn(ns), "down")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and d.ctl("fdb", "show", "--vlan", "5"):
        time.sleep(0.25)
    assert d.ctl("fdb", "show", "--vlan", "5") == []


def test_fdb_flush_forgets_entries(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a), "b": tap(b)})
    d.wait_ports_up("a", "b")
    for ns in (a, b):
        run(ns, "ip", "link", "set", ifn(ns), "up")
    # A source only this test uses: nothing will re-learn it after the flush.
    ghost = bytes.fromhex("0200000000ee")
    send_frames(a, ifn(a), [eth(BROADCAST, ghost, ethertype=0x88B5, payload=b"g" * 46)])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not any(
            e["mac"] == "02:00:00:00:00:ee" for e in d.ctl("fdb", "show")):
        time.sleep(0.05)
    assert {"vlan": 1, "mac": "02:00:00:00:00:ee", "port": "a"} in [
        {k: e[k] for k in ("vlan", "mac", "port")} for e in d.ctl("fdb", "show")]
    assert d.ctl("fdb", "flush", "--port", "a")["flushed"] >= 1
    assert all(e["mac"] != "02:00:00:00:00:ee" for e in d.ctl("fdb", "show"))


def test_port_that_goes_down_leaves_flood_set_and_forgets_macs(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a), "b": tap(b)})
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), "10.77.4.1/24")
    addr(b, ifn(b), "10.77.4.2/24")
    ping(a, "10.77.4.2", count=1)
    run(b, "ip", "link", "set", ifn(b), "down")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and d.port("b")["link"] != "down":
        time.sleep(0.1)
    assert d.port("b")["link"] == "down"
    assert all(e["port"] != "b" for e in d.ctl("fdb", "show"))
    run(b, "ip", "link", "set", ifn(b), "up")
    d.wait_ports_up("b")
    assert ping_loss(ping(a, "10.77.4.2", count=2, interval=0.1).stdout) == 0


def test_port_added_and_removed_at_runtime_while_ping_runs_loses_no_ping(
        daemon: Factory, netns) -> None:
    a, b, c = netns(), netns(), netns()
    d = daemon({"a": tap(a), "b": tap(b)})
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), "10.77.5.1/24")
    addr(b, ifn(b), "10.77.5.2/24")
    assert ping_loss(ping(a, "10.77.5.2", count=1).stdout) == 0
    result: dict[str, subprocess.CompletedProcess[str]] = {}
    pinger = threading.Thread(target=lambda: result.setdefault(
        "r", ping(a, "10.77.5.2", count=300, interval=0.01, deadline=30)))
    pinger.start()
    for i in range(5):
        d.ctl("port", "add", "c", "type=tap", f"ifname={ifn(c)}", f"netns={c}", f"vlan={1 + i % 2}")
        assert d.port("c")["type"] == "tap"
        d.ctl("port", "set", "c", "vlan=3")
        d.ctl("port", "del", "c")
    pinger.join()
    r = result["r"]
    assert ping_loss(r.stdout) == 0, r.stdout
    assert "c" not in {p["name"] for p in d.ctl("show")["ports"]}


def test_netdev_port_on_veth_carries_tcp_with_partial_checksums(
        daemon: Factory, netns, veth) -> None:
    a, b = netns(), netns()
    host_end, ns_end = veth(peer_netns=b)
    d = daemon({"a": tap(a), "v": {"type": "netdev", "ifname": host_end}})
    d.wait_ports_up("a", "v")
    addr(a, ifn(a), "10.77.6.1/24")
    run(b, "ip", "addr", "add", "10.77.6.2/24", "dev", ns_end)
    assert ping_loss(ping(a, "10.77.6.2", count=3, interval=0.1).stdout) == 0
    # TCP from the veth side: its frames arrive with partial checksums and
    # GSO; they must be completed or passed on with their offload intact.
    server = subprocess.Popen(["ip", "netns", "exec", a, "iperf3", "-s", "-1", "-p", "5299"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = run(b, "iperf3", "-c", "10.77.6.1", "-p", "5299", "-t", "2", "-J", check=False,
                timeout=30)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        assert '"bits_per_second"' in r.stdout
    finally:
        server.kill()
        server.wait()


def test_bad_port_add_is_refused_with_one_line_and_switch_keeps_running(
        daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"a": tap(a), "b": tap(b)})
    r = d.ctl_raw("port", "add", "x", "type=tap", "vlan=5000")
    assert r.returncode == 1
    assert r.stderr.strip() == "vswitchctl: ports.x.vlan: 5000 is not in 1-4094"
    r = d.ctl_raw("port", "add", "y", "type=netdev", f"ifname=vsn{secrets.token_hex(4)}")
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert {p["name"] for p in d.ctl("show")["ports"]} == {"a", "b"}


def test_reload_applies_only_the_difference(daemon: Factory, netns, tmp_path: Path) -> None:
    a, b = netns(), netns()
    ports = {"a": tap(a), "b": tap(b)}
    d = daemon(ports)
    d.wait_ports_up("a", "b")
    d.write_config({**ports, "b": tap(b, vlan=7)})
    assert "reloaded" in d.ctl("reload")["message"]
    assert d.port("b")["vlan"] == 7
    d.config_path.write_text("[switch]\nworkers = -1\n")
    r = d.ctl_raw("reload")
    assert r.returncode == 1 and "switch.workers" in r.stderr
    assert d.port("b")["vlan"] == 7
