"""Trace end to end: `vswitchctl trace` on a running daemon agrees with
what real frames do, changes nothing, and refuses bad input in one line.
Issue 11's acceptance (the same agreement, 300 frames over socketpairs, is
in tests/unit/test_trace.py)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, run, send_frames
from tests.frames import BROADCAST, eth
from vswitchd.cli import call

Factory = Callable[..., RunningDaemon]


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def hosts(n: int) -> list[bytes]:
    return [bytes([0x02, 0, 0, 0xAB, 0, i]) for i in range(1, n + 1)]


def entries(d: RunningDaemon) -> list[tuple[int, str, str]]:
    return sorted((e["vlan"], e["mac"], e["port"]) for e in call(d.socket, "fdb/show", {}, 10))


def test_trace_agrees_with_real_frames_and_changes_nothing(daemon: Factory, netns) -> None:
    names = ("a", "b", "c", "t", "g")
    ns = {n: netns() for n in names}
    d = daemon({"a": tap(ns["a"], vlan=10), "b": tap(ns["b"], vlan=10),
                "c": tap(ns["c"], vlan=20), "t": tap(ns["t"], mode="trunk", vlans="1-30"),
                "g": tap(ns["g"], vlan=10, allowed_macs=["02:00:00:ab:00:01"])})
    d.wait_ports_up(*names)
    for n in names:
        # Quiet hosts: no IPv6 autoconfiguration chatter moving the counters.
        run(ns[n], "sysctl", "-qw", f"net.ipv6.conf.{ifn(ns[n])}.disable_ipv6=1")
        run(ns[n], "ip", "link", "set", ifn(ns[n]), "up")
    time.sleep(0.5)
    caps = {n: Capture(ns[n], ifn(ns[n])) for n in names}
    rng = random.Random(9)
    pool = hosts(6)
    expected: dict[int, tuple[set[str], str | None]] = {}
    try:
        for cap in caps.values():
            cap.drain()
        for i in range(200):
            port = rng.choice(names)
            dst = rng.choice(pool + [BROADCAST, b"\x01\x00\x5e\x00\x00\x07"])
            src = rng.choice(pool)
            vid = rng.choice([None, None, 0, 10, 20, 40])
            frame = eth(dst, src, vid=vid, ethertype=0x88B5,
                        payload=f"trace-{i:04d}".encode().ljust(46, b"."))
            before = call(d.socket, "stats", {}, 10)
            fdb = entries(d)
            t = call(d.socket, "trace", {"port": port, "hex": frame.hex()}, 10)
            assert call(d.socket, "stats", {}, 10) == before
            assert entries(d) == fdb
            assert t["verdict"] == ("forwarded" if t["egress_ports"] else "dropped")
            expected[i] = (set(t["egress_ports"]), t["drop_reason"])
            send_frames(ns[port], ifn(ns[port]), [frame])
            time.sleep(0.03)
        seen: dict[int, set[str]] = {i: set() for i in expected}
        for n, cap in caps.items():
            for f in cap.frames(0.5):
                k = f.find(b"trace-")
                if k >= 0:
                    seen[int(f[k + 6:k + 10])].add(n)
    finally:
        for cap in caps.values():
            cap.close()
    wrong = {i: (want, seen[i]) for i, (want, _) in expected.items() if want != seen[i]}
    assert not wrong, wrong
    verdicts = {r or "forwarded" for _, r in expected.values()}
    assert {"forwarded", "vlan_tagged_on_access", "mac_spoof"} <= verdicts, verdicts


def test_trace_of_a_flow_prints_every_stage(daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, mode="trunk", vlans="1-100")})
    d.wait_ports_up("vm1", "vm2")
    r = d.ctl_raw("trace", "vm1", "dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,ip,"
                  "nw_src=10.0.0.1,nw_dst=10.0.0.2,tcp,tp_dst=22")
    assert r.returncode == 0, r.stderr
    assert "vlan     access port VLAN 10, untagged -> VLAN 10" in r.stdout
    assert "lookup   VLAN 10 miss: flood" in r.stdout
    assert "egress   port vm2: tagged VLAN 10 (pcp 0), offloads: none needed" in r.stdout
    assert r.stdout.rstrip().endswith("Verdict: forwarded to vm2")
    j = d.ctl("trace", "vm2", "dl_vlan=200,arp")
    assert (j["verdict"], j["egress_ports"], j["drop_reason"]) == (
        "dropped", [], "vlan_not_allowed")
    assert [s["stage"] for s in j["stages"]] == ["ingress", "vlan", "drop"]


def test_trace_refuses_bad_input_in_one_line(daemon: Factory, netns) -> None:
    a = netns()
    d = daemon({"vm1": tap(a, vlan=10)})
    for args, msg in (
            (("nope", "ip"), "ports.nope: no such port"),
            (("vm1", "dl_src=02:00:00:00:00:01,nw_bogus=1"), "flow: unknown field 'nw_bogus'"),
            (("vm1", "dl_vlan=5000"), "flow: dl_vlan=5000: not in 0-4095"),
            (("vm1", "--hex", "zz01"), "--hex: not a hexadecimal frame"),
            (("vm1", "--hex", "0102"), "--hex: 2 bytes; a frame has 14-65535")):
        r = d.ctl_raw("trace", *args)
        assert r.returncode == 1 and r.stderr.startswith(f"vswitchctl: {msg}"), (args, r.stderr)
        assert r.stderr.count("\n") == 1
