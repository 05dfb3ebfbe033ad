"""The C forwarding pipeline over socketpair ports: 802.1Q ingress/egress,
learning, flooding, filtering and drop accounting, without root."""

from __future__ import annotations

import pytest

from tests.frames import BROADCAST, eth, mac, parse_vlan
from tests.unit.harness import Harness


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def access(h: Harness, pid: int, vlan: int = 1, **kw):
    return h.add(pid, mode="access", access_vlan=vlan, **kw)


def trunk(h: Harness, pid: int, allowed=((1, 4094),), native: int = 0, **kw):
    return h.add(pid, mode="trunk", allowed=allowed, native_vlan=native, **kw)


def test_unknown_unicast_is_flooded_to_every_other_port_of_the_vlan(h):
    for pid in (0, 1, 2):
        access(h, pid, 10)
    access(h, 3, 20)
    got = h.inject(0, eth(mac(99), mac(1)))
    assert len(got[1]) == 1 and len(got[2]) == 1
    assert got[0] == [] and got[3] == []
    assert h.counters(0)["flooded"] == 1


def test_known_unicast_goes_out_of_one_port_only(h):
    for pid in (0, 1, 2):
        access(h, pid, 10)
    h.inject(1, eth(BROADCAST, mac(2)))          # learn mac(2) on port 1
    got = h.inject(0, eth(mac(2), mac(1)))
    assert got[1] == [eth(mac(2), mac(1))]
    assert got[2] == [] and got[0] == []
    assert h.counters(0)["flooded"] == 0


def test_broadcast_is_flooded_within_vlan_only(h):
    access(h, 0, 10)
    access(h, 1, 10)
    access(h, 2, 20)
    got = h.inject(0, eth(BROADCAST, mac(1)))
    assert len(got[1]) == 1 and got[2] == [] and got[0] == []


def test_frame_to_mac_learned_on_ingress_port_is_filtered(h):
    access(h, 0)
    access(h, 1)
    h.inject(0, eth(BROADCAST, mac(5)))
    got = h.inject(0, eth(mac(5), mac(6)))
    assert got[0] == [] and got[1] == []
    assert h.counters(0)["same_port"] == 1


def test_mac_seen_on_new_port_moves(h):
    for pid in (0, 1, 2):
        access(h, pid)
    h.inject(0, eth(BROADCAST, mac(7)))
    assert h.switch.macs.lookup(1, "02:00:00:00:00:07") == 0
    h.inject(1, eth(BROADCAST, mac(7)))
    assert h.switch.macs.lookup(1, "02:00:00:00:00:07") == 1
    got = h.inject(2, eth(mac(7), mac(8)))
    assert len(got[1]) == 1 and got[0] == []
    assert h.switch.macs.stats().moved == 1


def test_access_port_drops_frames_tagged_with_another_vlan(h):
    access(h, 0, 10)
    access(h, 1, 10)
    got = h.inject(0, eth(BROADCAST, mac(1), vid=11))
    assert got[1] == []
    assert h.counters(0)["vlan_tagged_on_access"] == 1


def test_access_port_accepts_priority_tagged_and_own_vlan_tag_and_egresses_untagged(h):
    access(h, 0, 10)
    access(h, 1, 10)
    got = h.inject(0, eth(BROADCAST, mac(1), vid=0, pcp=5))
    assert got[1] == [eth(BROADCAST, mac(1))]
    got = h.inject(0, eth(BROADCAST, mac(1), vid=10))
    assert got[1] == [eth(BROADCAST, mac(1))]


def test_trunk_egress_tags_with_the_access_vlan(h):
    access(h, 0, 10)
    trunk(h, 1)
    got = h.inject(0, eth(BROADCAST, mac(1)))
    assert [parse_vlan(f) for f in got[1]] == [10]
    assert got[1][0] == eth(BROADCAST, mac(1), vid=10)


def test_trunk_tagged_frame_reaches_access_port_of_that_vlan_untagged(h):
    trunk(h, 0)
    access(h, 1, 10)
    access(h, 2, 20)
    got = h.inject(0, eth(BROADCAST, mac(1), vid=20))
    assert got[1] == [] and got[2] == [eth(BROADCAST, mac(1))]


def test_trunk_drops_vlan_not_in_allowed_list(h):
    trunk(h, 0, allowed=((1, 100), (200, 200)))
    trunk(h, 1)
    assert h.inject(0, eth(BROADCAST, mac(1), vid=150))[1] == []
    assert h.counters(0)["vlan_not_allowed"] == 1
    assert len(h.inject(0, eth(BROADCAST, mac(1), vid=200))[1]) == 1


def test_trunk_untagged_enters_native_vlan_and_native_egresses_untagged(h):
    trunk(h, 0, native=5)
    trunk(h, 1, native=5)
    access(h, 2, 5)
    got = h.inject(0, eth(BROADCAST, mac(1)))
    assert got[1] == [eth(BROADCAST, mac(1))]
    assert got[2] == [eth(BROADCAST, mac(1))]


