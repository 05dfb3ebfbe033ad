"""The running vhost-user device in the workers (csrc/vs_vhost.h).

A `Vhost` is built from a session's memory table and rings each time the
set of running queues changes, and freed only once a published config no
longer names it (like `fastpath.Ring`).  Its regions are mmapped by C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vswitchd._fastpath import ffi, lib
from vswitchd.fastpath import COUNTER_NAMES, FastpathError

MAX_QP: int = lib.VS_VHOST_MAX_QP
MAX_REGIONS: int = lib.VS_VHOST_MAX_REGIONS


@dataclass(frozen=True)
class VringSpec:
    num: int
    desc: int
    avail: int
    used: int
    base: int
    kick: int
    call: int


def _params(features: int, regions: Sequence[tuple[int, int, int, int, int]],
            vrings: Sequence[VringSpec]) -> object:
    if not 1 <= len(vrings) // 2 <= MAX_QP or len(vrings) % 2:
        raise FastpathError(f"vhost: {len(vrings)} virtqueues, want 2-{2 * MAX_QP}, even")
    if len(regions) > MAX_REGIONS:
        raise FastpathError(f"vhost: {len(regions)} memory regions, at most {MAX_REGIONS}")
    p = ffi.new("struct vs_vhost_params *")
    p.features = features
    p.n_regions = len(regions)
    for i, (gpa, size, ua, off, fd) in enumerate(regions):
        r = p.regions[i]
        r.guest_phys_addr, r.size, r.user_addr, r.mmap_offset, r.fd = gpa, size, ua, off, fd
    p.n_qp = len(vrings) // 2
    for i, v in enumerate(vrings):
        c = p.vrings[i]
        c.num, c.desc_addr, c.avail_addr, c.used_addr = v.num, v.desc, v.avail, v.used
        c.last_avail, c.kick_fd, c.call_fd = v.base, v.kick, v.call
    return p


class Vhost:
    """One running vhost-user device: mapped memory and its virtqueues."""

    def __init__(self, features: int, regions: Sequence[tuple[int, int, int, int, int]],
                 vrings: Sequence[VringSpec]) -> None:
        p = _params(features, regions, vrings)
        err = ffi.new("int *")
        ptr = lib.vs_vhost_new(p, err)
        if ptr == ffi.NULL:
            raise FastpathError(f"vhost: memory table or rings refused (errno {err[0]})")
        self._vh: object | None = ptr
        self.n_qp = len(vrings) // 2
        self._keep = p

    @classmethod
    def over_memory(cls, features: int, gpa: int, size: int,
                    vrings: Sequence[VringSpec]) -> tuple[Vhost, memoryview]:
        """A device over `size` bytes of our own memory standing for the
        guest's, at guest (and front-end) address `gpa`, no mmap; returns it
        and a view of that memory.  For tests."""
        buf = ffi.new("uint8_t[]", size)
        p = _params(features, [(gpa, size, gpa, 0, -1)], vrings)
        err = ffi.new("int *")
        ptr = lib.vs_vhost_new_unmapped(p, buf, err)
        if ptr == ffi.NULL:
            raise FastpathError(f"vhost: rings refused (errno {err[0]})")
        self = cls.__new__(cls)
        self._vh = ptr
        self.n_qp = len(vrings) // 2
        self._keep = (p, buf)
        return self, memoryview(ffi.buffer(buf))  # type: ignore[arg-type]

    @property
    def c_vhost(self) -> object:
        if self._vh is None:
            raise FastpathError("vhost device used after free")
        return self._vh

    def last_avail(self, vring: int) -> int:
        return int(lib.vs_vhost_last_avail(self.c_vhost, vring))

    def bases(self) -> dict[int, int]:
        return {i: self.last_avail(i) for i in range(2 * self.n_qp)}

    def broken(self) -> bool:
        return bool(lib.vs_vhost_broken(self.c_vhost))

    def dequeue(self, vring: int) -> tuple[list[bytes], dict[str, int]]:
        """Test hook: frames taken from guest TX virtqueue `vring`, and the
        drops counted by reason."""
        out = ffi.new("uint8_t[]", 1 << 16)
        drops = ffi.new("uint64_t[]", len(COUNTER_NAMES))
        n = lib.vs_vhost_test_dequeue(self.c_vhost, vring, out, 1 << 16, drops)
        raw = bytes(ffi.buffer(out, 1 << 16))
        frames, off = [], 0
        for _ in range(n):
            length = int.from_bytes(raw[off:off + 4], "little")
            frames.append(raw[off + 4:off + 4 + length])
            off += 4 + length
        return frames, {COUNTER_NAMES[i]: int(drops[i]) for i in range(len(COUNTER_NAMES))
                        if drops[i]}

    def enqueue(self, vring: int, frame: bytes) -> str | None:
        """Test hook: writes `frame` (virtio-net header first) into guest RX
        virtqueue `vring`; None or the drop reason."""
        r = int(lib.vs_vhost_test_enqueue(self.c_vhost, vring, frame, len(frame)))
        return None if r == 0 else COUNTER_NAMES[r] if r < len(COUNTER_NAMES) else str(r)

    def free(self) -> None:
        """Unmaps the memory: only once no published config names it."""
        if self._vh is not None:
            lib.vs_vhost_free(self._vh)
            self._vh = None
