"""Per-port security guards (csrc/vs_guard.c) in the real C pipeline over
socketpair ports: MAC spoofing, max_macs, DHCP and router guards, storm
control with a fake clock.  No root needed."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DHCP6_Advertise, DHCP6_Solicit
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Dot1Q, Ether

from tests.frames import BROADCAST, eth, mac
from tests.unit.harness import Harness

GUARD_DROPS = ("mac_spoof", "max_macs", "dhcp_guard", "router_guard", "storm_broadcast",
               "storm_multicast", "storm_unknown_unicast")


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def smac(n: int) -> str:
    return ":".join(f"{b:02x}" for b in mac(n))


def frame(pkt) -> bytes:
    return bytes(pkt)


def send_many(h: Harness, pid: int, frames: list[bytes], chunk: int = 64) -> None:
    """Sends ``frames`` in chunks small enough for a socketpair's queue."""
    for i in range(0, len(frames), chunk):
        for f in frames[i:i + chunk]:
            h.ports[pid].send(f)
        h.run()


def delivered(h: Harness, pid: int) -> int:
    return len(h.ports[pid].received())


def dhcpv4_offer(src: int) -> bytes:
    return frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=smac(src))
                 / IP(src="10.0.0.1", dst="255.255.255.255") / UDP(sport=67, dport=68)
                 / BOOTP(op=2) / DHCP(options=[("message-type", "offer"), "end"]))


def dhcpv4_discover(src: int) -> bytes:
    return frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=smac(src))
                 / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67)
                 / BOOTP(op=1) / DHCP(options=[("message-type", "discover"), "end"]))


def ipv6(src: int, dst: str = "33:33:00:00:00:01", ip6dst: str = "ff02::1"):
    return Ether(dst=dst, src=smac(src)) / IPv6(src="fe80::1", dst=ip6dst, hlim=255)


# --- MAC spoofing -------------------------------------------------------------------

def test_spoofed_source_is_dropped_and_counted(h):
    h.add(0, allowed_macs=(smac(1), smac(2)))
    h.add(1)
    got = h.inject(0, eth(BROADCAST, mac(3)))
    assert got[1] == []
    assert h.counters(0)["mac_spoof"] == 1
    assert h.switch.macs.lookup(1, smac(3)) is None


def test_allowed_sources_are_forwarded_and_learned(h):
    h.add(0, allowed_macs=(smac(1), smac(2)))
    h.add(1)
    for n in (1, 2):
        assert len(h.inject(0, eth(BROADCAST, mac(n)))[1]) == 1
        assert h.switch.macs.lookup(1, smac(n)) == 0
    assert h.counters(0)["mac_spoof"] == 0


def test_allowed_macs_apply_only_to_their_port(h):
    h.add(0, allowed_macs=(smac(1),))
    h.add(1)
    assert len(h.inject(1, eth(BROADCAST, mac(9)))[0]) == 1


def test_clearing_allowed_macs_lifts_the_restriction(h):
    h.add(0, allowed_macs=(smac(1),))
    h.add(1)
    assert h.inject(0, eth(BROADCAST, mac(5)))[1] == []
    h.set(0, allowed_macs=())
    assert len(h.inject(0, eth(BROADCAST, mac(5)))[1]) == 1


# --- max_macs -------------------------------------------------------------------------

def test_max_macs_drops_third_source_without_learning_it(h):
    h.add(0, max_macs=2)
    h.add(1)
    for n in (1, 2):
        assert len(h.inject(0, eth(BROADCAST, mac(n)))[1]) == 1
    got = h.inject(0, eth(BROADCAST, mac(3)))
    assert got[1] == []
    assert h.counters(0)["max_macs"] == 1
    assert h.switch.macs.lookup(1, smac(3)) is None
    # The first two keep working, both ways.
    for n in (1, 2):
        assert len(h.inject(0, eth(mac(50), mac(n)))[1]) == 1
    h.inject(1, eth(BROADCAST, mac(50)))
    assert h.inject(1, eth(mac(2), mac(50)))[0] == [eth(mac(2), mac(50))]
    assert h.counters(0)["max_macs"] == 1


def test_max_macs_counts_per_vlan_entries(h):
    h.add(0, mode="trunk", allowed=((1, 4094),), max_macs=2)
    h.add(1, mode="trunk", allowed=((1, 4094),))
    h.inject(0, eth(BROADCAST, mac(1), vid=10))
    h.inject(0, eth(BROADCAST, mac(1), vid=20))
    assert h.inject(0, eth(BROADCAST, mac(1), vid=30))[1] == []
    assert h.counters(0)["max_macs"] == 1


