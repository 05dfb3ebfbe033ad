"""A hostile guest: a front end that sets up properly, then lies in its rings.

Issue 12: "the guest is untrusted".  Each attack here takes a started
`VirtioNetFrontend` (the connection and memory table are well-formed, so
the back end has mapped our memory and is reading our rings) and writes
something a correct driver never would, then kicks.  A back end must check
every address and length against the memory table, bound every chain, and
validate every virtio-net header -- and drop, count, and keep running.

Attacks on the tx queue (the device reads) corrupt descriptors, chains,
the avail ring or the headers; attacks on the rx queue (the device writes)
offer buffers the device must not write into, and need a frame delivered to
the port to fire (`needs_rx_traffic`).  Frame-content attacks (bad headers)
leave the rings intact, so after them a good frame on the same queue must
still be forwarded (`rings_intact`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.vhostuser.frontend import NET_HDR, NET_HDR_F_NEEDS_CSUM, RXQ, TXQ, VirtioNetFrontend
from tests.vhostuser.virtq import DESC, DESC_F_INDIRECT, DESC_F_NEXT, DESC_F_WRITE, SplitQueue

GSO_TCPV4 = 1


def hostile_frame(src_last: int = 0xEE) -> bytes:
    """A 64-byte broadcast from the hostile guest (what a good header would carry)."""
    return bytes.fromhex("ffffffffffff") + bytes([2, 0, 0, 0, 0xFE, src_last]) + b"\x08\x00" \
        + bytes(50)


@dataclass(frozen=True)
class Attack:
    name: str
    run: Callable[[VirtioNetFrontend], None]
    # Drop reasons (`vswitchctl stats`) a correct back end may count this as:
    # the vhost branch's vs_counters.h names plus the existing header reasons.
    expect: frozenset[str] = frozenset()
    needs_rx_traffic: bool = False     # fires when a frame is delivered to the port
    rings_intact: bool = False         # only frame contents are bad


# Helpers: memory geometry and writing a one-shot chain on the tx queue.


def _txq(fe: VirtioNetFrontend) -> SplitQueue:
    return fe.queues[TXQ]


def _end(fe: VirtioNetFrontend) -> int:
    """First guest-physical address past the memory table."""
    assert fe.mem is not None
    return fe.mem.gpa_base + fe.mem.size


def _buf_gpa(q: SplitQueue, i: int) -> int:
    return q.mem.gpa(q.buf_off[i])


def _good_packet(q: SplitQueue, i: int) -> int:
    """Put header + frame in descriptor i's buffer; returns its length."""
    data = NET_HDR.pack(0, 0, 0, 0, 0, 0, 0) + hostile_frame()
    q.mem.write(q.buf_off[i], data)
    return len(data)


def _publish_and_kick(fe: VirtioNetFrontend, head: int = 0) -> None:
    q = _txq(fe)
    q.free = [d for d in q.free if d != head]
    q.publish(head)
    fe.kick(TXQ)


def _one_desc(fe: VirtioNetFrontend, addr: int, length: int, flags: int = 0,
              nxt: int = 0) -> None:
    _txq(fe).write_desc(0, addr, length, flags, nxt)
    _publish_and_kick(fe)


# Descriptors that point where they must not.


def addr_beyond_memory(fe: VirtioNetFrontend) -> None:
    _one_desc(fe, _end(fe) + 0x10000, 76)


def addr_zero_below_memory(fe: VirtioNetFrontend) -> None:
    _one_desc(fe, 0, 76)


def addr_straddles_end(fe: VirtioNetFrontend) -> None:
    _one_desc(fe, _end(fe) - 16, 76)


def addr_wraps_64_bits(fe: VirtioNetFrontend) -> None:
    _one_desc(fe, 0xFFFFFFFFFFFFFF00, 0x200)


