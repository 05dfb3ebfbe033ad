"""Port security guards end to end: the real daemon, TAPs in namespaces,
frames crafted with scapy, drop counters read back with `vswitchctl stats`.

Every frame a test sends has a made-up source MAC (02:00:00:5e:xx:xx), and
the namespaces have IPv6 off, so what their own kernels would send (router
solicitations, MLD reports) never mixes with what a test counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, IPv6
from scapy.layers.l2 import Ether

from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, run, send_frames

Factory = Callable[..., RunningDaemon]



def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": ifn(ns), "netns": ns, **kw}


def fake_mac(n: int) -> str:
    return f"02:00:00:5e:{n >> 8:02x}:{n & 0xff:02x}"


def from_mac(frames: list[bytes], n: int) -> list[bytes]:
    src = bytes.fromhex(fake_mac(n).replace(":", ""))
    return [f for f in frames if f[6:12] == src]


def probe(n: int, dst: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    return bytes(Ether(dst=dst, src=fake_mac(n), type=0x88B5) / (b"probe".ljust(46, b".")))


@dataclass
class Setup:
    """A daemon with port "vm" (the guarded one) and port "peer", each a TAP
    in its own namespace, and the drop counts of "vm" once it was quiet."""

    d: RunningDaemon
    vm: str
    peer: str
    base: dict[str, int] = field(default_factory=dict)

    def drops(self, reason: str) -> int:
        stats = self.d.ctl("stats", "--port", "vm")
        return stats["ports"][0]["drops"].get(reason, 0) - self.base.get(reason, 0)

    def wait_drops(self, reason: str, at_least: int, timeout_s: float = 5.0) -> int:
        deadline = time.monotonic() + timeout_s
        while True:
            n = self.drops(reason)
            if n >= at_least or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def send(self, frames: list[bytes]) -> None:
        send_frames(self.vm, ifn(self.vm), frames)


@pytest.fixture
def pair(daemon: Factory, netns) -> Callable[..., Setup]:
    """Factory: `pair(**guards)` starts a daemon whose port "vm" has `guards`."""
    def make(**guards) -> Setup:
        vm, peer = netns(), netns()
        d = daemon({"vm": tap(vm, **guards), "peer": tap(peer)})
        d.wait_ports_up("vm", "peer")
        for ns in (vm, peer):
            # Silence the namespace's kernel (router solicitations, MLD), let
            # what it already sent drain, and forget the address it used, so
            # that counters and max_macs see only the test's frames.
            run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifn(ns)}.disable_ipv6=1")
            run(ns, "ip", "link", "set", ifn(ns), "up")
        time.sleep(0.3)
        d.ctl("fdb", "flush")
        stats = d.ctl("stats", "--port", "vm")
        return Setup(d, vm, peer, dict(stats["ports"][0]["drops"]))
    return make


def test_spoofed_source_is_dropped_and_allowed_one_forwarded(pair) -> None:
    s = pair(allowed_macs=[fake_mac(1)])
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        s.send([probe(1), probe(2), probe(2)])
        got = cap.frames()
    assert len(from_mac(got, 1)) == 1 and from_mac(got, 2) == []
    assert s.wait_drops("mac_spoof", 2) == 2


def test_allowed_macs_can_be_changed_live_with_port_set(pair) -> None:
    s = pair(allowed_macs=[fake_mac(1)])
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        s.send([probe(2)])
        assert from_mac(cap.frames(), 2) == []

        s.d.ctl("port", "set", "vm", f"allowed_macs={fake_mac(1)},{fake_mac(2)}")
        s.send([probe(2)])
        assert len(from_mac(cap.frames(), 2)) == 1

        s.d.ctl("port", "set", "vm", "allowed_macs=")
        s.send([probe(3)])
        assert len(from_mac(cap.frames(), 3)) == 1
    assert s.drops("mac_spoof") == 1


def test_max_macs_refuses_sources_beyond_the_limit(pair) -> None:
    s = pair(max_macs=2)
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        for n in (1, 2, 3):
            s.send([probe(n)])
            time.sleep(0.05)
        got = cap.frames()
        assert [len(from_mac(got, n)) for n in (1, 2, 3)] == [1, 1, 0]
        s.send([probe(1), probe(2)])        # the first two still work
        got = cap.frames()
        assert [len(from_mac(got, n)) for n in (1, 2)] == [1, 1]
    assert s.wait_drops("max_macs", 1) == 1
    fdb = {e["mac"] for e in s.d.ctl("fdb", "show") if e["port"] == "vm"}
    assert fdb == {fake_mac(1), fake_mac(2)}


def test_dhcp_guard_drops_server_messages_only(pair) -> None:
    s = pair(dhcp_guard=True)
    offer = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=fake_mac(1))
                  / IP(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=67, dport=68)
                  / BOOTP(op=2) / DHCP(options=[("message-type", "offer"), "end"]))
    adv6 = bytes(Ether(dst="33:33:00:01:00:02", src=fake_mac(2))
                 / IPv6(src="fe80::2", dst="ff02::1:2") / UDP(sport=547, dport=546)
                 / DHCP6_Advertise())
    discover = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=fake_mac(3))
                     / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                     / BOOTP(op=1) / DHCP(options=[("message-type", "discover"), "end"]))
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        s.send([offer, adv6, discover])
        got = cap.frames()
    assert from_mac(got, 1) == [] and from_mac(got, 2) == []
    assert len(from_mac(got, 3)) == 1
    assert s.wait_drops("dhcp_guard", 2) == 2


def test_router_guard_drops_advertisements_and_redirects(pair) -> None:
    s = pair(router_guard=True)
    ra = bytes(Ether(dst="33:33:00:00:00:01", src=fake_mac(1))
               / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA())
    redirect = bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src=fake_mac(2))
                     / IP(src="10.0.0.1", dst="10.0.0.9") / ICMP(type=5, code=1, gw="10.0.0.2")
                     / IP(dst="10.9.9.9"))
    rs = bytes(Ether(dst="33:33:00:00:00:02", src=fake_mac(3))
               / IPv6(src="fe80::3", dst="ff02::2", hlim=255) / ICMPv6ND_RS())
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        s.send([ra, redirect, rs])
        got = cap.frames()
    assert from_mac(got, 1) == [] and from_mac(got, 2) == []
    assert len(from_mac(got, 3)) == 1
    assert s.wait_drops("router_guard", 2) == 2


def test_broadcast_storm_is_cut_to_the_configured_rate(pair) -> None:
    s = pair(broadcast_pps=50)
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        t0 = time.monotonic()
        s.send([probe(1)] * 500)
        elapsed = time.monotonic() - t0
        passed = len(from_mac(cap.frames(1.0), 1))
    # A full bucket (one second of rate) plus what refilled while sending.
    assert 40 <= passed <= 50 + 50 * (elapsed + 0.2) + 1
    assert s.wait_drops("storm_broadcast", 500 - passed) == 500 - passed


def test_unknown_unicast_storm_is_cut_but_broadcast_is_not(pair) -> None:
    s = pair(unknown_unicast_pps=20)
    with Capture(s.peer, ifn(s.peer)) as cap:
        cap.drain()
        s.send([probe(1, dst="02:00:00:5e:ff:ff")] * 200)
        s.send([probe(2)] * 30)
        got = cap.frames(1.0)
    assert 15 <= len(from_mac(got, 1)) <= 40
    assert len(from_mac(got, 2)) == 30
    assert s.wait_drops("storm_unknown_unicast", 160) >= 160
