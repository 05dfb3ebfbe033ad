"""Mirrors in the C pipeline over socketpairs: copies as on the selected
port's wire, VLAN selection, snaplen, a reserved output port, and a full
output port that costs copies, never originals."""

from __future__ import annotations

import socket

import pytest

from tests.frames import BROADCAST, eth, mac
from tests.unit.harness import Harness
from vswitchd.fastpath_observe import MirrorParams, mirror_stats, trace


@pytest.fixture
def h():
    harness = Harness()
    harness.add(0, mode="access", access_vlan=10)
    harness.add(1, mode="trunk", allowed=((1, 100),))
    harness.add(2, mode="access", access_vlan=10)        # the output port
    yield harness
    harness.close()


def mirror(h: Harness, **kw) -> None:
    m = MirrorParams(**{"id": 0, "output_port": 2, **kw})
    h.switch.publish([p.params for p in h.ports.values()], mirrors=[m])


def test_copies_look_as_on_the_selected_ports_wire(h):
    mirror(h, src_ports=(0,), dst_ports=(0,))
    out = eth(BROADCAST, mac(1))
    got = h.inject(0, out)
    assert got[2] == [out]                                # as it arrived, untagged
    back = eth(mac(1), mac(2), vid=10)
    got = h.inject(1, back)
    assert got[0] == [eth(mac(1), mac(2))]
    assert got[2] == [eth(mac(1), mac(2))]                # as it left port 0: untagged
    assert mirror_stats(h.switch, 0).packets == 2


def test_select_vlans_and_snaplen(h):
    mirror(h, src_ports=(1,), vlans=(20,), snaplen=20)
    assert h.inject(1, eth(BROADCAST, mac(1), vid=10))[2] == []
    frame = eth(BROADCAST, mac(1), vid=20)
    assert h.inject(1, frame)[2] == [frame[:20]]


def test_output_port_is_reserved(h):
    mirror(h, src_ports=(0,))
    got = h.inject(2, eth(BROADCAST, mac(9)))
    assert got[0] == [] and got[1] == []
    assert h.counters(2)["mirror_output"] == 1
    assert h.switch.macs.lookup(10, "02:00:00:00:00:09") is None
    got = h.inject(1, eth(BROADCAST, mac(3), vid=10))     # not selected, floods
    assert got[2] == [] and len(got[0]) == 1


def test_full_output_port_drops_copies_not_originals(h):
    h.ports[2].peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    h.ports[2].sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    mirror(h, src_ports=(0,))
    frame = eth(BROADCAST, mac(1), payload=b"\x45" + b"\x00" * 1000)
    for _ in range(200):
        h.ports[0].send(frame)
    h.run()
    assert len(h.ports[1].received()) == 200
    s = mirror_stats(h.switch, 0)
    assert s.dropped > 0 and s.packets + s.dropped == 200
    assert len(h.ports[2].received()) == s.packets


def test_trace_notes_the_copy_and_sends_nothing(h):
    mirror(h, src_ports=(0,))
    t = trace(h.switch, 0, eth(BROADCAST, mac(1)))
    assert ("mirror", "mirror 0: copy of 60 bytes to port 2") in t.notes
    assert ("flood", "port 2 left out: mirror output port") in t.notes
    assert h.ports[2].received() == [] and mirror_stats(h.switch, 0).packets == 0


def test_a_mirror_selecting_its_own_output_is_refused(h):
    with pytest.raises(Exception, match="mirror 0"):
        mirror(h, src_ports=(2,))
