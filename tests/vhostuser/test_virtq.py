"""The front end's rings and messages without a back end (no root needed)."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.vhostuser import protocol as p
from tests.vhostuser.virtq import DESC, DESC_F_WRITE, GuestMemory, SplitQueue, need_event


@pytest.fixture
def mem() -> Iterator[GuestMemory]:
    m = GuestMemory(1 << 20)
    yield m
    m.close()


def device_complete(q: SplitQueue, written: int = 0) -> int:
    """Play the device: move every available head to the used ring."""
    avail_idx = q.mem.u16[(q.avail_off + 2) // 2]
    used = q.used_idx()
    n = 0
    while used != avail_idx:
        head = struct.unpack_from("<H", q.mem.mm, q.avail_off + 4 + 2 * (used % q.size))[0]
        struct.pack_into("<II", q.mem.mm, q.used_off + 4 + 8 * (used % q.size), head, written)
        used = (used + 1) & 0xFFFF
        n += 1
    q.mem.u16[(q.used_off + 2) // 2] = used
    return n


def test_need_event_fires_only_when_the_index_crosses_the_event() -> None:
    assert need_event(0, 1, 0)
    assert not need_event(5, 3, 0)
    assert need_event(5, 6, 3)
    assert need_event(0xFFFF, 1, 0xFFFE)      # across the u16 wrap


def test_buffer_descriptor_names_guest_physical_address_and_length(mem: GuestMemory) -> None:
    q = SplitQueue(mem, 1, size=8)
    head = q.add_buffer(b"x" * 70)
    assert head is not None
    addr, length, flags, _ = DESC.unpack_from(mem.mm, q.desc_off + 16 * head)
    assert (addr, length, flags) == (mem.gpa(q.buf_off[head]), 70, 0)
    assert mem.read(addr - mem.gpa_base, 70) == b"x" * 70


def test_ring_refills_after_the_device_returns_buffers_across_index_wrap(
        mem: GuestMemory) -> None:
    q = SplitQueue(mem, 0, size=8)
    total = 0
    for _ in range(70000 // 8):
        while q.add_buffer(b"", writable=True) is not None:
            pass
        assert device_complete(q, 64) == 8
        total += len(q.poll_used())
    assert total == 70000 // 8 * 8
    assert q.in_flight() == 0
    assert q.avail_idx == total & 0xFFFF


def test_writable_buffer_offers_its_length_to_the_device(mem: GuestMemory) -> None:
    q = SplitQueue(mem, 0, size=4)
    head = q.add_buffer(writable=True, length=512)
    assert head is not None
    _, length, flags, _ = DESC.unpack_from(mem.mm, q.desc_off + 16 * head)
    assert (length, flags) == (512, DESC_F_WRITE)


def test_queue_size_must_be_a_power_of_two(mem: GuestMemory) -> None:
    with pytest.raises(ValueError, match="power of two"):
        SplitQueue(mem, 0, size=100)


def test_mem_table_payload_layout() -> None:
    payload = p.mem_table_payload([p.MemRegion(0x100000, 1 << 20, 0x7F0000000000, 0)])
    assert len(payload) == 8 + 32
    assert struct.unpack("<IIQQQQ", payload) == (1, 0, 0x100000, 1 << 20, 0x7F0000000000, 0)


def test_feature_names_list_known_and_unknown_bits() -> None:
    mask = p.bits(p.Feature.VERSION_1, p.Feature.NET_MRG_RXBUF, 60)
    assert p.names(mask, p.Feature) == ["NET_MRG_RXBUF", "VERSION_1", "60"]
