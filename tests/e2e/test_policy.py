"""Port policy end to end: the real daemon, TAPs in namespaces, real TCP.

A stateful "out" rule lets the VM open connections and nobody open one to
it; sessions survive a reload that keeps their rule, close after their idle
timeout, and outlive a full session table; bandwidth limits hold an iperf3
stream within 10 %; a 1,000-rule policy loads and publishes in under a
second; counters move in `acl show`, `stats` and Prometheus.
"""

from __future__ import annotations

import json
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from tests.e2e.nsnet import addr, mac_of, run, send_frames
from tests.listeners import free_port, http_get
from vswitchd.cli import call

PEER_SCRIPT = str(Path(__file__).with_name("tcp_peer.py"))
A_IP, B_IP = "10.82.0.1", "10.82.0.2"

ARP = {"name": "arp", "weight": 50, "direction": "both", "action": "allow",
       "ethertype": "0x0806"}
OUT_TCP = {"name": "out-tcp", "weight": 100, "direction": "out", "action": "allow",
           "protocol": "tcp", "stateful": True, "idle_timeout_s": 4}
DENY_IN = {"name": "deny-in", "weight": 1, "direction": "in", "action": "deny"}


def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": ifn(ns), "netns": ns, **kw}


class Peer:
    """tcp_peer.py in a namespace, driven line by line."""

    def __init__(self, ns: str, *args: str) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, PEER_SCRIPT,
                                      *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def line(self, timeout_s: float) -> str | None:
        """The next line it prints within ``timeout_s``, or None."""
        assert self.proc.stdout is not None
        if not self.sel.select(timeout_s):
            return None
        return self.proc.stdout.readline().strip() or None

    def expect(self, text: str, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.line(deadline - time.monotonic())
            if line == text:
                return
            assert line is not None and not line.startswith(("failed", "closed")), line
        raise AssertionError(f"{text!r} not seen within {timeout_s} s")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def peers():
    started: list[Peer] = []

    def make(ns: str, *args: str) -> Peer:
        p = Peer(ns, *args)
        started.append(p)
        return p

    yield make
    for p in started:
        p.close()


def two_vms(daemon, netns, a_keys: dict, acls: dict, **kw):
    a, b = netns(), netns()
    d = daemon({"a": tap(a, **a_keys), "b": tap(b)}, acls=acls, **kw)
    d.wait_ports_up("a", "b")
    addr(a, ifn(a), f"{A_IP}/24")
    addr(b, ifn(b), f"{B_IP}/24")
    return d, a, b


def connect(peers, a: str, b: str, port: int) -> tuple[Peer, Peer]:
    server = peers(b, "listen", str(port))
    server.expect("listening")
    client = peers(a, "connect", B_IP, str(port))
    client.expect("connected")
    server.expect("connected")
    return client, server


def rule(report: dict, name: str) -> dict:
    return next(r for r in report["rules"] if r["rule"] == name)


def test_stateful_out_lets_the_vm_open_tcp_and_nobody_open_one_to_it(daemon, netns, peers):
    d, a, b = two_vms(daemon, netns, {"acls": ["vm"]}, {"vm": [OUT_TCP, ARP, DENY_IN]})
    client, server = connect(peers, a, b, 5400)
    client.send("hello")
    server.expect("got hello")
    server.send("answer")
    client.expect("got answer")

    # Nothing may open a connection to the VM.
    listener = peers(a, "listen", "5401")
    listener.expect("listening")
    opener = peers(b, "connect", A_IP, "5401")
    assert (opener.line(6) or "").startswith("failed")

    sessions = d.ctl("acl", "sessions", "--port", "a")
    [session] = [s for s in sessions if s["remote"] == f"{B_IP}:5400"]
    assert (session["state"], session["rule"]) == ("established", "vm.out-tcp")
    assert session["local"].startswith(f"{A_IP}:")
    [report] = d.ctl("acl", "show", "--port", "a")
    assert rule(report, "out-tcp")["packets"] > 0 and rule(report, "deny-in")["packets"] > 0
    assert d.ctl("stats", "--port", "a")["ports"][0]["drops"]["acl_deny"] > 0

    # A reload that keeps the rule keeps the connection (refreshed first:
    # the rule's idle timeout is 4 s, and the refused connect took 3).
    client.send("refresh")
    server.expect("got refresh")
    meter = {"name": "meter-all", "weight": 70, "direction": "both", "action": "meter"}
    d.write_config(acls={"vm": [OUT_TCP, meter, ARP, DENY_IN]})
    d.ctl("reload")
    server.send("after-reload")
    client.expect("got after-reload")
    assert rule(d.ctl("acl", "show", "--port", "a")[0], "out-tcp")["packets"] \
        >= rule(report, "out-tcp")["packets"]   # counters carried over the recompile

    # Idle past the rule's timeout (4 s), the return path closes.
    time.sleep(6)
    server.send("late")
    assert client.line(2) is None


def test_a_reload_that_removes_the_rule_drops_its_sessions(daemon, netns, peers):
    d, a, b = two_vms(daemon, netns, {"acls": ["vm"]}, {"vm": [OUT_TCP, ARP, DENY_IN]})
    client, server = connect(peers, a, b, 5402)
    assert d.ctl("acl", "sessions", "--port", "a")
    out_tcp_2 = dict(OUT_TCP, name="out-tcp-2")
    d.write_config(acls={"vm": [out_tcp_2, ARP, DENY_IN]})
    d.ctl("reload")
    assert d.ctl("acl", "sessions", "--port", "a") == []
    server.send("stranded")
    assert client.line(2) is None


def test_a_full_session_table_keeps_established_sessions(daemon, netns, peers):
    udp = {"name": "out-udp", "weight": 90, "direction": "out", "action": "allow",
           "protocol": "udp", "stateful": True}
    d, a, b = two_vms(daemon, netns, {"acls": ["vm"]}, {"vm": [OUT_TCP, udp, ARP, DENY_IN]},
                      switch={"acl_sessions": 16})
    client, server = connect(peers, a, b, 5403)
    src, dst = mac_of(a, ifn(a)), mac_of(b, ifn(b))
    frames = [bytes(Ether(src=src, dst=dst) / IP(src=A_IP, dst=B_IP) / UDP(sport=2000 + i,
                                                                         dport=9))
              for i in range(40)]
    send_frames(a, ifn(a), frames)
    deadline = time.monotonic() + 5
    while d.ctl("stats", "--port", "a")["ports"][0]["drops"]["acl_sessions_full"] < 20:
        assert time.monotonic() < deadline, d.ctl("stats", "--port", "a")
        time.sleep(0.1)
    server.send("still-here")
    client.expect("got still-here")
    client.send("me-too")
    server.expect("got me-too")


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int, port: int) -> float:
    """Receiver-side throughput of one TCP stream, bit/s."""
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.4)
        r = run(client_ns, "iperf3", "-c", server_ip, "-p", str(port), "-t", str(seconds),
                "-O", "1", "-J", check=False, timeout=seconds + 20)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr
        return float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("direction,rate,bps", [
    ("out", "100Mbit", 100e6), ("out", "1Gbit", 1e9), ("in", "100Mbit", 100e6)])