def test_max_macs_readmits_its_own_source_after_it_aged_out(h):
    h.add(0, max_macs=1)
    h.add(1)
    h.inject(0, eth(BROADCAST, mac(1)))
    h.switch.macs.flush(port=0)
    assert len(h.inject(0, eth(BROADCAST, mac(1)))[1]) == 1
    assert h.counters(0)["max_macs"] == 0


def test_max_macs_frees_a_place_when_an_address_ages_out(h):
    h.add(0, max_macs=2)
    h.add(1)
    h.inject(0, eth(BROADCAST, mac(1)))
    h.inject(0, eth(BROADCAST, mac(2)))
    assert h.inject(0, eth(BROADCAST, mac(3)))[1] == []
    h.now += 100
    h.inject(0, eth(BROADCAST, mac(2)))            # mac(2) stays fresh
    assert h.switch.macs.age(h.now, 50) == 1       # mac(1) ages out
    assert len(h.inject(0, eth(BROADCAST, mac(3)))[1]) == 1
    assert h.switch.macs.lookup(1, smac(3)) == 0
    assert h.inject(0, eth(BROADCAST, mac(1)))[1] == []   # now it is the third


def test_max_macs_frees_a_place_when_an_address_moves_away(h):
    h.add(0, max_macs=1)
    h.add(1)
    h.inject(0, eth(BROADCAST, mac(1)))
    h.inject(1, eth(BROADCAST, mac(1)))            # the VM migrated
    assert len(h.inject(0, eth(BROADCAST, mac(2)))[1]) == 1


def test_max_macs_refuses_a_flood_of_sources(h):
    h.add(0, max_macs=4)
    h.add(1)
    send_many(h, 0, [eth(BROADCAST, mac(n)) for n in range(1, 501)])
    assert delivered(h, 1) == 4
    assert h.counters(0)["max_macs"] == 496
    assert sum(1 for e in h.switch.macs.dump() if e.port == 0) == 4


# --- DHCP guard ------------------------------------------------------------------------

def test_dhcp_guard_drops_dhcpv4_server_reply(h):
    h.add(0, dhcp_guard=True)
    h.add(1)
    assert h.inject(0, dhcpv4_offer(1))[1] == []
    assert h.counters(0)["dhcp_guard"] == 1
    assert h.switch.macs.lookup(1, smac(1)) is None


def test_dhcp_guard_passes_dhcpv4_client_request(h):
    h.add(0, dhcp_guard=True)
    h.add(1)
    assert h.inject(0, dhcpv4_discover(1))[1] == [dhcpv4_discover(1)]
    assert h.counters(0)["dhcp_guard"] == 0


def test_dhcp_guard_sees_through_ipv4_options_and_tags(h):
    h.add(0, mode="trunk", allowed=((1, 4094),), dhcp_guard=True)
    h.add(1, mode="trunk", allowed=((1, 4094),))
    offer = frame(Ether(dst="ff:ff:ff:ff:ff:ff", src=smac(1)) / Dot1Q(vlan=7)
                  / IP(dst="255.255.255.255", options=b"\x94\x04\x00\x00")  # router alert
                  / UDP(sport=67, dport=68) / BOOTP(op=2))
    assert h.inject(0, offer)[1] == []
    assert h.counters(0)["dhcp_guard"] == 1


def test_dhcp_guard_drops_dhcpv6_server_message(h):
    h.add(0, dhcp_guard=True)
    h.add(1)
    adv = frame(ipv6(1, "33:33:00:01:00:02", "ff02::1:2") / UDP(sport=547, dport=546)
                / DHCP6_Advertise())
    solicit = frame(ipv6(1, "33:33:00:01:00:02", "ff02::1:2") / UDP(sport=546, dport=547)
                    / DHCP6_Solicit())
    assert h.inject(0, adv)[1] == []
    assert h.inject(0, solicit)[1] == [solicit]
    assert h.counters(0)["dhcp_guard"] == 1


def test_dhcp_server_reply_passes_without_guard(h):
    h.add(0, router_guard=True)
    h.add(1)
    assert len(h.inject(0, dhcpv4_offer(1))[1]) == 1


# --- Router guard -----------------------------------------------------------------------

def test_router_guard_drops_router_advertisement_and_redirects(h):
    h.add(0, router_guard=True)
    h.add(1)
    ra = frame(ipv6(1) / ICMPv6ND_RA())
    redirect6 = frame(ipv6(1, smac(9), "fe80::9") / ICMPv6ND_Redirect(tgt="fe80::2",
                                                                      dst="2001:db8::1"))
    redirect4 = frame(Ether(dst=smac(9), src=smac(1)) / IP(src="10.0.0.1", dst="10.0.0.9")
                      / ICMP(type=5, code=1, gw="10.0.0.2") / IP(dst="10.9.9.9"))
    for f in (ra, redirect6, redirect4):
        assert h.inject(0, f)[1] == []
    assert h.counters(0)["router_guard"] == 3


