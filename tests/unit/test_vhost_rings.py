"""The vhost-user rings against a hostile guest (csrc/vs_virtq.c), without
root: guest memory is a buffer of ours, rings at fixed offsets in it.

Guest TX virtqueue (vring 1) at 16 KiB, guest RX (vring 0) at 0: each
descriptors at +0, avail at +4 KiB, used at +8 KiB.
"""

from __future__ import annotations

import struct

import pytest

from vswitchd.fastpath_vhost import Vhost, VringSpec
from vswitchd.vhost import features as F

GPA = 0x40000000
MEM = 64 * 1024
NUM = 8
DATA = 32 * 1024
V1 = F.bit(F.F_VERSION_1)
NEXT, WRITE, INDIRECT = 1, 2, 4


class Guest:
    def __init__(self, features: int = V1) -> None:
        rings = [VringSpec(num=NUM, desc=GPA + v * 16384, avail=GPA + v * 16384 + 4096,
                           used=GPA + v * 16384 + 8192, base=0, kick=-1, call=-1)
                 for v in (0, 1)]
        self.dev, self.mem = Vhost.over_memory(features, GPA, MEM, rings)
        self.avail_idx = [0, 0]

    def put(self, off: int, data: bytes) -> None:
        self.mem[off:off + len(data)] = data

    def desc(self, vring: int, i: int, addr: int, length: int, flags: int = 0,
             nxt: int = 0) -> None:
        self.put(vring * 16384 + 16 * i, struct.pack("=QIHH", addr, length, flags, nxt))

    def make_avail(self, vring: int, head: int) -> None:
        base = vring * 16384 + 4096
        self.put(base + 4 + 2 * (self.avail_idx[vring] % NUM), struct.pack("=H", head))
        self.avail_idx[vring] += 1
        self.put(base + 2, struct.pack("=H", self.avail_idx[vring] & 0xFFFF))

    def used_idx(self, vring: int) -> int:
        return int(struct.unpack_from("=H", self.mem, vring * 16384 + 8192 + 2)[0])

    def used_elem(self, vring: int, i: int) -> tuple[int, int]:
        return struct.unpack_from("=II", self.mem, vring * 16384 + 8192 + 4 + 8 * i)

    def send(self, frame: bytes, head: int = 0, at: int = DATA) -> None:
        """A well-formed one-descriptor TX chain carrying `frame`."""
        self.put(at, bytes(12) + frame)
        self.desc(1, head, GPA + at, 12 + len(frame))
        self.make_avail(1, head)


FRAME = bytes.fromhex("ffffffffffff020000000001") + b"\x08\x00" + bytes(46)


@pytest.fixture
def guest():
    g = Guest()
    yield g
    g.dev.free()


def test_well_formed_chains_are_taken_and_returned(guest: Guest) -> None:
    guest.send(FRAME, head=0, at=DATA)
    # A frame in two pieces: header, then data.
    guest.put(DATA + 4096, bytes(12))
    guest.put(DATA + 8192, FRAME)
    guest.desc(1, 1, GPA + DATA + 4096, 12, NEXT, 2)
    guest.desc(1, 2, GPA + DATA + 8192, len(FRAME))
    guest.make_avail(1, 1)
    frames, drops = guest.dev.dequeue(1)
    assert frames == [FRAME, FRAME] and drops == {}
    assert guest.used_idx(1) == 2 and guest.used_elem(1, 1) == (1, 0)


def test_descriptor_outside_guest_memory_is_dropped_and_counted(guest: Guest) -> None:
    guest.desc(1, 0, GPA + MEM - 8, 64)            # runs past the end
    guest.make_avail(1, 0)
    guest.desc(1, 1, 0x1000, 64)                   # below the region
    guest.make_avail(1, 1)
    frames, drops = guest.dev.dequeue(1)
    assert frames == [] and drops == {"vhost_desc_oob": 2}
    assert guest.used_idx(1) == 2                  # returned to the guest anyway


def test_looping_chain_is_dropped_and_counted(guest: Guest) -> None:
    guest.put(DATA, bytes(12) + FRAME)
    guest.desc(1, 0, GPA + DATA, 12, NEXT, 1)
    guest.desc(1, 1, GPA + DATA + 12, 10, NEXT, 0)     # back to 0
    guest.make_avail(1, 0)
    guest.desc(1, 3, GPA + DATA, 12, NEXT, 200)        # next out of the ring
    guest.make_avail(1, 3)
    frames, drops = guest.dev.dequeue(1)
    assert frames == [] and drops == {"vhost_desc_loop": 2}


