"""Netdev ports: AF_PACKET sockets on an interface the switch does not own.

Used for veth ends, uplink NICs, and taps held by QEMU (whose TUNSETIFF
returns EBUSY).  We never create, rename or delete the interface; close()
just closes our sockets, which also drops our promiscuous-mode reference.

Kernel traps handled here:
- The partial-checksum trap: when the sender offloads checksums (veth peers,
  guests) the frames we receive carry CHECKSUM_PARTIAL and an unfinished L4
  checksum, and GSO super-frames arrive unsegmented.  Forwarding them as plain
  bytes black-holes TCP/UDP while ping still works.  PACKET_VNET_HDR makes
  the kernel prefix each frame with a 10-byte virtio_net_hdr describing the
  offload (csum_start/offset, gso_type/size), and accept the same header on
  send, where it checksums/segments as the device needs.
- Frames queued between socket() and bind() may belong to any interface: we
  create the socket with protocol 0 (it receives nothing) and bind it with
  ETH_P_ALL to the ifindex, so the first frame it sees is one of ours.
- PACKET_FANOUT must be joined after bind (it takes the bound device and
  protocol); joining earlier fails with EINVAL.
- PACKET_QDISC_BYPASS sends straight to the driver's xmit, skipping the
  qdisc enqueue/dequeue and its lock: fewer cycles per frame, and the switch
  already queues in its own batches.  The price: no qdisc shaping on that
  egress, a full device queue surfaces as a send error (counted as a tx drop)
  instead of qdisc backpressure, and host tcpdump on the interface does not
  see frames we send.
- The rx ring (PACKET_RX_RING; see docs/io.md): the kernel writes frames
  into blocks of a ring mapped into the daemon, and the fast path walks a
  whole block without a syscall.  Set up before bind(): setting a ring
  purges the socket's receive queue, so any frame queued by then would be
  lost; and after PACKET_VNET_HDR, which refuses to change once a ring
  exists.  If the kernel refuses the ring the socket keeps recvmmsg().  The
  ring is an object of its own (`fastpath.Ring`), kept with its socket in the
  queue's `PacketQueue` and handed to the fast path in `PortIO.rings`, next
  to the fds: workers find it in the published port config, never by fd
  number.  It is unmapped right before the socket is closed, which the
  switch does only after publishing a config without the port.
  Opt-in for now (VSWITCHD_PACKET_RING=1 or 3: TPACKET_V3, =2: V2; unset
  or 0: recvmmsg): V3 cuts the switch's CPU per small frame by about a
  quarter but holds a lone frame until its block retires (+~0.85 ms ping
  RTT with the 1 ms timeout, VSWITCHD_PACKET_RING_TOV_MS) and cost ~15 % of
  single-stream TCP throughput here; V2 wakes per frame but measured
  dearer than recvmmsg.  Numbers and commands: docs/io.md.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from dataclasses import dataclass, replace
from typing import Any

from pyroute2.ethtool.ioctl import IoctlEthtool

from vswitchd import fastpath
from vswitchd.errors import VswitchError
from vswitchd.ports.base import LinkInfo, PortIO, Rtnl

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_AUXDATA = 8
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
ETH_P_ALL = 0x0003
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
SOCKET_BUF_BYTES = 8 << 20  # room for a burst of ~64 KB GSO frames
VNET_HDR_LEN = 10  # struct virtio_net_hdr, no num_buffers for AF_PACKET

# Legacy ethtool flag groups, the names `ethtool -k` prints.
FEATURE_CSUM = "tx-checksumming"
FEATURE_TSO = "tcp-segmentation-offload"


def read_link(ifname: str) -> LinkInfo | None:
    """The interface `ifname` in the daemon's namespace, or None."""
    with Rtnl() as rtnl:
        return rtnl.get_link(ifname)


def read_mtu(ifname: str) -> int | None:
    """MTU of `ifname`, None if it does not exist."""
    info = read_link(ifname)
    return info.mtu if info is not None else None


def get_features(ifname: str) -> dict[str, bool]:
    """The legacy offload flags of `ifname` (what `ethtool -k` summarises)."""
    eth = IoctlEthtool(ifname)
    try:
        return dict(eth.get_offload_flags())
    finally:
        eth.close()


def set_features(ifname: str, wanted: dict[str, bool]) -> dict[str, bool]:
    """Try to set each feature; return the resulting flags.

    A driver that refuses a feature (fixed features, EOPNOTSUPP) is logged,
    not fatal: the port still works, the fast path just does the work.
    """
    eth = IoctlEthtool(ifname)
    try:
        for feature, enable in wanted.items():
            try:
                eth.set_offload_flag(feature, int(enable))
            except Exception as exc:  # pyroute2 wraps ENOTSUP in its own types
                log.warning("%s: cannot set %s %s: %s", ifname, feature, enable, exc)
        return dict(eth.get_offload_flags())
    finally:
        eth.close()


def _set_bufsize(sock: socket.socket, force_opt: int, opt: int) -> None:
    # *FORCE ignores net.core.[rw]mem_max but needs CAP_NET_ADMIN.
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, SOCKET_BUF_BYTES)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUF_BYTES)


@dataclass
class PacketQueue:
    """One queue of a netdev port: its AF_PACKET socket and the rx ring
    mapped on it, if it has one.  They live and die together."""

    sock: socket.socket
    ring: fastpath.Ring | None = None

    def close(self) -> None:
        """Unmap the rx ring (if any), then close the socket.  Only once no
        published config names them.  Idempotent."""
        if self.ring is not None:
            self.ring.detach()
        self.sock.close()


