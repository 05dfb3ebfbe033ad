"""Vhost-user messages: the wire codec, with SCM_RIGHTS fd passing.

A message is a 12-byte header (request, flags, payload size; native byte
order, as the spec says) then the payload; the fds of SET_MEM_TABLE and
SET_VRING_KICK/CALL/ERR ride as ancillary data of the header's sendmsg().
"""

from __future__ import annotations

import array
import enum
import socket
import struct
from dataclasses import dataclass, field

HEADER = struct.Struct("=III")
VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8
MAX_PAYLOAD = 4096          # the largest request we accept (SET_MEM_TABLE is 264)
MAX_FDS = 8
VRING_STATE = struct.Struct("=II")
VRING_ADDR = struct.Struct("=IIQQQQ")
U64 = struct.Struct("=Q")
MEM_HDR = struct.Struct("=II")
MEM_REGION = struct.Struct("=QQQQ")
VRING_IDX_MASK = 0xFF
VRING_NOFD = 0x100


class Req(enum.IntEnum):
    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21
    GET_CONFIG = 24
    SET_CONFIG = 25
    GET_MAX_MEM_SLOTS = 36
    SET_STATUS = 39
    GET_STATUS = 40


class ProtocolError(Exception):
    """The front end sent something we cannot parse: close the connection."""


@dataclass
class Message:
    request: int
    flags: int
    payload: bytes
    fds: list[int] = field(default_factory=list)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & FLAG_NEED_REPLY)

    def name(self) -> str:
        try:
            return Req(self.request).name
        except ValueError:
            return f"request {self.request}"

    def u64(self) -> int:
        if len(self.payload) < U64.size:
            raise ProtocolError(f"{self.name()}: payload of {len(self.payload)} bytes, want 8")
        return int(U64.unpack_from(self.payload)[0])

    def vring_state(self) -> tuple[int, int]:
        if len(self.payload) < VRING_STATE.size:
            raise ProtocolError(f"{self.name()}: short vring state")
        index, num = VRING_STATE.unpack_from(self.payload)
        return int(index), int(num)

    def vring_addr(self) -> tuple[int, int, int, int, int]:
        """(index, flags, desc, used, avail) user addresses."""
        if len(self.payload) < VRING_ADDR.size:
            raise ProtocolError(f"{self.name()}: short vring address")
        index, flags, desc, used, avail, _log = VRING_ADDR.unpack_from(self.payload)
        return int(index), int(flags), int(desc), int(used), int(avail)

    def mem_regions(self) -> list[tuple[int, int, int, int]]:
        """(guest_phys_addr, size, userspace_addr, mmap_offset) per region."""
        if len(self.payload) < MEM_HDR.size:
            raise ProtocolError("SET_MEM_TABLE: short payload")
        n, _pad = MEM_HDR.unpack_from(self.payload)
        if n > MAX_FDS or len(self.payload) < MEM_HDR.size + n * MEM_REGION.size:
            raise ProtocolError(f"SET_MEM_TABLE: {n} regions in {len(self.payload)} bytes")
        return [tuple(int(v) for v in MEM_REGION.unpack_from(  # type: ignore[misc]
                    self.payload, MEM_HDR.size + i * MEM_REGION.size)) for i in range(n)]


def encode_reply(request: int, payload: bytes) -> bytes:
    return HEADER.pack(request, VERSION | FLAG_REPLY, len(payload)) + payload


def encode_request(request: int, payload: bytes = b"", need_reply: bool = False) -> bytes:
    """A front end's message (for tests and the hostile-guest peer)."""
    flags = VERSION | (FLAG_NEED_REPLY if need_reply else 0)
    return HEADER.pack(request, flags, len(payload)) + payload


def _close_all(fds: list[int]) -> None:
    import os
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def recv_message(sock: socket.socket) -> Message | None:
    """Reads one message from blocking (timed) `sock`; None at EOF.  Raises
    ProtocolError on a malformed message (its fds closed)."""
    fds = array.array("i")
    data, anc, _flags, _addr = sock.recvmsg(HEADER.size,
                                            socket.CMSG_SPACE(MAX_FDS * fds.itemsize))
    for level, ctype, cdata in anc:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - (len(cdata) % fds.itemsize)])
    if not data:
        _close_all(list(fds))
        return None
    if len(data) < HEADER.size:
        data += _recv_exact(sock, HEADER.size - len(data), list(fds))
    request, flags, size = HEADER.unpack(data)
    if size > MAX_PAYLOAD:
        _close_all(list(fds))
        raise ProtocolError(f"request {request}: payload of {size} bytes")
    payload = _recv_exact(sock, size, list(fds)) if size else b""
    return Message(request, flags, payload, list(fds))


def _recv_exact(sock: socket.socket, n: int, fds: list[int]) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            _close_all(fds)
            raise ProtocolError("connection closed inside a message")
        buf += chunk
    return buf


def send_with_fds(sock: socket.socket, data: bytes, fds: list[int]) -> None:
    """Sends `data` with `fds` as SCM_RIGHTS (front-end side, tests)."""
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sock.sendmsg([data], anc)
