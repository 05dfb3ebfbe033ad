"""Pieces shared by the port backends: what a port hands the fast path, the
link-state machine, and a minimal blocking rtnetlink client.

Why our own rtnetlink client rather than pyroute2's `IPRoute`: pyroute2 0.9's
sync `IPRoute` drives its own asyncio loop and fails with "this event loop is
already running" when called from the daemon's loop, and its `AsyncIPRoute`
asks the loop for a datagram endpoint on AF_NETLINK, which uvloop rejects
("cannot open a UDP handle, invalid family 16").  So we keep pyroute2 for what
it is good at, encoding and decoding `ifinfmsg`, and do the socket I/O here.
A request/ack round trip is a few microseconds, so blocking is fine on the
control plane.

An rtnetlink socket is bound for life to the network namespace of the thread
that created it: create an `Rtnl` inside `netns.in_netns(name)` to talk to
that namespace.
"""

from __future__ import annotations

import enum
import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST, nlmsgerr
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

if TYPE_CHECKING:
    from vswitchd.fastpath import Ring, Vxlan

IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # carrier, as rtnetlink reports it
NLMSG_ERROR = 2
NLMSG_DONE = 3
_NLMSG_HDR = struct.Struct("=IHHII")
_RTNL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PortIO:
    """What a port hands the fast path: file descriptors and how to use them.

    `kind` is "fd" when every read()/write() carries one frame (TAP),
    "packet" for AF_PACKET sockets (batch with recvmmsg/sendmmsg), or
    "vxlan" for a VTEP's UDP socket (vswitchd/ports/vxlan.py).  Every frame
    read or written is prefixed by a virtio_net_hdr of `vnet_hdr_len` bytes.
    `offload_csum`/`offload_tso` say what the egress side may be handed: when
    false the fast path must complete checksums / segment GSO frames itself.
    `rings`, aligned with `fds`, are the rx rings of packet sockets (None:
    read with recvmmsg); the port owns them like the fds.
    """

    fds: list[int]
    vnet_hdr_len: int
    kind: str
    offload_csum: bool
    offload_tso: bool
    mtu: int
    ifindex: int
    mac: str
    rings: tuple[Ring | None, ...] = ()
    vxlan: Vxlan | None = None      # kind "vxlan": the port's VTEP
    vhost: Any = None               # kind "vhost": its running fastpath_vhost.Vhost


class LinkState(enum.Enum):
    """Link state of a port's interface as the switch follows it."""

    ABSENT = "absent"  # interface (or its namespace) does not exist
    DOWN = "down"  # exists, but not (admin up and carrier)
    UP = "up"  # admin up and carrier: frames may be forwarded


# Every change is allowed except staying put: a monitor reports only changes.
LINK_TRANSITIONS: dict[LinkState, frozenset[LinkState]] = {
    LinkState.ABSENT: frozenset({LinkState.DOWN, LinkState.UP}),
    LinkState.DOWN: frozenset({LinkState.ABSENT, LinkState.UP}),
    LinkState.UP: frozenset({LinkState.ABSENT, LinkState.DOWN}),
}


@dataclass(frozen=True)
class LinkInfo:
    """The few attributes of an RTM_NEWLINK we care about."""

    index: int
    ifname: str
    flags: int
    mtu: int
    mac: str

    @property
    def up(self) -> bool:
        """Admin up and carrier: the state the switch forwards on."""
        return self.flags & (IFF_UP | IFF_LOWER_UP) == (IFF_UP | IFF_LOWER_UP)

    @property
    def state(self) -> LinkState:
        return LinkState.UP if self.up else LinkState.DOWN


def iter_netlink(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Yield (type, sequence number, whole message) for each message in `data`."""
    offset = 0
    while offset + _NLMSG_HDR.size <= len(data):
        length, msg_type, _flags, seq, _pid = _NLMSG_HDR.unpack_from(data, offset)
        if length < _NLMSG_HDR.size:
            break  # malformed; never loop forever on a zero length
        yield msg_type, seq, data[offset : offset + length]
        offset += (length + 3) & ~3


def decode_link(raw: bytes) -> LinkInfo:
    """Decode one RTM_NEWLINK/RTM_DELLINK message."""
    msg = ifinfmsg(raw)
    msg.decode()
    return LinkInfo(
        index=msg["index"],
        ifname=msg.get_attr("IFLA_IFNAME") or "",
        flags=msg["flags"],
        mtu=msg.get_attr("IFLA_MTU") or 0,
        mac=msg.get_attr("IFLA_ADDRESS") or "",
    )


class Rtnl:
    """A blocking rtnetlink request/ack socket in the creating thread's netns."""

    def __init__(self) -> None:
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._sock.settimeout(_RTNL_TIMEOUT_S)
        self._sock.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_link(self, ifname: str | None = None, index: int = 0) -> LinkInfo | None:
        """The link named `ifname` (or with `index`), None if there is none."""
        attrs = [("IFLA_IFNAME", ifname)] if ifname is not None else []
        try:
            replies = self._request(RTM_GETLINK, index=index, attrs=attrs)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
        links = [decode_link(raw) for msg_type, raw in replies if msg_type == RTM_NEWLINK]
        return links[0] if links else None

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        mtu: int | None = None,
        netns_fd: int | None = None,
    ) -> None:
        """Change admin state, MTU and/or namespace of link `index`."""
        attrs: list[tuple[str, object]] = []
        if mtu is not None:
            attrs.append(("IFLA_MTU", mtu))
        if netns_fd is not None:
            attrs.append(("IFLA_NET_NS_FD", netns_fd))
        flags = IFF_UP if up else 0
        change = IFF_UP if up is not None else 0
        self._request(RTM_SETLINK, index=index, attrs=attrs, flags=flags, change=change)

    def del_link(self, index: int) -> None:
        self._request(RTM_DELLINK, index=index)

    def _request(
        self,
        msg_type: int,
        *,
        index: int = 0,
        attrs: list | None = None,
        flags: int = 0,
        change: int = 0,
    ) -> list[tuple[int, bytes]]:
        """Send one request; return its replies; raise OSError on a NACK."""
        self._seq += 1
        msg = ifinfmsg()
        msg["header"]["type"] = msg_type
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["sequence_number"] = self._seq
        msg["index"] = index
        msg["flags"] = flags
        msg["change"] = change
        msg["attrs"] = attrs or []
        msg.encode()
        self._sock.send(msg.data)
        replies: list[tuple[int, bytes]] = []
        while True:
            for reply_type, seq, raw in iter_netlink(self._sock.recv(65536)):
                if seq != self._seq:
                    continue  # a stale reply to an earlier, timed-out request
                if reply_type == NLMSG_ERROR:
                    err = nlmsgerr(raw)
                    err.decode()
                    code = -err["error"]
                    if code:
                        raise OSError(code, errno.errorcode.get(code, str(code)))
                    return replies  # the ACK ends the conversation
                if reply_type == NLMSG_DONE:
                    return replies
                replies.append((reply_type, raw))