def test_a_bandwidth_limit_holds_a_tcp_stream_within_ten_percent(daemon, netns, direction,
                                                                  rate, bps):
    metrics = f"127.0.0.1:{free_port()}"
    d, a, b = two_vms(daemon, netns, {f"max_bandwidth_{direction}": rate}, {},
                      metrics=metrics)
    # "out" limits what the VM (port a) sends; "in" what it receives.  Never
    # above the limit; below it only by CPU starvation on this 2-vCPU
    # machine (iperf3's two ends and the worker share it), so a run short of
    # 90 % gets one more try.
    runs = []
    for attempt in range(2):
        port = 5410 + attempt
        got = iperf(a, b, B_IP, 4, port) if direction == "out" else iperf(b, a, A_IP, 4, port)
        runs.append(got)
        assert got <= 1.1 * bps, f"{got / 1e6:.1f} Mbit/s through a {rate} limit"
        if got >= 0.9 * bps:
            break
    assert max(runs) >= 0.9 * bps, f"{[round(r / 1e6, 1) for r in runs]} Mbit/s through {rate}"
    # TCP met the limit by waiting, not by losing frames.
    port = d.ctl("stats", "--port", "a")["ports"][0]
    assert port["counters"][f"qos_held_{direction}"] > 0
    text = http_get(d.metrics_url).decode()
    line = next(x for x in text.splitlines() if x.startswith(
        f'vswitchd_qos_held_packets_total{{direction="{direction}",port="a"}}'))
    assert float(line.split()[-1]) > 0


