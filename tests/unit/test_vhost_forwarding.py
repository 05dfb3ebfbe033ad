"""Offloads between a vhost-user port and a TAP-like port, through the
real pipeline without root: the switch's control-thread context polls a
vhost device over memory of ours (tests/unit/test_vhost_rings.py's
layout) and a socketpair port with a 12-byte virtio-net header.

The guest's virtio-net header is the header TAP ports carry: a partial
checksum passes through untouched; a super-frame goes to a guest that
negotiated TSO whole, and as segments to one that did not.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.unit.harness import Harness
from tests.unit.test_vhost_rings import DATA, GPA, MEM, NUM, WRITE
from vswitchd.fastpath import PortParams
from vswitchd.fastpath_vhost import Vhost, VringSpec
from vswitchd.vhost import features as F

VM = "02:00:00:00:00:0a"
TAP = "02:00:00:00:00:0b"
NEEDS_CSUM, GSO_TCPV4 = 1, 1


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return struct.pack("=BBHHHHH", flags, gso_type, hdr_len, gso_size, csum_start,
                       csum_offset, 0)


def tcp(src: str, dst: str, payload: int) -> bytes:
    return bytes(Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2")
                 / TCP(sport=1000, dport=2000, seq=1) / (b"x" * payload))


class Vm:
    """A guest on vhost port 2: its memory, its rings, the device."""

    def __init__(self, h: Harness, tso: bool) -> None:
        feats = F.bit(F.F_VERSION_1) | F.bit(F.NET_F_MRG_RXBUF)
        self.kick = os.eventfd(0, os.EFD_NONBLOCK)
        rings = [VringSpec(num=NUM, desc=GPA + v * 16384, avail=GPA + v * 16384 + 4096,
                           used=GPA + v * 16384 + 8192, base=0, kick=self.kick, call=-1)
                 for v in (0, 1)]
        self.dev, self.mem = Vhost.over_memory(feats, GPA, MEM, rings)
        self.avail = [0, 0]
        self.used_seen = 0
        h.switch.publish([*(p.params for p in h.ports.values()),
                          PortParams(id=2, fds=(self.kick,), kind="vhost", vhost=self.dev,
                                     vnet_hdr_len=12, offload_csum=True, offload_tso=tso)])
        for i in range(NUM):            # RX buffers: 4 KiB each
            self.put(16 * i, struct.pack("=QIHH", GPA + DATA + 4096 * i, 4096, WRITE, 0))
            self.make_avail(0, i)

    def put(self, off: int, data: bytes) -> None:
        self.mem[off:off + len(data)] = data

    def make_avail(self, vring: int, head: int) -> None:
        base = vring * 16384 + 4096
        self.put(base + 4 + 2 * (self.avail[vring] % NUM), struct.pack("=H", head))
        self.avail[vring] += 1
        self.put(base + 2, struct.pack("=H", self.avail[vring]))

    def send(self, frame: bytes, hdr: bytes) -> None:
        at = 16384 + 12288
        self.put(at, hdr + frame)
        self.put(16384, struct.pack("=QIHH", GPA + at, len(hdr) + len(frame), 0, 0))
        self.make_avail(1, 0)
        os.eventfd_write(self.kick, 1)

    def received(self) -> list[tuple[bytes, bytes]]:
        """(virtio-net header, frame) of each frame the switch wrote."""
        used = struct.unpack_from("=H", self.mem, 8192 + 2)[0]
        out = []
        while self.used_seen < used:
            head, length = struct.unpack_from("=II", self.mem, 8192 + 4 + 8 * (self.used_seen
                                                                              % NUM))
            buf = bytes(self.mem[DATA + 4096 * head:DATA + 4096 * head + length])
            out.append((buf[:12], buf[12:]))
            self.used_seen += 1
        return out

    def close(self) -> None:
        self.dev.free()
        os.close(self.kick)


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    harness.add(1, vnet_hdr_len=12, offload_csum=True, offload_tso=True)
    yield harness
    harness.close()


def test_partial_checksum_from_the_guest_passes_through_to_a_tap(h: Harness) -> None:
    vm = Vm(h, tso=True)
    try:
        frame = tcp(VM, TAP, 100)
        vm.send(frame, vnet(NEEDS_CSUM, csum_start=34, csum_offset=16))
        h.run()
        got = h.ports[1].received()
        assert len(got) == 1
        assert got[0][:12] == vnet(NEEDS_CSUM, csum_start=34, csum_offset=16)
        assert got[0][12:] == frame
    finally:
        vm.close()


@pytest.mark.parametrize("tso", [True, False])
def test_super_frame_to_a_guest_is_whole_with_tso_and_segmented_without(
        h: Harness, tso: bool) -> None:
    vm = Vm(h, tso=tso)
    try:
        vm.send(tcp(VM, TAP, 10), vnet())           # learn the VM's MAC
        h.run()
        h.ports[1].received()
        frame = tcp(TAP, VM, 3000)
        hdr = vnet(NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
        h.ports[1].send(frame, hdr)
        h.run()
        got = vm.received()
        if tso:
            assert len(got) == 1 and got[0][1] == frame
            assert got[0][0][:10] == hdr[:10]
            assert struct.unpack_from("=H", got[0][0], 10)[0] == 1     # num_buffers
        else:
            assert [len(f) - 54 for _, f in got] == [1448, 1448, 104]
            assert all(hd[:10] == bytes(10) for hd, _ in got)
            assert h.counters(2)["segmented"] == 1
    finally:
        vm.close()


def test_broken_guest_ring_stops_its_queue_and_other_ports_forward(h: Harness) -> None:
    h.add(3, vnet_hdr_len=12, offload_csum=True, offload_tso=True)
    vm = Vm(h, tso=True)
    try:
        vm.put(16384 + 4096 + 2, struct.pack("=H", NUM + 5))    # avail idx a ring ahead
        os.eventfd_write(vm.kick, 1)
        h.run()
        assert h.counters(2)["vhost_ring_broken"] == 1
        assert vm.dev.broken()
        frame = tcp(TAP, "02:00:00:00:00:0c", 50)
        got = h.inject(1, frame, vnet())
        assert got[3] == [vnet() + frame]
        h.run()
        assert h.counters(2)["vhost_ring_broken"] == 1             # counted once
    finally:
        vm.close()
