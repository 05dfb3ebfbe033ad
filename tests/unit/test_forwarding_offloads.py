"""The forwarding pipeline with virtio-net headers: GSO super-frames pass
through to ports that take TSO, are segmented for ports that do not, and
never leave a port whose MTU their segments would not fit."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP

from tests.unit.harness import Harness
from tests.unit.test_gso import TCP_OPTS, V4, make_super, pattern

VNET_LEN = 12


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def vnet_bytes(vh) -> bytes:
    return struct.pack("<BBHHHHH", vh.flags, vh.gso_type, vh.hdr_len, vh.gso_size,
                       vh.csum_start, vh.csum_offset, 0)


def super_frame(mss: int = 1448, paylen: int = 20000):
    sf = make_super(IP(**V4) / TCP(flags="A", options=TCP_OPTS), pattern(paylen), mss)
    # Unicast from mac(1) to mac(2), as make_super's Ethernet header says.
    assert sf.raw[:6] == bytes.fromhex("020000000002")
    return sf


def ports(h: Harness, *, egress_tso: bool, egress_mtu: int) -> None:
    h.add(0, vnet_hdr_len=VNET_LEN, offload_csum=True, offload_tso=True, mtu=1500)
    h.add(1, vnet_hdr_len=VNET_LEN, offload_csum=True, offload_tso=egress_tso,
          mtu=egress_mtu)


def test_super_frame_passes_whole_to_a_tso_port_whose_mtu_fits_its_segments(h):
    ports(h, egress_tso=True, egress_mtu=1500)           # 20 + 32 + 1448 = 1500
    sf = super_frame()
    got = h.inject(0, sf.raw, vnet_bytes(sf.vh))
    assert got[1] == [vnet_bytes(sf.vh) + sf.raw]
    assert h.counters(1)["oversize"] == 0


def test_super_frame_whose_segments_exceed_a_tso_port_mtu_is_dropped_and_counted(h):
    ports(h, egress_tso=True, egress_mtu=1400)
    sf = super_frame()
    got = h.inject(0, sf.raw, vnet_bytes(sf.vh))
    assert got[1] == []
    assert h.counters(1)["oversize"] == 1


def test_super_frame_is_segmented_for_a_port_without_tso(h):
    ports(h, egress_tso=False, egress_mtu=1500)
    sf = super_frame(paylen=5000)
    got = h.inject(0, sf.raw, vnet_bytes(sf.vh))
    segs = got[1]
    assert len(segs) == 4                                 # 3 x 1448 + 656
    for seg in segs:
        assert seg[:VNET_LEN] == bytes(VNET_LEN)          # complete: no offload left
        assert len(seg) - VNET_LEN - 14 <= 1500
    assert h.counters(1)["segmented"] == 1


def test_a_port_without_tso_whose_mtu_is_too_small_drops_the_super_frame(h):
    ports(h, egress_tso=False, egress_mtu=1400)
    sf = super_frame(paylen=5000)
    got = h.inject(0, sf.raw, vnet_bytes(sf.vh))
    assert got[1] == []
    assert h.counters(1)["oversize"] == 1