def test_trunk_without_native_vlan_drops_untagged(h):
    trunk(h, 0)
    trunk(h, 1)
    assert h.inject(0, eth(BROADCAST, mac(1)))[1] == []
    assert h.counters(0)["untagged_no_native"] == 1


def test_trunk_to_trunk_keeps_priority_bits(h):
    trunk(h, 0)
    trunk(h, 1)
    frame = eth(BROADCAST, mac(1), vid=30, pcp=6)
    assert h.inject(0, frame)[1] == [frame]


def test_trunk_drops_reserved_vid_4095(h):
    trunk(h, 0)
    trunk(h, 1)
    assert h.inject(0, eth(BROADCAST, mac(1), vid=4095))[1] == []
    assert h.counters(0)["vlan_not_allowed"] == 1


def test_multicast_source_is_dropped_and_never_learned(h):
    access(h, 0)
    access(h, 1)
    got = h.inject(0, eth(BROADCAST, b"\x01\x00\x5e\x00\x00\x01"))
    assert got[1] == []
    assert h.counters(0)["src_multicast"] == 1
    assert len(h.switch.macs) == 0


def test_runts_are_dropped_and_counted(h):
    access(h, 0)
    trunk(h, 1)
    access(h, 2)
    h.inject(0, b"\xff" * 13)
    h.inject(1, BROADCAST + mac(1) + b"\x81\x00\x00")     # 15 bytes, tagged
    assert h.counters(0)["runt"] == 1
    assert h.counters(1)["runt"] == 1
    assert h.ports[2].received() == []


def test_oversized_frame_is_dropped_at_egress_with_small_mtu(h):
    access(h, 0)
    access(h, 1, mtu=100)
    access(h, 2)
    got = h.inject(0, eth(BROADCAST, mac(1), payload=b"\x00" * 200))
    assert got[1] == [] and len(got[2]) == 1
    assert h.counters(1)["oversize"] == 1


def test_down_port_leaves_the_flood_set(h):
    access(h, 0)
    access(h, 1)
    access(h, 2, up=False)
    got = h.inject(0, eth(BROADCAST, mac(1)))
    assert len(got[1]) == 1 and got[2] == []


def test_unicast_to_mac_on_down_port_is_flooded_to_up_ports(h):
    access(h, 0)
    access(h, 1)
    access(h, 2)
    h.inject(2, eth(BROADCAST, mac(3)))
    h.set(2, up=False)
    got = h.inject(0, eth(mac(3), mac(1)))
    assert got[2] == [] and len(got[1]) == 1


def test_no_other_port_in_vlan_counts_no_destination(h):
    access(h, 0, 10)
    access(h, 1, 20)
    h.inject(0, eth(BROADCAST, mac(1)))
    assert h.counters(0)["no_destination"] == 1


def test_counters_count_rx_and_tx_packets_and_bytes(h):
    access(h, 0)
    access(h, 1)
    frame = eth(BROADCAST, mac(1))
    h.inject(0, frame)
    assert h.counters(0)["rx_packets"] == 1
    assert h.counters(0)["rx_bytes"] == len(frame)
    assert h.counters(1)["tx_packets"] == 1
    assert h.counters(1)["tx_bytes"] == len(frame)


def test_learned_entries_age_out_with_the_clock(h):
    access(h, 0)
    access(h, 1)
    h.inject(0, eth(BROADCAST, mac(1)))
    assert len(h.switch.macs) == 1
    assert h.switch.macs.age(h.now + 299, 300) == 0
    assert h.switch.macs.age(h.now + 300, 300) == 1
    assert len(h.switch.macs) == 0


def test_full_table_floods_new_destinations_and_keeps_known_ones():
    h = Harness(mac_capacity=16)
    try:
        for pid in (0, 1, 2):
            access(h, pid)
        h.inject(1, eth(BROADCAST, mac(1000)))
        for i in range(100):
            h.inject(0, eth(BROADCAST, mac(i)))
        assert len(h.switch.macs) <= 16
        got = h.inject(2, eth(mac(1000), mac(2000)))
        assert len(got[1]) == 1 and got[0] == []
        assert h.switch.macs.stats().full > 0
    finally:
        h.close()


def test_removed_port_receives_nothing_and_its_id_starts_with_fresh_counters(h):
    access(h, 0)
    access(h, 1)
    h.inject(0, eth(BROADCAST, mac(1)))
    h.remove(1)
    access(h, 1)
    assert h.counters(1)["tx_packets"] == 0


def test_packet_socket_ports_forward_in_batches():
    h = Harness()
    try:
        h.add(0, kind="packet")
        h.add(1, kind="packet")
        h.add(2, kind="packet")
        for i in range(40):
            h.ports[0].send(eth(BROADCAST, mac(1), payload=bytes([i]) * 46))
        h.run()
        got1 = h.ports[1].received()
        assert [f[14] for f in got1] == list(range(40))
        assert len(h.ports[2].received()) == 40
    finally:
        h.close()
