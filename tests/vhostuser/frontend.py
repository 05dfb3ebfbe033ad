"""A virtio-net front end over vhost-user: the guest's driver, in Python, for tests.

`VirtioNetFrontend` does what QEMU plus a guest's virtio-net driver do to
a vhost-user back end (a switch port, dpdk-testpmd's net_vhost): it connects
to the back end's unix socket (or listens for a back end in client mode),
negotiates features and protocol features, hands over its memory with
SET_MEM_TABLE, sets up an rx queue (0) and a tx queue (1), and then sends
frames on tx and collects frames from rx.  It is slow (Python per frame) and
meant for correctness tests, not load: load comes from dpdk-testpmd.

Message order follows QEMU's (FACTS.md): GET_FEATURES, GET/SET_PROTOCOL_FEATURES,
GET_QUEUE_NUM, SET_OWNER, then SET_FEATURES, SET_MEM_TABLE and per queue
SET_VRING_NUM/BASE/ADDR/KICK/CALL, SET_VRING_ENABLE, SET_STATUS(DRIVER_OK);
GET_VRING_BASE on stop.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from tests.vhostuser import protocol as p
from tests.vhostuser.protocol import Feature, ProtocolFeature, Req
from tests.vhostuser.virtq import GuestMemory, SplitQueue

RXQ, TXQ = 0, 1
NET_HDR = struct.Struct("<BBHHHHH")   # flags, gso_type, hdr_len, gso_size, csum_start/offset,
#                                       num_buffers (the 12-byte VERSION_1 / MRG_RXBUF header)
NET_HDR_F_NEEDS_CSUM = 1
GSO_NONE = 0
PLAIN_HDR = NET_HDR.pack(0, GSO_NONE, 0, 0, 0, 0, 0)

# What this driver can do at all; `Options` picks from it.
PROTOCOL_WANTED = p.bits(ProtocolFeature.MQ, ProtocolFeature.REPLY_ACK, ProtocolFeature.STATUS)


@dataclass(frozen=True)
class Options:
    """What the driver asks for. Bits the back end does not offer are not negotiated."""

    mrg_rxbuf: bool = True
    event_idx: bool = False
    indirect: bool = False          # INDIRECT_DESC (only the hostile driver writes tables)
    offloads: bool = False          # CSUM/GUEST_CSUM/TSO: asked for, never generated here
    reply_ack: bool = True
    queue_size: int = 256
    mem_size: int = 16 << 20
    rx_buf_len: int = 2048          # bytes offered per rx descriptor (small: frames merge)


@dataclass(frozen=True)
class Negotiated:
    offered: int
    features: int
    protocol_offered: int
    protocol: int
    queue_num: int | None

    def has(self, bit: int) -> bool:
        return bool(self.features >> bit & 1)

    def has_protocol(self, bit: int) -> bool:
        return bool(self.protocol >> bit & 1)


class BackendRefused(Exception):
    """A REPLY_ACK came back non-zero, or the back end lacks a required feature."""


def _connect(path: str, timeout_s: float) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _accept(path: str, timeout_s: float) -> socket.socket:
    """Client mode of the back end: we are the server, like QEMU's `server=on`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lsock:
        if os.path.exists(path):
            os.unlink(path)
        lsock.bind(path)
        lsock.listen(1)
        lsock.settimeout(timeout_s)
        try:
            conn, _ = lsock.accept()
        finally:
            os.unlink(path)
        conn.settimeout(None)
        return conn


