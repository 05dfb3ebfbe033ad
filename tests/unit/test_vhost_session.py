"""The vhost-user codec and session state machine (vswitchd/vhost/), over a
socketpair with real fds and a fake device: no root, no workers."""

from __future__ import annotations

import os
import socket
import struct

import pytest

from vswitchd.vhost import features as F
from vswitchd.vhost.messages import (
    FLAG_REPLY,
    HEADER,
    MEM_HDR,
    MEM_REGION,
    U64,
    VRING_ADDR,
    VRING_STATE,
    ProtocolError,
    Req,
    encode_request,
    recv_message,
    send_with_fds,
)
from vswitchd.vhost.session import Session


class FakeDevice:
    """Hooks that record what the session asked for."""

    def __init__(self) -> None:
        self.session: Session | None = None
        self.running = 0
        self.stops = 0
        self.bases = {0: 7, 1: 9}

    def stop(self) -> dict[int, int]:
        if not self.running:
            return {}
        self.running = 0
        self.stops += 1
        return dict(self.bases)

    def reconcile(self) -> None:
        assert self.session is not None
        self.running = self.session.running_pairs()


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.settimeout(2)
    dev = FakeDevice()
    s = Session(name="t", max_pairs=2, offered=F.offered(True, True), hooks=dev)
    dev.session = s
    yield a, b, s, dev
    s.close()
    a.close()
    b.close()


def roundtrip(a: socket.socket, b: socket.socket, s: Session, req: int, payload: bytes = b"",
              fds: list[int] | None = None, need_reply: bool = False) -> bytes | None:
    send_with_fds(a, encode_request(req, payload, need_reply), fds or [])
    msg = recv_message(b)
    assert msg is not None
    for fd in fds or []:
        os.close(fd)        # the session holds its own copies
    return s.handle(msg)


def reply_u64(reply: bytes | None) -> int:
    assert reply is not None
    req, flags, size = HEADER.unpack_from(reply)
    assert flags & FLAG_REPLY and size == 8
    return int(U64.unpack_from(reply, HEADER.size)[0])


def start_pair(a, b, s, q: int) -> None:
    for v in (2 * q, 2 * q + 1):
        roundtrip(a, b, s, Req.SET_VRING_NUM, VRING_STATE.pack(v, 256))
        roundtrip(a, b, s, Req.SET_VRING_ADDR, VRING_ADDR.pack(v, 0, 0x1000, 0x3000, 0x2000, 0))
        roundtrip(a, b, s, Req.SET_VRING_KICK, U64.pack(v), fds=[os.eventfd(0)])
        roundtrip(a, b, s, Req.SET_VRING_CALL, U64.pack(v), fds=[os.eventfd(0)])
        roundtrip(a, b, s, Req.SET_VRING_ENABLE, VRING_STATE.pack(v, 1))


def negotiate(a, b, s) -> None:
    offered = reply_u64(roundtrip(a, b, s, Req.GET_FEATURES))
    assert offered & F.bit(F.F_PROTOCOL_FEATURES)
    roundtrip(a, b, s, Req.SET_FEATURES, U64.pack(offered))
    proto = reply_u64(roundtrip(a, b, s, Req.GET_PROTOCOL_FEATURES))
    roundtrip(a, b, s, Req.SET_PROTOCOL_FEATURES, U64.pack(proto))
    memfd = os.memfd_create("guest")
    os.ftruncate(memfd, 1 << 20)
    roundtrip(a, b, s, Req.SET_MEM_TABLE,
              MEM_HDR.pack(1, 0) + MEM_REGION.pack(0, 1 << 20, 0x1000, 0), fds=[memfd])


def test_features_offered_follow_the_offload_setting() -> None:
    assert not F.offered(False, False) & F.bit(F.NET_F_GUEST_CSUM)
    with_tso = F.offered(True, True)
    assert with_tso & F.bit(F.NET_F_GUEST_TSO4) and with_tso & F.bit(F.NET_F_HOST_TSO6)
    assert not F.offered(True, False) & F.bit(F.NET_F_HOST_TSO4)


def test_device_runs_once_a_pair_is_ready_and_enabled(pair) -> None:
    a, b, s, dev = pair
    negotiate(a, b, s)
    assert reply_u64(roundtrip(a, b, s, Req.GET_QUEUE_NUM)) == 2
    start_pair(a, b, s, 0)
    assert dev.running == 1
    start_pair(a, b, s, 1)
    assert dev.running == 2


def test_get_vring_base_stops_the_device_and_returns_its_index(pair) -> None:
    a, b, s, dev = pair
    negotiate(a, b, s)
    start_pair(a, b, s, 0)
    reply = roundtrip(a, b, s, Req.GET_VRING_BASE, VRING_STATE.pack(1, 0))
    assert reply is not None
    assert VRING_STATE.unpack_from(reply, HEADER.size) == (1, 9)
    assert dev.running == 0 and dev.stops == 1
    assert s.vrings[0].base == 7            # every ring's index was kept


def test_reply_ack_answers_need_reply(pair) -> None:
    a, b, s, dev = pair
    negotiate(a, b, s)
    assert reply_u64(roundtrip(a, b, s, Req.SET_OWNER, need_reply=True)) == 0
    assert reply_u64(roundtrip(a, b, s, 33, U64.pack(0), need_reply=True)) == 1  # unsupported


def test_features_not_offered_close_the_connection(pair) -> None:
    a, b, s, _ = pair
    with pytest.raises(ProtocolError, match="did not offer"):
        roundtrip(a, b, s, Req.SET_FEATURES, U64.pack(1 << 63))


def test_vring_index_out_of_range_is_a_protocol_error(pair) -> None:
    a, b, s, _ = pair
    with pytest.raises(ProtocolError, match="vring 9"):
        roundtrip(a, b, s, Req.SET_VRING_NUM, VRING_STATE.pack(9, 256))
    with pytest.raises(ProtocolError, match="power of two"):
        roundtrip(a, b, s, Req.SET_VRING_NUM, VRING_STATE.pack(0, 300))


def test_oversized_payload_is_refused(pair) -> None:
    a, b, _, _ = pair
    a.sendall(HEADER.pack(Req.SET_OWNER, 1, 1 << 20))
    with pytest.raises(ProtocolError, match="payload"):
        recv_message(b)


def test_mem_table_with_missing_fds_is_refused(pair) -> None:
    a, b, s, _ = pair
    with pytest.raises(ProtocolError, match="2 regions, 0 fds"):
        roundtrip(a, b, s, Req.SET_MEM_TABLE, MEM_HDR.pack(2, 0) + MEM_REGION.pack(0, 1, 2, 3)
                  + MEM_REGION.pack(0, 1, 2, 3))


def test_close_releases_every_fd(pair) -> None:
    a, b, s, _ = pair
    before = len(os.listdir("/proc/self/fd"))
    negotiate(a, b, s)
    start_pair(a, b, s, 0)
    assert len(os.listdir("/proc/self/fd")) > before
    s.close()
    assert len(os.listdir("/proc/self/fd")) == before


def test_short_vring_state_is_a_protocol_error(pair) -> None:
    a, b, s, _ = pair
    with pytest.raises(ProtocolError, match="short"):
        roundtrip(a, b, s, Req.SET_VRING_BASE, struct.pack("=I", 0))
