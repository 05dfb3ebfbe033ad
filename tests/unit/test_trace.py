"""Packet trace: the real pipeline with a recorder, changing nothing.

The agreement test is the contract of issue 11: for a randomized set of
frames (VLANs, tagged and untagged, known and unknown destinations,
guarded ports, broadcast), tracing a frame and then injecting it for real
give the same egress set and verdict, and the trace moves no counter and
learns nothing.
"""

from __future__ import annotations

import random

import pytest

from tests.frames import BROADCAST, eth, mac
from tests.unit.harness import Harness
from vswitchd.fastpath_observe import trace


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def _ports(h: Harness) -> None:
    h.add(0, mode="access", access_vlan=10)
    h.add(1, mode="access", access_vlan=10)
    h.add(2, mode="trunk", allowed=((1, 30),), native_vlan=1)
    h.add(3, mode="access", access_vlan=20, allowed_macs=("00:00:00:00:00:03",
                                                          "00:00:00:00:00:04"))
    h.add(4, mode="trunk", allowed=((10, 20),), native_vlan=0, dhcp_guard=True)
    h.add(5, mode="access", access_vlan=10, up=False)
    h.add(6, mode="access", access_vlan=1, max_macs=2)


def _snapshot(h: Harness) -> tuple[object, ...]:
    return (tuple(tuple(sorted(h.counters(p).items())) for p in h.ports),
            sorted((e.vlan, e.mac, e.port) for e in h.switch.macs.dump()))


def _random_frame(rng: random.Random) -> bytes:
    dst = rng.choice([BROADCAST, b"\x01\x00\x5e\x00\x00\x01"] + [mac(n) for n in range(1, 9)])
    src = rng.choice([mac(n) for n in range(1, 9)] + [b"\x01\x00\x00\x00\x00\x01"])
    vid = rng.choice([None, None, 0, 1, 10, 20, 30, 99])
    return eth(dst, src, vid=vid)


def test_trace_agrees_with_forwarding_on_randomized_frames(h):
    _ports(h)
    rng = random.Random(11)
    verdicts = set()
    for _ in range(300):
        port = rng.choice([0, 1, 2, 3, 4, 6])
        frame = _random_frame(rng)
        before = _snapshot(h)
        t = trace(h.switch, port, frame, now_s=h.now)
        assert _snapshot(h) == before, "a trace changed counters or the MAC table"

        rx_drops = {k: v for k, v in h.counters(port).items()}
        got = h.inject(port, frame)
        real_egress = {p for p, frames in got.items() if frames}
        assert {p for p, _ in t.egress} == real_egress, (port, frame.hex(), t.notes)
        after = h.counters(port)
        hit = [k for k, v in after.items() if v != rx_drops[k]
               and k not in ("rx_packets", "rx_bytes", "flooded", "tx_packets", "tx_bytes")]
        if t.drop_reason is None:
            assert real_egress, t.notes
            verdicts.add("forwarded")
        else:
            assert hit == [t.drop_reason], (hit, t.notes)
            verdicts.add(t.drop_reason)
        # A second per frame: max_macs reclaims stale admissions at most once
        # a second per context, and a trace context starts with none done.
        h.now += 1
    # The set exercised every kind of verdict the ports can give.
    assert {"forwarded", "vlan_not_allowed", "mac_spoof", "src_multicast"} <= verdicts


def test_trace_names_each_stage_in_pipeline_order(h):
    _ports(h)
    h.inject(1, eth(BROADCAST, mac(2)))
    t = trace(h.switch, 0, eth(mac(2), mac(1)), now_s=h.now)
    stages = [s for s, _ in t.notes]
    assert stages == ["ingress", "vlan", "learn", "lookup", "egress"]
    assert dict(t.notes)["vlan"] == "access port VLAN 10, untagged -> VLAN 10"
    assert dict(t.notes)["lookup"] == "VLAN 10 hit on port 1"
    assert t.egress == ((1, 1),) and t.drop_reason is None


def test_trace_of_a_flood_says_why_each_port_was_left_out(h):
    _ports(h)
    t = trace(h.switch, 0, eth(BROADCAST, mac(1)), now_s=h.now)
    flood = [d for s, d in t.notes if s == "flood"]
    assert "port 0 left out: ingress port" in flood
    assert "port 3 left out: VLAN not carried" in flood
    assert "port 5 left out: link down" in flood
    assert {p for p, _ in t.egress} == {1, 2, 4}
    assert [d for s, d in t.notes if s == "egress"] == [
        "port 1: untagged, offloads: none needed",
        "port 2: tagged VLAN 10 (pcp 0), offloads: none needed",
        "port 4: tagged VLAN 10 (pcp 0), offloads: none needed"]


def test_trace_of_a_refused_tag_gives_the_drop_reason(h):
    _ports(h)
    t = trace(h.switch, 2, eth(BROADCAST, mac(1), vid=99), now_s=h.now)
    assert t.drop_reason == "vlan_not_allowed" and t.egress == ()
    assert t.drops == ((2, "vlan_not_allowed"),)
    assert ("vlan", "trunk port (native VLAN 1), tagged 99: refused") in t.notes


def test_trace_says_what_learning_would_do(h):
    _ports(h)
    t = trace(h.switch, 0, eth(BROADCAST, mac(7)), now_s=h.now)
    assert "unknown: would learn on port 0" in dict(t.notes)["learn"]
    h.inject(1, eth(BROADCAST, mac(7)))
    t = trace(h.switch, 0, eth(BROADCAST, mac(7)), now_s=h.now)
    assert "on port 1: would move to port 0" in dict(t.notes)["learn"]
    assert h.switch.macs.lookup(10, "02:00:00:00:00:07") == 1


def test_trace_of_an_unknown_port_is_refused(h):
    _ports(h)
    with pytest.raises(Exception, match="trace on port 9"):
        trace(h.switch, 9, eth(BROADCAST, mac(1)))


def test_trace_of_a_super_frame_says_how_each_port_takes_it(h):
    from tests.unit.test_forwarding_offloads import VNET_LEN, super_frame, vnet_bytes
    from vswitchd.trace import run

    h.add(10, vnet_hdr_len=VNET_LEN, offload_csum=True, offload_tso=True, mtu=1500)
    h.add(11, vnet_hdr_len=VNET_LEN, offload_csum=True, offload_tso=False, mtu=1500)
    h.add(12, vnet_hdr_len=VNET_LEN, offload_csum=True, offload_tso=True, mtu=1400)
    sf = super_frame(paylen=5000)
    t = trace(h.switch, 10, sf.raw, vnet_bytes(sf.vh), now_s=h.now)
    assert ("offload", "port 11 has no TSO: super-frame (gso_size 1448) segmented in "
            "software") in t.notes
    assert dict(t.egress) == {11: 4}
    assert t.drops == ((12, "oversize"),)
    reply = run(h.switch, 10, {10: "a", 11: "b", 12: "c"}, sf.raw, vnet=vnet_bytes(sf.vh))
    assert reply["verdict"] == "forwarded" and reply["egress_ports"] == ["b"]
    assert {"stage": "offload", "detail": "port b: segmented into 4 frames"} in reply["stages"]
    assert reply["drops"] == [{"port": "c", "reason": "oversize"}]