def test_indirect_table_without_the_feature_or_nested_is_refused(guest: Guest) -> None:
    guest.desc(1, 0, GPA + DATA, 32, INDIRECT)
    guest.make_avail(1, 0)
    _, drops = guest.dev.dequeue(1)
    assert drops == {"vhost_desc_bad": 1}


def test_indirect_chain_is_followed_when_negotiated() -> None:
    g = Guest(V1 | F.bit(F.RING_F_INDIRECT_DESC))
    try:
        table = DATA + 2048
        g.put(DATA, bytes(12) + FRAME)
        g.put(table, struct.pack("=QIHH", GPA + DATA, 12, NEXT, 1)
              + struct.pack("=QIHH", GPA + DATA + 12, len(FRAME), 0, 0))
        g.desc(1, 0, GPA + table, 32, INDIRECT)
        g.make_avail(1, 0)
        # Nested: an indirect descriptor inside the table.
        g.put(table + 64, struct.pack("=QIHH", GPA + table, 32, INDIRECT, 0))
        g.desc(1, 1, GPA + table + 64, 16, INDIRECT)
        g.make_avail(1, 1)
        frames, drops = g.dev.dequeue(1)
        assert frames == [FRAME] and drops == {"vhost_desc_bad": 1}
    finally:
        g.dev.free()


def test_device_writable_buffer_on_tx_is_refused(guest: Guest) -> None:
    guest.put(DATA, bytes(12) + FRAME)
    guest.desc(1, 0, GPA + DATA, 12 + len(FRAME), WRITE)
    guest.make_avail(1, 0)
    assert guest.dev.dequeue(1)[1] == {"vhost_desc_bad": 1}


def test_avail_index_a_ring_ahead_stops_the_queue_for_good(guest: Guest) -> None:
    guest.put(16384 + 4096 + 2, struct.pack("=H", NUM + 5))
    frames, drops = guest.dev.dequeue(1)
    assert frames == [] and drops == {"vhost_ring_broken": 1}
    assert guest.dev.broken()
    guest.put(16384 + 4096 + 2, struct.pack("=H", 1))      # "fixed" by the guest
    guest.send(FRAME)
    assert guest.dev.dequeue(1)[0] == []                   # still stopped


def test_head_index_out_of_range_stops_the_queue(guest: Guest) -> None:
    guest.put(16384 + 4096 + 4, struct.pack("=H", 999))
    guest.put(16384 + 4096 + 2, struct.pack("=H", 1))
    guest.avail_idx[1] = 1
    assert guest.dev.dequeue(1)[0] == []
    assert guest.dev.broken()


def test_frame_is_written_into_one_rx_buffer_with_its_header(guest: Guest) -> None:
    guest.desc(0, 0, GPA + DATA, 2048, WRITE)
    guest.make_avail(0, 0)
    assert guest.dev.enqueue(0, bytes(12) + FRAME) is None
    assert guest.used_idx(0) == 1
    assert guest.used_elem(0, 0) == (0, 12 + len(FRAME))
    assert bytes(guest.mem[DATA + 12:DATA + 12 + len(FRAME)]) == FRAME


def test_merged_rx_buffers_carry_num_buffers() -> None:
    g = Guest(V1 | F.bit(F.NET_F_MRG_RXBUF))
    try:
        for i in range(3):
            g.desc(0, i, GPA + DATA + 1024 * i, 512, WRITE)
            g.make_avail(0, i)
        big = FRAME + bytes(900)
        assert g.dev.enqueue(0, bytes(12) + big) is None
        assert g.used_idx(0) == 2
        assert struct.unpack_from("=H", g.mem, DATA + 10)[0] == 2
        assert g.used_elem(0, 0) == (0, 512) and g.used_elem(0, 1)[1] == 12 + len(big) - 512
    finally:
        g.dev.free()


def test_frame_larger_than_the_buffer_without_mrg_is_dropped_untouched(guest: Guest) -> None:
    guest.desc(0, 0, GPA + DATA, 64, WRITE)
    guest.make_avail(0, 0)
    assert guest.dev.enqueue(0, bytes(12) + FRAME + bytes(100)) == "vhost_no_buffers"
    assert guest.used_idx(0) == 0
    assert guest.dev.enqueue(0, bytes(12) + FRAME[:40]) is None    # still usable


def test_rx_buffer_outside_guest_memory_is_refused(guest: Guest) -> None:
    guest.desc(0, 0, GPA + MEM - 100, 2048, WRITE)
    guest.make_avail(0, 0)
    assert guest.dev.enqueue(0, bytes(12) + FRAME) == "vhost_desc_oob"
    assert guest.used_idx(0) == 0