def test_router_guard_passes_solicitations_and_echo(h):
    h.add(0, router_guard=True)
    h.add(1)
    rs = frame(ipv6(1, "33:33:00:00:00:02", "ff02::2") / ICMPv6ND_RS())
    ns = frame(ipv6(1, "33:33:ff:00:00:02", "ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fe80::2"))
    echo6 = frame(ipv6(1) / ICMPv6EchoRequest())
    echo4 = frame(Ether(dst=BROADCAST, src=smac(1)) / IP(dst="10.0.0.255") / ICMP())
    for f in (rs, ns, echo6, echo4):
        assert h.inject(0, f)[1] == [f]
    assert h.counters(0)["router_guard"] == 0


def test_router_guard_sees_ra_behind_extension_headers(h):
    h.add(0, router_guard=True)
    h.add(1)
    ra = frame(ipv6(1) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / ICMPv6ND_RA())
    assert h.inject(0, ra)[1] == []
    assert h.counters(0)["router_guard"] == 1


def test_router_guard_drops_ipv6_header_chain_cut_short(h):
    h.add(0, router_guard=True)
    h.add(1)
    chain = bytes(ipv6(1) / IPv6ExtHdrHopByHop(nh=60) / IPv6ExtHdrDestOpt(nh=58))
    cut = chain[:-4]                    # ends inside the last extension header
    assert h.inject(0, cut)[1] == []
    assert h.counters(0)["router_guard"] == 1


# --- Storm control ----------------------------------------------------------------------

def test_broadcast_storm_is_limited_to_rate_then_refills_with_the_clock(h):
    h.add(0, broadcast_pps=100)
    h.add(1)
    send_many(h, 0, [eth(BROADCAST, mac(1))] * 1000)
    first = delivered(h, 1)
    assert 95 <= first <= 100
    assert h.counters(0)["storm_broadcast"] == 1000 - first
    send_many(h, 0, [eth(BROADCAST, mac(1))] * 200)
    assert delivered(h, 1) == 0                    # same instant: nothing refilled
    h.now += 1
    send_many(h, 0, [eth(BROADCAST, mac(1))] * 1000)
    assert 95 <= delivered(h, 1) <= 100


def test_multicast_storm_is_limited_separately_from_broadcast(h):
    h.add(0, multicast_pps=10, broadcast_pps=1000)
    h.add(1)
    send_many(h, 0, [eth(b"\x01\x00\x5e\x00\x00\x01", mac(1))] * 50)
    assert delivered(h, 1) == 10
    assert h.counters(0)["storm_multicast"] == 40
    send_many(h, 0, [eth(BROADCAST, mac(1))] * 50)
    assert delivered(h, 1) == 50


def test_unknown_unicast_storm_spares_known_destinations(h):
    h.add(0, unknown_unicast_pps=5)
    h.add(1)
    h.inject(1, eth(BROADCAST, mac(2)))            # mac(2) known on port 1
    send_many(h, 0, [eth(mac(99), mac(1))] * 20)
    assert delivered(h, 1) == 5
    assert h.counters(0)["storm_unknown_unicast"] == 15
    send_many(h, 0, [eth(mac(2), mac(1))] * 20)
    assert delivered(h, 1) == 20


def test_rate_limited_frame_from_new_source_is_not_learned(h):
    h.add(0, broadcast_pps=1)
    h.add(1)
    h.inject(0, eth(BROADCAST, mac(1)))
    assert h.inject(0, eth(BROADCAST, mac(2)))[1] == []
    assert h.switch.macs.lookup(1, smac(2)) is None


def test_spoofed_frames_do_not_use_up_the_storm_budget(h):
    h.add(0, allowed_macs=(smac(1),), broadcast_pps=2)
    h.add(1)
    send_many(h, 0, [eth(BROADCAST, mac(7))] * 10)
    send_many(h, 0, [eth(BROADCAST, mac(1))] * 2)
    assert delivered(h, 1) == 2
    assert h.counters(0)["mac_spoof"] == 10 and h.counters(0)["storm_broadcast"] == 0


# --- No guard ------------------------------------------------------------------------------

def test_ports_without_guards_count_no_guard_drops(h):
    h.add(0)
    h.add(1)
    frames = [dhcpv4_offer(1), frame(ipv6(2) / ICMPv6ND_RA()), eth(BROADCAST, mac(3))]
    send_many(h, 0, frames * 100 + [eth(BROADCAST, mac(n)) for n in range(10, 200)])
    assert delivered(h, 1) == 490
    assert all(h.counters(0)[reason] == 0 for reason in GUARD_DROPS)