def open_packet_queue(ifname: str, ifindex: int, fanout_group: int | None,
                      rx_ring: str | None = None) -> PacketQueue:
    """One configured AF_PACKET socket bound to `ifindex`, with its rx ring."""
    queue = PacketQueue(socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0))
    sock = queue.sock
    try:
        sock.setblocking(False)
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        # The receive path strips an 802.1Q tag into skb metadata before
        # packet sockets see the frame: auxdata hands it back with each frame
        # (the rx ring has it in its frame header anyway).
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        _set_bufsize(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF)
        _set_bufsize(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF)
        queue.ring = _attach_ring(sock, ifname, rx_ring)
        # Python binds AF_PACKET by name; open() checks the ifindex afterwards.
        sock.bind((ifname, ETH_P_ALL))
        mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        if fanout_group is not None:
            mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
            # FLAG_DEFRAG sets bit 31: too big for setsockopt's C int path.
            arg = struct.pack("I", fanout_group | (mode << 16))
            sock.setsockopt(SOL_PACKET, PACKET_FANOUT, arg)
    except BaseException:
        queue.close()
        raise
    return queue


def ring_version(configured: str | None = None) -> int | None:
    """The port's `rx_ring` ("off", "v2", "v3"); when not configured,
    VSWITCHD_PACKET_RING: unset or "0" = no ring (recvmmsg), "1" = the
    default ring version (TPACKET_V3), "2"/"3" = TPACKET_V2/V3."""
    if configured is not None:
        return {"v2": 2, "v3": 3}.get(configured)
    v = os.environ.get("VSWITCHD_PACKET_RING", "0")
    if v in ("2", "3"):
        return int(v)
    return 0 if v == "1" else None


def _attach_ring(sock: socket.socket, ifname: str,
                 configured: str | None = None) -> fastpath.Ring | None:
    """An rx ring for `sock` (when asked for), set up while it is still
    unbound: the kernel purges a socket's receive queue when a ring is set,
    so this must happen before the first frame can be queued.  None: no
    ring, the fast path reads the socket with recvmmsg."""
    version = ring_version(configured)
    if version is None:
        return None
    try:
        tov = int(os.environ.get("VSWITCHD_PACKET_RING_TOV_MS", "0") or 0)
    except ValueError:
        tov = 0
    try:
        return fastpath.Ring.attach(sock.fileno(), VNET_HDR_LEN, version, tov_ms=max(tov, 0))
    except OSError as exc:
        log.warning("%s: no rx ring (%s): reading with recvmmsg", ifname, os_error_text(exc))
        return None


class NetdevPort:
    """An existing interface in the daemon's namespace, reached through AF_PACKET."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.ifname: str = cfg.ifname
        self.io: PortIO | None = None
        self._queues: list[PacketQueue] = []

    # Basics.

    def open(self) -> PortIO:
        """Open `cfg.queues` packet sockets on the interface; raise VswitchError."""
        info = read_link(self.ifname)
        if info is None:
            raise VswitchError(
                f'ports.{self.name}.ifname: interface "{self.ifname}" does not exist'
            )
        # One fanout group per port; netdev ports live in one namespace, where
        # ifindexes are unique, so the low 16 bits rarely collide.
        group = info.index & 0xFFFF if self.cfg.queues > 1 else None
        try:
            if self.cfg.mtu is not None and self.cfg.mtu != info.mtu:
                with Rtnl() as rtnl:
                    rtnl.set_link(info.index, mtu=self.cfg.mtu)
            for _ in range(self.cfg.queues):
                self._queues.append(open_packet_queue(self.ifname, info.index, group,
                                                      getattr(self.cfg, "rx_ring", None)))
            now = read_link(self.ifname)
            if now is None or now.index != info.index:
                raise OSError(errno.ENODEV, "interface was replaced while attaching")
            info = now
        except OSError as exc:
            self.close()
            raise VswitchError(
                f'ports.{self.name}.ifname: cannot attach to interface "{self.ifname}": '
                f"{os_error_text(exc)}"
            ) from exc
        csum = bool(self.cfg.offload.csum)
        self.io = PortIO(
            fds=[q.sock.fileno() for q in self._queues],
            rings=tuple(q.ring for q in self._queues),
            vnet_hdr_len=VNET_HDR_LEN,
            kind="packet",
            offload_csum=csum,
            offload_tso=csum and bool(self.cfg.offload.tso),
            mtu=info.mtu,
            ifindex=info.index,
            mac=info.mac,
        )
        return self.io

    def close(self) -> None:
        """Unmap the rx rings and close the sockets (dropping promisc and
        fanout).  Idempotent."""
        queues, self._queues = self._queues, []
        for queue in queues:
            queue.close()
        self.io = None

    # Offloads and link state.

    def set_offload(self, csum: bool, tso: bool) -> PortIO:
        """Set the interface's tx checksum/TSO features; returns the updated PortIO.

        The PortIO follows the request: AF_PACKET with a vnet header makes the
        kernel finish checksums/segmentation in software when the device
        lacks the feature, so the switch may always hand it offloaded frames.
        """
        if self.io is None:
            raise VswitchError(f"ports.{self.name}: port is not open")
        tso = csum and tso
        try:
            set_features(self.ifname, {FEATURE_CSUM: csum, FEATURE_TSO: tso})
        except OSError as exc:
            log.warning("ports.%s: cannot change features: %s", self.name, exc)
        self.io = replace(self.io, offload_csum=csum, offload_tso=tso)
        return self.io

    def get_features(self) -> dict[str, bool]:
        return get_features(self.ifname)

    def read_link_state(self) -> bool:
        """True when the interface is admin up and has carrier."""
        info = read_link(self.ifname)
        return info is not None and info.up


def os_error_text(exc: OSError) -> str:
    return exc.strerror or str(exc)
