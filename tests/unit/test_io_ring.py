"""The PACKET_MMAP ring parser (csrc/vs_ring.c), fed fake blocks in memory.

The layouts are the kernel's ABI (<linux/if_packet.h>): TPACKET_V3 blocks
(struct tpacket_block_desc, then packed struct tpacket3_hdr frames) and
TPACKET_V2 slots (struct tpacket2_hdr), each frame preceded by the 10-byte
virtio_net_hdr that PACKET_VNET_HDR asks for, right before tp_mac.
"""

from __future__ import annotations

import socket
import struct
import time

import pytest
from vswitchd._fastpath import ffi, lib

from vswitchd import fastpath, ringstats

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

BLOCK_DESC_LEN = 48   # struct tpacket_block_desc
V3_HDR_LEN = 48       # struct tpacket3_hdr
V2_HDR_LEN = 32       # struct tpacket2_hdr
MAC_OFF = 92          # where the kernel puts tp_mac with a vnet header (68 + 16 + 10 - 2)
VNET = 10
SOL_PACKET = 263
PACKET_VNET_HDR = 15
ETH_P_ALL = 0x0003


def frame(n: int, payload_len: int = 46) -> bytes:
    dst = bytes([2, 0, 0, 0, 0, 1])
    src = bytes([2, 0, 0, 0, 0, n & 0xFF])
    return dst + src + b"\x08\x00" + bytes([n & 0xFF]) * payload_len