def test_a_thousand_rules_load_and_publish_in_under_a_second(daemon, netns):
    d, a, b = two_vms(daemon, netns, {"acls": ["big"]}, {"big": [ARP]})
    many = [{"name": f"r{i}", "weight": 1000 + i, "direction": "in", "action": "deny",
             "protocol": "tcp", "local_port": str(i + 1), "remote_ip": f"10.{i % 250}.0.0/16"}
            for i in range(1000)]
    d.write_config(acls={"big": [ARP, *many]})
    t0 = time.monotonic()
    call(d.socket, "reload", {}, 30)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.0, f"reload with 1,000 rules took {elapsed:.2f} s"
    [report] = d.ctl("acl", "show", "--port", "a")
    assert len(report["rules"]) == 1001

    # A bad rule refuses the whole reload, naming it; the policy stays.
    bad = dict(many[0], name="bad", weight=5, remote_ip="10.0.0.300/8")
    d.write_config(acls={"big": [ARP, *many, bad]})
    r = d.ctl_raw("reload")
    assert r.returncode == 1
    assert 'acls.big.rules[1001].remote_ip: "10.0.0.300/8" is not an address or CIDR' \
        in r.stderr
    assert len(d.ctl("acl", "show", "--port", "a")[0]["rules"]) == 1001

    # Limits change live with port set.
    d.ctl("port", "set", "a", "max_bandwidth_out=100Mbit", "max_burst=256KiB")
    [report] = d.ctl("acl", "show", "--port", "a")
    assert (report["max_bandwidth_out"], report["max_burst"]) == ("100Mbit", 262144)


def test_counters_move_in_acl_show_and_prometheus(daemon, netns):
    metrics = f"127.0.0.1:{free_port()}"
    icmp = {"name": "no-ping", "weight": 10, "direction": "in", "action": "deny",
            "protocol": "icmp", "icmp_type": 8}
    count = {"name": "count-icmp", "weight": 20, "direction": "both", "action": "meter",
             "protocol": "icmp"}
    d, a, b = two_vms(daemon, netns, {"acls": ["vm"]}, {"vm": [count, icmp]}, metrics=metrics)
    r = run(b, "ping", "-c", "3", "-i", "0.2", "-W", "1", A_IP, check=False)
    assert " 0 received" in r.stdout
    r = run(a, "ping", "-c", "2", "-i", "0.2", "-W", "1", B_IP, check=False)
    assert " 2 received" in r.stdout
    [report] = d.ctl("acl", "show", "--port", "a")
    assert rule(report, "no-ping")["packets"] == 3
    assert rule(report, "count-icmp")["packets"] >= 3 + 4    # 3 denied, 2 out + 2 replies in

    # A trace runs the same ACL, names the rule, and counts nothing.
    flow = (f"dl_src={mac_of(b, ifn(b))},dl_dst={mac_of(a, ifn(a))},ip,nw_src={B_IP},"
            f"nw_dst={A_IP},icmp,icmp_type=8")
    t = d.ctl("trace", "b", flow)
    assert (t["verdict"], t["drop_reason"]) == ("dropped", "acl_deny"), t
    assert any(s["stage"] == "acl" and "vm.no-ping" in s["detail"] for s in t["stages"]), t
    assert rule(d.ctl("acl", "show", "--port", "a")[0], "no-ping")["packets"] == 3
    time.sleep(1.2)         # the exporter reads the snapshot the 1 s timer takes
    text = http_get(d.metrics_url).decode()
    want = ('vswitchd_acl_rule_matches_total{acl="vm",action="deny",direction="in",port="a",'
            'rule="no-ping"} 3.0')
    assert want in text, [x for x in text.splitlines() if "acl_rule" in x]


