"""Guest memory in a memfd and split virtqueues laid out in it (virtio 1.1, 2.6).

This is the driver's half of a virtqueue, the half a guest kernel runs:
it owns the descriptor table and the available ring, and reads the used
ring the device (the vhost-user back end) writes.  Everything lives in one
shared memfd that the back end maps after SET_MEM_TABLE, so "guest
physical" addresses here are offsets from `GuestMemory.gpa_base`.

Ordering: the driver must make a descriptor visible before the avail entry
that names it, and the entry before `avail->idx`.  Python writes into the
mmap in program order and x86 keeps stores in order (TSO), which is all a
split ring needs on this host; a port to a weakly ordered CPU would need
real barriers here.

Tearing: `struct.pack_into("<H", ...)` stores one byte at a time, so a
device polling `avail->idx` across 0x00ff -> 0x0100 can read 0x0000 and
believe 65281 buffers arrived (testpmd did, counting 75789 frames of 1000).
The two ring indexes therefore go through a native-order `memoryview` of
u16, whose item assignment is one 2-byte store (and whose read is one load).

Besides the well-behaved `add_chain` / `poll_used`, the raw writers
(`write_desc`, `write_avail_slot`, `write_avail_idx`) let a hostile front
end (hostile.py) put anything at all into the rings.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field

DESC = struct.Struct("<QIHH")        # addr, len, flags, next
USED_ELEM = struct.Struct("<II")     # id, len
DESC_F_NEXT = 1
DESC_F_WRITE = 2
DESC_F_INDIRECT = 4
USED_F_NO_NOTIFY = 1
AVAIL_F_NO_INTERRUPT = 1

# Guest-physical address of the first byte of guest memory. Not 0, so that a
# descriptor with address 0 (a classic hostile value) lies outside it.
GPA_BASE = 0x100000
# What the front end claims as its own virtual address of that byte: the
# back end only uses it to translate the ring addresses of SET_VRING_ADDR.
VA_BASE = 0x7F1000000000


class GuestMemory:
    """One shared memfd region with a bump allocator (memory is never freed)."""

    def __init__(self, size: int, name: str = "vhost-frontend") -> None:
        self.size = size
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.u16 = memoryview(self.mm).cast("H")    # whole-u16 loads/stores, see above
        self.gpa_base = GPA_BASE
        self.va_base = VA_BASE
        self._next = 0

    def alloc(self, size: int, align: int = 64) -> int:
        """Reserve `size` bytes; returns their offset in the memfd."""
        off = (self._next + align - 1) // align * align
        if off + size > self.size:
            raise MemoryError(f"guest memory of {self.size} bytes is full")
        self._next = off + size
        return off

    def gpa(self, off: int) -> int:
        return self.gpa_base + off

    def va(self, off: int) -> int:
        return self.va_base + off

    def write(self, off: int, data: bytes) -> None:
        self.mm[off:off + len(data)] = data

    def read(self, off: int, size: int) -> bytes:
        return bytes(self.mm[off:off + size])

    def close(self) -> None:
        self.u16.release()
        self.mm.close()
        os.close(self.fd)


def need_event(event_idx: int, new_idx: int, old_idx: int) -> bool:
    """vring_need_event: did the index cross `event_idx` moving from old to new?"""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old_idx) & 0xFFFF


@dataclass
class SplitQueue:
    """One split virtqueue of `size` entries, each entry with its own buffer."""

    mem: GuestMemory
    index: int
    size: int = 256
    buf_size: int = 2048
    event_idx: bool = False
    desc_off: int = 0
    avail_off: int = 0
    used_off: int = 0
    buf_off: list[int] = field(default_factory=list)
    avail_idx: int = 0          # the driver's shadow of avail->idx (free-running u16)
    last_used: int = 0          # next used entry the driver will read
    last_kicked: int = 0        # avail idx at the last kick (EVENT_IDX)
    free: list[int] = field(default_factory=list)
    chains: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size & (self.size - 1) or not 0 < self.size <= 32768:
            raise ValueError(f"queue size {self.size} is not a power of two <= 32768")
        self.desc_off = self.mem.alloc(16 * self.size, 4096)
        self.avail_off = self.mem.alloc(6 + 2 * self.size, 4096)
        self.used_off = self.mem.alloc(6 + 8 * self.size, 4096)
        self.buf_off = [self.mem.alloc(self.buf_size, 64) for _ in range(self.size)]
        self.free = list(range(self.size))

    # Addresses the back end is told about (front-end VAs, see VA_BASE).

    def addresses(self) -> tuple[int, int, int]:
        """(desc, used, avail) as SET_VRING_ADDR wants them."""
        return (self.mem.va(self.desc_off), self.mem.va(self.used_off),
                self.mem.va(self.avail_off))

    # Raw ring access: what a driver, well-behaved or not, can write.

    def write_desc(self, i: int, addr: int, length: int, flags: int = 0, nxt: int = 0) -> None:
        self.mem.mm[self.desc_off + 16 * i: self.desc_off + 16 * i + 16] = \
            DESC.pack(addr, length, flags, nxt)

    def write_avail_slot(self, slot: int, head: int) -> None:
        struct.pack_into("<H", self.mem.mm, self.avail_off + 4 + 2 * (slot % self.size), head)

    def write_avail_idx(self, idx: int) -> None:
        self.mem.u16[(self.avail_off + 2) // 2] = idx & 0xFFFF

    def write_avail_flags(self, flags: int) -> None:
        struct.pack_into("<H", self.mem.mm, self.avail_off, flags)

    def write_used_event(self, idx: int) -> None:
        self.mem.u16[(self.avail_off + 4 + 2 * self.size) // 2] = idx & 0xFFFF

    def used_idx(self) -> int:
        return int(self.mem.u16[(self.used_off + 2) // 2])

    def used_flags(self) -> int:
        return int(struct.unpack_from("<H", self.mem.mm, self.used_off)[0])

    def avail_event(self) -> int:
        return int(self.mem.u16[(self.used_off + 4 + 8 * self.size) // 2])

    def used_elem(self, slot: int) -> tuple[int, int]:
        off = self.used_off + 4 + 8 * (slot % self.size)
        ident, length = USED_ELEM.unpack_from(self.mem.mm, off)
        return int(ident), int(length)

    # The well-behaved driver.

    def add_buffer(self, data: bytes = b"", writable: bool = False,
                   length: int | None = None) -> int | None:
        """Make one single-descriptor buffer available; returns its id or None if full.

        A device-readable buffer carries `data`; a device-writable one offers
        `length` bytes (default: the whole per-entry buffer)."""
        if not self.free:
            return None
        if len(data) > self.buf_size:
            raise ValueError(f"{len(data)} bytes do not fit a {self.buf_size}-byte buffer")
        i = self.free.pop()
        off = self.buf_off[i]
        if data:
            self.mem.write(off, data)
        size = (length or self.buf_size) if writable else len(data)
        self.write_desc(i, self.mem.gpa(off), size, DESC_F_WRITE if writable else 0)
        self.chains[i] = [i]
        self.publish(i)
        return i

    def publish(self, head: int) -> None:
        """Put `head` in the next avail slot and advance avail->idx past it."""
        self.write_avail_slot(self.avail_idx, head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.write_avail_idx(self.avail_idx)

    def poll_used(self) -> list[tuple[int, int]]:
        """Used entries the device returned since the last call: (id, bytes written).

        Their descriptors go back on the free list."""
        out = []
        end = self.used_idx()
        while self.last_used != end:
            ident, length = self.used_elem(self.last_used)
            self.last_used = (self.last_used + 1) & 0xFFFF
            out.append((ident, length))
            for d in self.chains.pop(ident, []):
                self.free.append(d)
        if self.event_idx:
            self.write_used_event(self.last_used)
        return out

    def buffer(self, ident: int, length: int) -> bytes:
        return self.mem.read(self.buf_off[ident], min(length, self.buf_size))

    def needs_kick(self) -> bool:
        """Does the device want a kick for what was published since the last one?"""
        old, self.last_kicked = self.last_kicked, self.avail_idx
        if self.event_idx:
            return need_event(self.avail_event(), self.avail_idx, old)
        return not self.used_flags() & USED_F_NO_NOTIFY

    def in_flight(self) -> int:
        return self.size - len(self.free)
