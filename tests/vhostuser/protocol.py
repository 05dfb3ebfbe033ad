"""The vhost-user wire protocol as a front end (the driver side) speaks it.

QEMU's docs/interop/vhost-user.rst is the contract: every message is a
12-byte header (request u32, flags u32, payload size u32) and a payload,
little-endian, with file descriptors riding along as SCM_RIGHTS ancillary
data.  This module knows message numbers, payload layouts and how to send
and receive one message; it knows nothing about rings or memory (virtq.py)
nor about the order a driver sends them in (frontend.py).
"""

from __future__ import annotations

import array
import enum
import socket
import struct
from dataclasses import dataclass


class Req(enum.IntEnum):
    """Front-end -> back-end request numbers (vhost-user.rst, "Front-end message types")."""

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
    GET_CONFIG = 24
    SET_CONFIG = 25
    GET_MAX_MEM_SLOTS = 36
    SET_STATUS = 39
    GET_STATUS = 40


# Header flags: the low two bits are the protocol version, which must be 1.
FLAG_VERSION = 0x1
FLAG_REPLY = 0x4
FLAG_NEED_REPLY = 0x8

HEADER = struct.Struct("<III")
MAX_FDS = 8            # back ends reject more (VHOST_MEMORY_BASELINE_NREGIONS)
MAX_PAYLOAD = 4096


class Feature(enum.IntEnum):
    """Virtio feature bit numbers (virtio 1.1 section 5.1.3 and 6)."""

    NET_CSUM = 0
    NET_GUEST_CSUM = 1
    NET_MTU = 3
    NET_MAC = 5
    NET_GUEST_TSO4 = 7
    NET_GUEST_TSO6 = 8
    NET_HOST_TSO4 = 11
    NET_HOST_TSO6 = 12
    NET_MRG_RXBUF = 15
    NET_STATUS = 16
    NET_CTRL_VQ = 17
    NET_MQ = 22
    ANY_LAYOUT = 27
    RING_INDIRECT_DESC = 28
    RING_EVENT_IDX = 29
    PROTOCOL_FEATURES = 30   # VHOST_USER_F_PROTOCOL_FEATURES
    VERSION_1 = 32
    IN_ORDER = 35


class ProtocolFeature(enum.IntEnum):
    """VHOST_USER_PROTOCOL_F_* bit numbers."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    MTU = 4
    BACKEND_REQ = 5
    CONFIG = 9
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


def bits(*numbers: int) -> int:
    """The feature mask with the given bit numbers set."""
    mask = 0
    for n in numbers:
        mask |= 1 << n
    return mask


def names(mask: int, kind: type[enum.IntEnum]) -> list[str]:
    """The names of the bits set in `mask` (unknown bits as numbers)."""
    out = []
    for n in range(64):
        if mask >> n & 1:
            try:
                out.append(kind(n).name)
            except ValueError:
                out.append(str(n))
    return out


# Device status bits (virtio 1.1 section 2.1), sent with SET_STATUS.
STATUS_ACKNOWLEDGE = 1
STATUS_DRIVER = 2
STATUS_DRIVER_OK = 4
STATUS_FEATURES_OK = 8

# SET_VRING_KICK/CALL/ERR payload: queue index in bits 0-7; bit 8 says "no fd
# comes with this message, poll instead".
VRING_NOFD_MASK = 0x100


@dataclass(frozen=True)
class MemRegion:
    """One entry of SET_MEM_TABLE: guest-physical range, front-end VA, offset in the fd."""

    guest_phys_addr: int
    memory_size: int
    userspace_addr: int
    mmap_offset: int

    LAYOUT = struct.Struct("<QQQQ")

    def pack(self) -> bytes:
        return self.LAYOUT.pack(self.guest_phys_addr, self.memory_size,
                                self.userspace_addr, self.mmap_offset)


def mem_table_payload(regions: list[MemRegion]) -> bytes:
    """u32 nregions, u32 padding, then the regions."""
    return struct.pack("<II", len(regions), 0) + b"".join(r.pack() for r in regions)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def vring_state(index: int, num: int) -> bytes:
    return struct.pack("<II", index, num)


def vring_addr(index: int, desc: int, used: int, avail: int, flags: int = 0,
               log: int = 0) -> bytes:
    """struct vhost_vring_addr; the three ring addresses are front-end VAs."""
    return struct.pack("<IIQQQQ", index, flags, desc, used, avail, log)


class ProtocolError(Exception):
    """The peer sent something that is not a well-formed reply, or hung up."""


@dataclass(frozen=True)
class Message:
    request: int
    flags: int
    payload: bytes
    fds: tuple[int, ...] = ()

    def as_u64(self) -> int:
        if len(self.payload) < 8:
            raise ProtocolError(f"request {self.request}: reply of {len(self.payload)} bytes, "
                                "expected a u64")
        return int(struct.unpack_from("<Q", self.payload)[0])


class Channel:
    """One vhost-user connection: send a message (with fds), read a reply."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, request: int, payload: bytes = b"", fds: tuple[int, ...] = (),
             need_reply: bool = False) -> None:
        flags = FLAG_VERSION | (FLAG_NEED_REPLY if need_reply else 0)
        data = HEADER.pack(request, flags, len(payload)) + payload
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], anc)

    def recv(self) -> Message:
        """Read one whole message; header and payload may arrive in one or two reads."""
        fd_space = socket.CMSG_SPACE(MAX_FDS * 4)
        head, anc, _, _ = self.sock.recvmsg(HEADER.size, fd_space)
        if len(head) < HEADER.size:
            raise ProtocolError(f"peer closed the connection (got {len(head)} header bytes)")
        request, flags, size = HEADER.unpack(head)
        if size > MAX_PAYLOAD:
            raise ProtocolError(f"request {request}: payload of {size} bytes")
        payload = b""
        while len(payload) < size:
            chunk = self.sock.recv(size - len(payload))
            if not chunk:
                raise ProtocolError("peer closed the connection mid-message")
            payload += chunk
        fds: list[int] = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[: len(data) - len(data) % 4]))
        return Message(request, flags, payload, tuple(fds))

    def call(self, request: int, payload: bytes = b"") -> Message:
        """Send a request that always has a reply (GET_*) and return the reply."""
        self.send(request, payload)
        reply = self.recv()
        if reply.request != request or not reply.flags & FLAG_REPLY:
            raise ProtocolError(f"sent request {request}, got {reply.request} "
                                f"flags {reply.flags:#x}")
        return reply

    def close(self) -> None:
        self.sock.close()