# Each match field end to end: a deny on the field, a frame it matches and
# one it does not, sent by scapy from the VM's namespace and captured in the
# peer's.  (tests/unit/test_acl.py covers every field both ways in depth.)
VM_MAC, PEER_MAC, OTHER_MAC = "02:00:00:5e:01:01", "02:00:00:5e:01:02", "02:00:00:5e:01:03"


def _udp(dport: int = 9, src: str = A_IP, dst: str = B_IP, sport: int = 5000) -> bytes:
    return bytes(Ether(src=VM_MAC, dst=PEER_MAC) / IP(src=src, dst=dst)
                 / UDP(sport=sport, dport=dport) / b"probe")


def _icmp(icmp_type: int) -> bytes:
    from scapy.layers.inet import ICMP
    return bytes(Ether(src=VM_MAC, dst=PEER_MAC) / IP(src=A_IP, dst=B_IP) / ICMP(type=icmp_type))


def _v6(dst: str) -> bytes:
    from scapy.layers.inet6 import IPv6
    return bytes(Ether(src=VM_MAC, dst=PEER_MAC) / IPv6(src="fd00::1", dst=dst) / UDP(dport=9)
                 / b"probe")


FIELD_CASES = {
    "local_mac": ({"local_mac": VM_MAC}, _udp(),
                  bytes(Ether(src=OTHER_MAC, dst=PEER_MAC) / IP(src=A_IP, dst=B_IP) / UDP())),
    "remote_mac": ({"remote_mac": PEER_MAC}, _udp(),
                   bytes(Ether(src=VM_MAC, dst=OTHER_MAC) / IP(src=A_IP, dst=B_IP) / UDP())),
    "local_ip": ({"local_ip": "10.82.0.0/30"}, _udp(), _udp(src="10.82.0.9")),
    "remote_ip": ({"remote_ip": B_IP}, _udp(), _udp(dst="10.82.0.3")),
    "remote_ip6": ({"remote_ip": "fd00::/120"}, _v6("fd00::2"), _v6("fd00:1::2")),
    "protocol": ({"protocol": "udp"}, _udp(), _icmp(8)),
    "local_port": ({"protocol": "udp", "local_port": "5000-5010"}, _udp(), _udp(sport=6000)),
    "remote_port": ({"protocol": "udp", "remote_port": "9"}, _udp(), _udp(dport=10)),
    "icmp_type": ({"protocol": "icmp", "icmp_type": 8}, _icmp(8), _icmp(13)),
    "vlan": ({"vlan": 1}, _udp(), None),          # the access port is in VLAN 1
    "ethertype": ({"ethertype": "0x88b5"},
                  bytes(Ether(src=VM_MAC, dst=PEER_MAC, type=0x88B5) / (b"x" * 46)), _udp()),
}


@pytest.mark.parametrize("field", sorted(FIELD_CASES))
def test_each_match_field_denies_what_it_names_and_nothing_else(daemon, netns, field):
    from tests.e2e.nsnet import Capture
    match, denied, passed = FIELD_CASES[field]
    rule_ = {"name": "deny-field", "weight": 10, "direction": "out", "action": "deny", **match}
    a, b = netns(), netns()
    d = daemon({"a": tap(a, acls=["f"]), "b": tap(b)}, acls={"f": [rule_]})
    d.wait_ports_up("a", "b")
    for ns in (a, b):
        run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifn(ns)}.disable_ipv6=1")
        run(ns, "ip", "link", "set", ifn(ns), "up")
    with Capture(b, ifn(b)) as cap:
        cap.drain()
        send_frames(a, ifn(a), [denied] + ([passed] if passed else []))
        ours = {bytes.fromhex(m.replace(":", "")) for m in (VM_MAC, OTHER_MAC)}
        got = [f for f in cap.frames(1.0) if f[6:12] in ours]
    assert denied not in got
    if passed is not None:
        assert got == [passed]
    # At least our frame (the namespace's own kernel may add some in VLAN 1).
    report = d.ctl("acl", "show", "--port", "a")[0]
    assert rule(report, "deny-field")["packets"] >= 1