def len_4_gib(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    _good_packet(q, 0)
    _one_desc(fe, _buf_gpa(q, 0), 0xFFFFFFFF)


def shorter_than_net_header(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    _one_desc(fe, _buf_gpa(q, 0), 4)


# Chains.


def chain_loops(fe: VirtioNetFrontend) -> None:
    """0 -> 1 -> 0 -> ...: a back end that follows `next` without a bound spins forever."""
    q = _txq(fe)
    n = _good_packet(q, 0)
    q.write_desc(0, _buf_gpa(q, 0), n, DESC_F_NEXT, 1)
    q.write_desc(1, _buf_gpa(q, 1), 64, DESC_F_NEXT, 0)
    _publish_and_kick(fe)


def chain_longer_than_ring(fe: VirtioNetFrontend) -> None:
    """Every descriptor chained to the next, the last back to the first."""
    q = _txq(fe)
    n = _good_packet(q, 0)
    for i in range(q.size):
        q.write_desc(i, _buf_gpa(q, i), n if i == 0 else 16, DESC_F_NEXT, (i + 1) % q.size)
    _publish_and_kick(fe)


def next_beyond_ring(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    n = _good_packet(q, 0)
    q.write_desc(0, _buf_gpa(q, 0), n, DESC_F_NEXT, q.size + 3)
    _publish_and_kick(fe)


def head_beyond_ring(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    q.write_avail_slot(q.avail_idx, q.size + 7)
    q.avail_idx = (q.avail_idx + 1) & 0xFFFF
    q.write_avail_idx(q.avail_idx)
    fe.kick(TXQ)


def avail_idx_jumps_past_ring(fe: VirtioNetFrontend) -> None:
    """avail->idx claims more buffers than the ring has entries."""
    q = _txq(fe)
    q.write_avail_idx(q.avail_idx + q.size + 10)
    fe.kick(TXQ)


def writable_desc_on_tx(fe: VirtioNetFrontend) -> None:
    """A device-writable descriptor where the device only reads."""
    q = _txq(fe)
    n = _good_packet(q, 0)
    _one_desc(fe, _buf_gpa(q, 0), n, DESC_F_WRITE)


# Indirect tables.


def _indirect(fe: VirtioNetFrontend, table: list[tuple[int, int, int, int]],
              table_len: int | None = None, table_addr: int | None = None) -> None:
    q = _txq(fe)
    raw = b"".join(DESC.pack(*d) for d in table)
    q.mem.write(q.buf_off[1], raw)
    addr = _buf_gpa(q, 1) if table_addr is None else table_addr
    _one_desc(fe, addr, len(raw) if table_len is None else table_len, DESC_F_INDIRECT)


def indirect_table_beyond_memory(fe: VirtioNetFrontend) -> None:
    _indirect(fe, [], table_len=32, table_addr=_end(fe) + 0x1000)


def indirect_nested(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    _indirect(fe, [(_buf_gpa(q, 2), 32, DESC_F_INDIRECT, 0)])


def indirect_entry_beyond_memory(fe: VirtioNetFrontend) -> None:
    _indirect(fe, [(_end(fe) + 0x2000, 76, 0, 0)])


def indirect_loops(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    n = _good_packet(q, 0)
    _indirect(fe, [(_buf_gpa(q, 0), n, DESC_F_NEXT, 1), (_buf_gpa(q, 2), 16, DESC_F_NEXT, 0)])


def indirect_len_not_multiple_of_16(fe: VirtioNetFrontend) -> None:
    q = _txq(fe)
    n = _good_packet(q, 0)
    _indirect(fe, [(_buf_gpa(q, 0), n, 0, 0)], table_len=17)


# Bad virtio-net headers (the rings stay well-formed).


def _bad_header(fe: VirtioNetFrontend, hdr: bytes, frame: bytes | None = None) -> None:
    assert fe.send([frame or hostile_frame()] * 4, hdr=hdr) == 4


def gso_type_garbage(fe: VirtioNetFrontend) -> None:
    _bad_header(fe, NET_HDR.pack(0, 0x55, 54, 1448, 0, 0, 0))


def gso_hdr_len_beyond_frame(fe: VirtioNetFrontend) -> None:
    _bad_header(fe, NET_HDR.pack(NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, 9000, 1448, 34, 16, 0))


def csum_start_beyond_frame(fe: VirtioNetFrontend) -> None:
    _bad_header(fe, NET_HDR.pack(NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 5000, 16, 0))


def gso_size_zero(fe: VirtioNetFrontend) -> None:
    _bad_header(fe, NET_HDR.pack(NET_HDR_F_NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16, 0))


# The rx queue: buffers the device must not write into.


def rx_buffers_beyond_memory(fe: VirtioNetFrontend) -> None:
    q = fe.queues[RXQ]
    for i in range(q.size):
        q.write_desc(i, _end(fe) + 0x1000 * i, 2048, DESC_F_WRITE)
    fe.kick(RXQ)


def rx_buffers_read_only(fe: VirtioNetFrontend) -> None:
    q = fe.queues[RXQ]
    for i in range(q.size):
        q.write_desc(i, _buf_gpa(q, i), 2048, 0)
    fe.kick(RXQ)


OOB = frozenset({"vhost_desc_oob"})
BAD = frozenset({"vhost_desc_bad"})
LOOP = frozenset({"vhost_desc_loop"})
BROKEN = frozenset({"vhost_ring_broken"})
HDR = frozenset({"bad_vnet_hdr", "unsupported_gso"})

ATTACKS: tuple[Attack, ...] = (
    Attack("addr_beyond_memory", addr_beyond_memory, OOB),
    Attack("addr_zero_below_memory", addr_zero_below_memory, OOB),
    Attack("addr_straddles_end", addr_straddles_end, OOB),
    Attack("addr_wraps_64_bits", addr_wraps_64_bits, OOB),
    Attack("len_4_gib", len_4_gib, OOB | {"vhost_desc_too_long"}),
    Attack("shorter_than_net_header", shorter_than_net_header, BAD | {"runt", "bad_vnet_hdr"}),
    # A back end that caps the pieces of one frame (vswitchd: 64) stops a loop
    # there, before the ring-size bound, and counts it as a malformed chain.
    Attack("chain_loops", chain_loops, LOOP | BAD),
    Attack("chain_longer_than_ring", chain_longer_than_ring,
           LOOP | BAD | {"vhost_desc_too_long"}),
    Attack("next_beyond_ring", next_beyond_ring, BAD | LOOP | BROKEN),
    Attack("head_beyond_ring", head_beyond_ring, BAD | BROKEN),
    Attack("avail_idx_jumps_past_ring", avail_idx_jumps_past_ring, BROKEN),
    Attack("writable_desc_on_tx", writable_desc_on_tx, BAD),
    Attack("indirect_table_beyond_memory", indirect_table_beyond_memory, OOB | BAD),
    Attack("indirect_nested", indirect_nested, BAD),
    Attack("indirect_entry_beyond_memory", indirect_entry_beyond_memory, OOB | BAD),
    Attack("indirect_loops", indirect_loops, LOOP | BAD),
    Attack("indirect_len_not_multiple_of_16", indirect_len_not_multiple_of_16, BAD),
    Attack("gso_type_garbage", gso_type_garbage, HDR, rings_intact=True),
    Attack("gso_hdr_len_beyond_frame", gso_hdr_len_beyond_frame, HDR, rings_intact=True),
    Attack("csum_start_beyond_frame", csum_start_beyond_frame, HDR, rings_intact=True),
    Attack("gso_size_zero", gso_size_zero, HDR, rings_intact=True),
    Attack("rx_buffers_beyond_memory", rx_buffers_beyond_memory,
           OOB | BAD | {"vhost_no_buffers", "tx_error"}, needs_rx_traffic=True),
    Attack("rx_buffers_read_only", rx_buffers_read_only,
           BAD | {"vhost_no_buffers", "tx_error"}, needs_rx_traffic=True),
)
BY_NAME = {a.name: a for a in ATTACKS}