class VirtioNetFrontend:
    """One virtio-net device with one queue pair, driven over one vhost-user socket."""

    def __init__(self, path: str, opts: Options | None = None, listen: bool = False) -> None:
        self.path = path
        self.opts = opts or Options()
        self.listen = listen
        self.chan: p.Channel | None = None
        self.mem: GuestMemory | None = None
        self.queues: list[SplitQueue] = []
        self.kick_fds: list[int] = []
        self.call_fds: list[int] = []
        self.neg: Negotiated | None = None
        self.tx_frames = 0
        self.rx_frames = 0

    # Lifecycle.

    def start(self, timeout_s: float = 10.0) -> Negotiated:
        """Connect (or accept), negotiate and bring both queues up."""
        self._open(timeout_s)
        assert self.neg is not None
        self.allocate(self.neg.has(Feature.RING_EVENT_IDX))
        # Offer rx buffers before the device can start, as a guest driver does.
        rxq = self.queues[RXQ]
        while rxq.add_buffer(writable=True, length=self.opts.rx_buf_len) is not None:
            pass
        self._bring_up({q.index: 0 for q in self.queues})
        return self.neg

    def reconnect(self, timeout_s: float = 10.0) -> Negotiated:
        """The back end went away (restart): connect again, keeping memory and rings.

        As QEMU does after a back-end restart, each queue resumes at its used
        index: what the old back end took but never returned is offered again."""
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        self.neg = None
        self._open(timeout_s)
        self._bring_up({q.index: q.used_idx() for q in self.queues})
        assert self.neg is not None
        return self.neg

    def _open(self, timeout_s: float) -> None:
        sock = _accept(self.path, timeout_s) if self.listen else _connect(self.path, timeout_s)
        sock.settimeout(timeout_s)
        self.chan = p.Channel(sock)
        self.neg = self._negotiate()

    def _bring_up(self, bases: dict[int, int]) -> None:
        assert self.mem is not None and self.neg is not None
        self._set(Req.SET_FEATURES, p.u64(self.neg.features))
        region = p.MemRegion(self.mem.gpa_base, self.mem.size, self.mem.va_base, 0)
        self._set(Req.SET_MEM_TABLE, p.mem_table_payload([region]), (self.mem.fd,))
        for q in self.queues:
            self.setup_queue(q, bases[q.index])
        if self.neg.has(Feature.PROTOCOL_FEATURES):
            for q in self.queues:
                self._set(Req.SET_VRING_ENABLE, p.vring_state(q.index, 1))
        if self.neg.has_protocol(ProtocolFeature.STATUS):
            self._set(Req.SET_STATUS, p.u64(p.STATUS_ACKNOWLEDGE | p.STATUS_DRIVER
                                            | p.STATUS_FEATURES_OK | p.STATUS_DRIVER_OK))
        self.kick(RXQ)

    def allocate(self, event_idx: bool = False) -> None:
        """Guest memory, both queues and their eventfds (no back end needed: unit
        tests call this alone to look at what the driver writes)."""
        self.mem = GuestMemory(self.opts.mem_size)
        self.queues = [SplitQueue(self.mem, i, self.opts.queue_size, event_idx=event_idx)
                       for i in (RXQ, TXQ)]
        self.kick_fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in self.queues]
        self.call_fds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in self.queues]

    def setup_queue(self, q: SplitQueue, base: int = 0) -> None:
        desc, used, avail = q.addresses()
        self._set(Req.SET_VRING_NUM, p.vring_state(q.index, q.size))
        self._set(Req.SET_VRING_BASE, p.vring_state(q.index, base))
        self._set(Req.SET_VRING_ADDR, p.vring_addr(q.index, desc, used, avail))
        self._set(Req.SET_VRING_KICK, p.u64(q.index), (self.kick_fds[q.index],))
        self._set(Req.SET_VRING_CALL, p.u64(q.index), (self.call_fds[q.index],))

    def stop(self) -> list[int]:
        """GET_VRING_BASE on each queue (the back end stops it); returns the bases."""
        bases = []
        if self.chan is not None:
            for q in self.queues:
                try:
                    reply = self.chan.call(Req.GET_VRING_BASE, p.vring_state(q.index, 0))
                    bases.append(struct.unpack_from("<II", reply.payload)[1])
                except (OSError, p.ProtocolError):
                    break
        return bases

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()
            self.chan = None
        for fd in self.kick_fds + self.call_fds:
            os.close(fd)
        self.kick_fds, self.call_fds = [], []
        if self.mem is not None:
            self.mem.close()
            self.mem = None

    def __enter__(self) -> VirtioNetFrontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Negotiation.

    def wanted_features(self) -> int:
        o = self.opts
        want = p.bits(Feature.VERSION_1, Feature.PROTOCOL_FEATURES, Feature.NET_MAC)
        if o.mrg_rxbuf:
            want |= p.bits(Feature.NET_MRG_RXBUF)
        if o.event_idx:
            want |= p.bits(Feature.RING_EVENT_IDX)
        if o.indirect:
            want |= p.bits(Feature.RING_INDIRECT_DESC)
        if o.offloads:
            want |= p.bits(Feature.NET_CSUM, Feature.NET_GUEST_CSUM, Feature.NET_HOST_TSO4,
                           Feature.NET_HOST_TSO6, Feature.NET_GUEST_TSO4, Feature.NET_GUEST_TSO6)
        return want

    def _negotiate(self) -> Negotiated:
        assert self.chan is not None
        offered = self.chan.call(Req.GET_FEATURES).as_u64()
        if not offered >> Feature.VERSION_1 & 1:
            raise BackendRefused(f"back end does not offer VERSION_1 (features {offered:#x})")
        features = offered & self.wanted_features()
        proto_offered = proto = 0
        queue_num = None
        if features >> Feature.PROTOCOL_FEATURES & 1:
            proto_offered = self.chan.call(Req.GET_PROTOCOL_FEATURES).as_u64()
            proto = proto_offered & PROTOCOL_WANTED
            if not self.opts.reply_ack:
                proto &= ~p.bits(ProtocolFeature.REPLY_ACK)
            # REPLY_ACK is not in force yet for this very message.
            self.chan.send(Req.SET_PROTOCOL_FEATURES, p.u64(proto))
            if proto >> ProtocolFeature.MQ & 1:
                queue_num = self.chan.call(Req.GET_QUEUE_NUM).as_u64()
        self.neg = Negotiated(offered, features, proto_offered, proto, queue_num)
        self._set(Req.SET_OWNER)
        return self.neg

    def _set(self, request: int, payload: bytes = b"", fds: tuple[int, ...] = ()) -> None:
        """Send a request without a reply of its own; with REPLY_ACK, wait for its ack."""
        assert self.chan is not None
        ack = self.neg is not None and self.neg.has_protocol(ProtocolFeature.REPLY_ACK)
        self.chan.send(request, payload, fds, need_reply=ack)
        if ack:
            reply = self.chan.recv()
            if reply.request != request:
                raise p.ProtocolError(f"ack for request {reply.request}, expected {request}")
            if reply.as_u64() != 0:
                raise BackendRefused(f"{Req(request).name} refused: {reply.as_u64():#x}")

    # Frames.

    def kick(self, qi: int) -> None:
        os.eventfd_write(self.kick_fds[qi], 1)

    def send(self, frames: list[bytes], hdr: bytes = PLAIN_HDR) -> int:
        """Queue frames on tx (each behind `hdr`); returns how many fit in the ring."""
        txq = self.queues[TXQ]
        txq.poll_used()
        sent = 0
        for frame in frames:
            if txq.add_buffer(hdr + frame) is None:
                break
            sent += 1
        if sent and txq.needs_kick():
            self.kick(TXQ)
        self.tx_frames += sent
        return sent

    def send_all(self, frames: list[bytes], timeout_s: float = 5.0,
                 hdr: bytes = PLAIN_HDR) -> int:
        """Send every frame, waiting for the back end to free descriptors as needed."""
        deadline = time.monotonic() + timeout_s
        done = 0
        while done < len(frames) and time.monotonic() < deadline:
            n = self.send(frames[done:], hdr)
            done += n
            if not n:
                self.kick(TXQ)
                time.sleep(0.001)
        return done

    def tx_completed(self) -> bool:
        """Has the back end returned every tx buffer?"""
        txq = self.queues[TXQ]
        txq.poll_used()
        return txq.in_flight() == 0

    def recv(self, timeout_s: float = 1.0, want: int | None = None) -> list[bytes]:
        """Frames from rx (virtio-net header stripped) until `want` or `timeout_s`."""
        rxq = self.queues[RXQ]
        hdr_len = NET_HDR.size
        out: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        pending = b""
        left = 0          # buffers still to come for a merged frame (MRG_RXBUF)
        while True:
            got = rxq.poll_used()
            for ident, length in got:
                data = rxq.buffer(ident, length)
                if left:
                    pending += data
                    left -= 1
                else:
                    nbufs = NET_HDR.unpack_from(data)[6] if self.mergeable else 1
                    pending, left = data[hdr_len:], max(nbufs, 1) - 1
                if not left:
                    out.append(pending)
                    pending = b""
                rxq.add_buffer(writable=True, length=self.opts.rx_buf_len)
            if got and rxq.needs_kick():
                self.kick(RXQ)
            if want is not None and len(out) >= want:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not got:
                # Sleep on the call eventfd; poll anyway every 10 ms in case the
                # back end (a busy-polling testpmd) suppresses interrupts.
                select.select([self.call_fds[RXQ]], [], [], min(remaining, 0.01))
                try:
                    os.eventfd_read(self.call_fds[RXQ])
                except BlockingIOError:
                    pass
        self.rx_frames += len(out)
        return out

    @property
    def mergeable(self) -> bool:
        return self.neg is not None and self.neg.has(Feature.NET_MRG_RXBUF)