def vnet(flags=0, gso_type=0, hdr_len=0, gso_size=0, csum_start=0, csum_offset=0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


class Frame:
    def __init__(self, data: bytes, vh: bytes = bytes(VNET), wire_len: int | None = None,
                 status: int = TP_STATUS_USER, tci: int = 0, tpid: int = 0) -> None:
        self.data, self.vh, self.status, self.tci, self.tpid = data, vh, status, tci, tpid
        self.wire_len = len(data) if wire_len is None else wire_len


def v3_block(size: int, frames: list[Frame], status: int = TP_STATUS_USER,
             corrupt_mac: int | None = None) -> bytearray:
    blk = bytearray(size)
    off = BLOCK_DESC_LEN
    first = off
    prev = None
    for f in frames:
        rec = MAC_OFF + len(f.data)
        rec += (-rec) % 16
        mac = corrupt_mac if corrupt_mac is not None else MAC_OFF
        struct.pack_into("<IIIIIIHHIHHH", blk, off, 0, 0, 0, len(f.data), f.wire_len,
                         f.status, mac, MAC_OFF + 14, 0, f.tci, f.tpid, 0)
        blk[off + MAC_OFF - VNET:off + MAC_OFF] = f.vh
        blk[off + MAC_OFF:off + MAC_OFF + len(f.data)] = f.data
        if prev is not None:
            struct.pack_into("<I", blk, prev, off - prev)
        prev = off
        off += rec
    struct.pack_into("<IIIIII", blk, 0, 1, 0, status, len(frames), first, off)
    return blk


def v2_slot(size: int, f: Frame | None) -> bytearray:
    slot = bytearray(size)
    if f is not None:
        struct.pack_into("<IIIHHIIHH", slot, 0, f.status, f.wire_len, len(f.data), MAC_OFF,
                         MAC_OFF + 14, 0, 0, f.tci, f.tpid)
        slot[MAC_OFF - VNET:MAC_OFF] = f.vh
        slot[MAC_OFF:MAC_OFF + len(f.data)] = f.data
    return slot


class Ring:
    """A ring over a cffi buffer; read() returns (frames, released)."""

    def __init__(self, version: int, blocks: list[bytearray], vnet_len: int = VNET) -> None:
        self.size = len(blocks[0])
        self.mem = ffi.new("uint8_t[]", b"".join(bytes(b) for b in blocks))
        self.ring = lib.vs_ring_wrap(self.mem, version, self.size, len(blocks), vnet_len)
        assert self.ring != ffi.NULL

    def close(self) -> None:
        lib.vs_ring_detach(self.ring)  # leaves self.mem alone: not mapped by the ring

    def status(self, i: int, version: int = 3) -> int:
        off = i * self.size + (8 if version == 3 else 0)
        return struct.unpack_from("<I", ffi.buffer(self.mem), off)[0]

    def put(self, i: int, blk: bytearray) -> None:
        ffi.buffer(self.mem)[i * self.size:(i + 1) * self.size] = bytes(blk)

    def read(self, max_frames: int = 32) -> tuple[list[dict], int]:
        out = ffi.new("struct vs_ring_frame[]", max(max_frames, 1))
        rel = ffi.new("uint32_t *")
        n = lib.vs_ring_read(self.ring, out, max_frames, rel)
        assert n >= 0
        frames = []
        for i in range(n):
            f = out[i]
            frames.append({
                "data": bytes(ffi.buffer(f.data, f.len)), "len": f.len, "wire_len": f.wire_len,
                "vnet": bytes(ffi.buffer(f.vnet, VNET)) if f.vnet != ffi.NULL else None,
            })
        return frames, int(rel[0])


@pytest.fixture
def rings():
    made: list[Ring] = []

    def make(*a, **kw) -> Ring:
        r = Ring(*a, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_v3_block_frames_come_out_in_order_with_their_vnet_headers(rings) -> None:
    vh = vnet(flags=1, csum_start=34, csum_offset=6)
    fs = [Frame(frame(i), vh if i == 1 else bytes(VNET)) for i in range(3)]
    r = rings(3, [v3_block(8192, fs), v3_block(8192, [], status=TP_STATUS_KERNEL)])
    got, rel = r.read()
    assert rel == 0
    assert [g["data"] for g in got] == [f.data for f in fs]
    assert got[1]["vnet"] == vh and got[0]["vnet"] == bytes(VNET)
    # The burst's block stays ours until the next read (frames are sent
    # straight from the ring), then goes back to the kernel.
    assert r.status(0) & TP_STATUS_USER
    got, rel = r.read()
    assert (got, rel) == ([], 1)
    assert r.status(0) == TP_STATUS_KERNEL


def test_v3_burst_limit_and_bursts_spanning_blocks(rings) -> None:
    b0 = [Frame(frame(i)) for i in range(3)]
    b1 = [Frame(frame(10 + i)) for i in range(2)]
    r = rings(3, [v3_block(4096, b0), v3_block(4096, b1), v3_block(4096, [], TP_STATUS_KERNEL)])
    got, _ = r.read(2)
    assert [g["data"] for g in got] == [f.data for f in b0[:2]]
    got, rel = r.read(2)
    assert rel == 0 and [g["data"] for g in got] == [b0[2].data, b1[0].data]
    assert r.status(0) & TP_STATUS_USER  # still referenced by that burst
    got, rel = r.read(2)
    assert rel == 1 and [g["data"] for g in got] == [b1[1].data]
    assert r.status(0) == TP_STATUS_KERNEL
    got, rel = r.read(2)
    assert (got, rel) == ([], 1) and r.status(1) == TP_STATUS_KERNEL
    # The ring wraps: block 0 refilled by the "kernel" is read next... after
    # block 2, which the kernel has not handed over yet: nothing.
    r.put(0, v3_block(4096, [Frame(frame(99))]))
    assert r.read() == ([], 0)


def test_v3_truncated_frame_is_reported_not_hidden(rings) -> None:
    big = Frame(frame(1, 200), wire_len=65000)
    r = rings(3, [v3_block(4096, [big, Frame(frame(2))])])
    got, _ = r.read()
    assert (got[0]["len"], got[0]["wire_len"]) == (214, 65000)  # the worker drops it
    assert got[1]["len"] == got[1]["wire_len"]
    st = ffi.new("struct vs_ring_stats *")
    lib.vs_ring_get_stats(r.ring, st)  # a wrapped ring has no socket: no kernel_* counts
    assert (st.frames, st.truncated, st.kernel_packets) == (2, 1, 0)


def test_v3_stripped_vlan_tag_is_put_back_and_offsets_follow(rings) -> None:
    vh = vnet(flags=1, gso_type=1, hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16)
    status = TP_STATUS_USER | TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID
    f = Frame(frame(5), vh, status=status, tci=0x2064, tpid=0x8100)
    r = rings(3, [v3_block(4096, [f])])
    got, _ = r.read()
    assert got[0]["data"] == f.data[:12] + b"\x81\x00\x20\x64" + f.data[12:]
    assert got[0]["len"] == got[0]["wire_len"] == len(f.data) + 4
    assert got[0]["vnet"] == vnet(flags=1, gso_type=1, hdr_len=58, gso_size=1448,
                                  csum_start=38, csum_offset=16)


def test_v3_corrupt_frame_ends_the_block_without_reading_past_it(rings) -> None:
    r = rings(3, [v3_block(4096, [Frame(frame(1))], corrupt_mac=60000)])
    assert r.read() == ([], 0)
    assert r.read() == ([], 1)  # the block still goes back


def test_v2_slots(rings) -> None:
    fs = [Frame(frame(i)) for i in range(3)]
    r = rings(2, [v2_slot(4096, f) for f in fs] + [v2_slot(4096, None)])
    got, rel = r.read(2)
    assert rel == 0 and [g["data"] for g in got] == [fs[0].data, fs[1].data]
    got, rel = r.read(2)
    assert rel == 2 and [g["data"] for g in got] == [fs[2].data]
    assert r.status(0, 2) == r.status(1, 2) == TP_STATUS_KERNEL
    assert r.status(2, 2) & TP_STATUS_USER
    assert r.read() == ([], 1)
    assert r.status(2, 2) == TP_STATUS_KERNEL


def test_wrap_refuses_unknown_versions() -> None:
    mem = ffi.new("uint8_t[]", 4096)
    assert lib.vs_ring_wrap(mem, 1, 4096, 1, VNET) == ffi.NULL


def test_attach_refused_leaves_the_socket_as_it_was() -> None:
    # A socket that is not AF_PACKET never gets a ring, and the refusal
    # leaves it readable: the port falls back to recvmmsg.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with pytest.raises(OSError):
            fastpath.Ring.attach(a.fileno(), VNET)
        b.send(b"x")
        assert a.recv(10) == b"x"
    finally:
        a.close()
        b.close()


def packet_socket_or_skip() -> socket.socket:
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing
    except PermissionError:
        pytest.skip("AF_PACKET needs CAP_NET_RAW")


def test_attached_ring_is_an_object_owned_by_the_caller() -> None:
    sock = packet_socket_or_skip()
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        ring = fastpath.Ring.attach(sock.fileno(), VNET, version=2)
        assert ring.attached and ring.version == 2
        assert ring.stats() == dict.fromkeys(fastpath.RING_STATS, 0)
        # One ring per socket: the kernel refuses a second.
        with pytest.raises(OSError):
            fastpath.Ring.attach(sock.fileno(), VNET)
        ring.detach()
        ring.detach()  # idempotent
        assert not ring.attached
        with pytest.raises(fastpath.FastpathError, match="after detach"):
            ring.stats()
    finally:
        sock.close()


def test_worker_reads_a_packet_port_from_the_ring_in_its_params(rings) -> None:
    # The switch reaches a queue's ring through the published port params,
    # not through the fd: frames in the ring are forwarded first, and the
    # socket itself is read only when the ring has nothing.
    fs = [Frame(frame(i)) for i in (2, 3)]   # sources other than frame()'s destination
    r = rings(3, [v3_block(4096, fs), v3_block(4096, [], TP_STATUS_KERNEL)])
    ring = fastpath.Ring(r.ring)   # the fixture frees it
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(2)]
    sw = fastpath.Switch(0, None, 64)
    try:
        for a, b in pairs:
            a.setblocking(False)
            b.setblocking(False)
        pairs[0][1].send(bytes(VNET) + frame(7))  # on the socket, not in the ring
        sw.publish([
            fastpath.PortParams(id=0, fds=(pairs[0][0].fileno(),), kind="packet",
                                vnet_hdr_len=VNET, rings=(ring,)),
            fastpath.PortParams(id=1, fds=(pairs[1][0].fileno(),), kind="packet",
                                vnet_hdr_len=VNET),
        ])
        assert sw.poll_once(1000) == 2
        got = [pairs[1][1].recv(2048)[VNET:] for _ in fs]
        assert got == [f.data for f in fs]
        assert ring.stats()["frames"] == 2
        # Woken with the ring empty: one recvmmsg() takes what the socket holds.
        assert sw.poll_once(1000) == 1
        assert pairs[1][1].recv(2048)[VNET:] == frame(7)
        # A TAP-style port cannot carry a ring: it would never be read.
        with pytest.raises(fastpath.FastpathError):
            sw.publish([fastpath.PortParams(id=0, fds=(pairs[0][0].fileno(),), rings=(ring,))])
    finally:
        sw.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_release_returns_read_blocks_at_once(rings) -> None:
    # The worker copies small frames out and hands their blocks back right
    # away, instead of at the next read (which would cost a wakeup).
    r = rings(3, [v3_block(4096, [Frame(frame(1))]), v3_block(4096, [Frame(frame(2))])])
    got, _ = r.read(1)
    assert len(got) == 1 and r.status(0) & TP_STATUS_USER
    lib.vs_ring_release(r.ring)
    assert r.status(0) == TP_STATUS_KERNEL and r.status(1) & TP_STATUS_USER
    got, rel = r.read()
    assert rel == 0 and [g["data"] for g in got] == [frame(2)]
    r2 = rings(2, [v2_slot(4096, Frame(frame(3))), v2_slot(4096, None)])
    assert len(r2.read()[0]) == 1
    lib.vs_ring_release(r2.ring)
    assert r2.status(0, 2) == TP_STATUS_KERNEL
    assert r2.read() == ([], 0)


def kernel_packets_at_least(ring: fastpath.Ring, n: int, timeout_s: float = 2.0) -> int:
    """Reads the ring's kernel_packets until it reaches ``n`` (loopback
    frames are delivered from softirq, maybe just after send returns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = ring.stats()["kernel_packets"]
        if got >= n or time.monotonic() >= deadline:
            return got
        time.sleep(0.01)


def test_kernel_counts_keep_adding_up_though_each_read_resets_the_kernels() -> None:
    # PACKET_STATISTICS zeroes the socket's counts on every read: the ring
    # keeps the running total, or `vswitchctl show` would make the next
    # scrape's counters go backwards.
    sock = packet_socket_or_skip()
    try:
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        ring = fastpath.Ring.attach(sock.fileno(), VNET, version=3)
        try:
            assert ring.version == 3
            sock.bind(("lo", ETH_P_ALL))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                for _ in range(5):
                    udp.sendto(b"x", ("127.0.0.1", 9))
                first = kernel_packets_at_least(ring, 5)
                assert first >= 5
                for _ in range(3):
                    udp.sendto(b"x", ("127.0.0.1", 9))
                # Reset-on-read without the ring's total would give about 3 here.
                assert kernel_packets_at_least(ring, first + 3) >= first + 3
            assert ring.stats()["kernel_drops"] == 0
        finally:
            ring.detach()
    finally:
        sock.close()


def test_rx_ring_report_names_the_path_the_queues_got() -> None:
    stats = dict.fromkeys(fastpath.RING_STATS, 0)
    assert ringstats.RxRingReport((3, 3), (stats, stats)).path == "v3"
    assert ringstats.RxRingReport((2,), (stats,)).path == "v2"
    # Asked for a ring, refused by the kernel: recvmmsg, and shown as such.
    off = ringstats.RxRingReport((None, None), (None, None))
    assert off.path == "off" and not off.has_ring and off.totals is None
    assert ringstats.RxRingReport((3, None), (stats, None)).path == "mixed"
    assert ringstats.RxRingReport((), ()).path == "off"


def test_rx_ring_report_sums_real_ring_counters_over_the_queues(rings) -> None:
    big = Frame(frame(2), wire_len=9000)          # clamped by the kernel
    q0 = rings(3, [v3_block(4096, [Frame(frame(1)), big]),
                   v3_block(4096, [], TP_STATUS_KERNEL)])
    q1 = rings(3, [v3_block(4096, [Frame(frame(3), tci=5, status=TP_STATUS_USER
                                         | TP_STATUS_VLAN_VALID)]),
                   v3_block(4096, [], TP_STATUS_KERNEL)])
    q0.read()
    q1.read()
    queues = [fastpath.Ring(q0.ring), None, fastpath.Ring(q1.ring)]  # the fixture frees them
    report = ringstats.read(queues)
    assert report.versions == (3, None, 3) and report.path == "mixed"
    # Wrapped rings have no socket: no kernel_* counts.
    assert report.totals == {"blocks": 2, "frames": 3, "truncated": 1, "vlan_restored": 1,
                             "kernel_packets": 0, "kernel_drops": 0, "kernel_freezes": 0}
    shown = report.to_json()
    assert shown["rx_ring"] == "mixed" and shown["rx_ring_stats"] == report.totals
    assert [q["rx_ring"] for q in shown["rx_ring_queues"]] == ["v3", "off", "v3"]
    assert shown["rx_ring_queues"][0]["frames"] == 2
    assert shown["rx_ring_queues"][1] == {"rx_ring": "off"}
