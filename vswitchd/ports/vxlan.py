"""Vxlan ports: a VTEP whose frames the C workers encapsulate and decapsulate.

The port is two sockets and a C object (csrc/vs_vxlan.h):
- a UDP socket bound to local_ip:dstport, the port's only rx "queue": the
  workers read it with recvmmsg() and learn the sender as the remote VTEP;
  With UDP_GRO on it, the kernel hands over a peer's UDP GSO batch (or
  what its GRO merged) as one datagram of back-to-back VXLAN datagrams
  and their size: one read, one wake-up and one trip through the UDP
  stack per ~40 segments instead of one each.  VSWITCHD_VXLAN_GRO=off
  leaves it off (for comparisons).
- a raw IPPROTO_UDP socket bound to local_ip for sending: the workers
  write the UDP header themselves so the source port can follow the inner
  flow (a bound UDP socket sends from one port only), and the kernel adds
  the IP header, routes, resolves the next hop and picks the interface.
  DF is set and the kernel never fragments (IP_PMTUDISC_PROBE); IPv6 UDP
  checksums are computed by the kernel (IPV6_CHECKSUM).  A raw UDP socket
  also receives a copy of every UDP datagram the host gets: a BPF filter
  that accepts nothing keeps its receive queue empty and costless.
- a pool of UDP sockets bound to local_ip and to UDP_POOL ports spread
  over src_port_range, which the workers send through instead of the raw
  socket: a flow hashes to one of them (so its source port stays the
  flow's) and a TCP super-frame leaves as UDP GSO batches, ~40 encapsulated
  segments per sendmsg().  Measured A->B TCP on veths, 1 stream: raw socket
  0.72 Gbit/s, UDP pool with GSO: see docs/overlay.md.  The outer UDP
  checksum is then computed (GSO requires it; RFC 7348 allows it).
  VSWITCHD_VXLAN_TX=raw turns the pool off (for comparisons).
- the `fastpath.Vxlan` VTEP: VNI map, VTEP table (static peers first, in
  the flood list), per-VTEP counters.

MTU: the inner frame's L3 bytes may be at most the underlay's path MTU to
the peers (the smallest; 1500 with no peer) minus 50 bytes for IPv4 or 70
for IPv6, unless the port's `mtu` says otherwise.  Larger frames are
dropped and counted as oversize, never fragmented (RFC 7348 section 4.3).

There is no interface to follow: the port is up while it is open.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
from typing import Any

from vswitchd import fastpath
from vswitchd.errors import VswitchError
from vswitchd.ports.base import PortIO

log = logging.getLogger(__name__)

SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SO_ATTACH_FILTER = 26
IP_MTU_DISCOVER = 10
IP_MTU = 14
IP_PMTUDISC_PROBE = 3
IPV6_CHECKSUM = 7
IPV6_MTU_DISCOVER = 23
IPV6_MTU = 24
IPV6_PMTUDISC_PROBE = 3
UDP_CSUM_OFFSET = 6
SOCKET_BUF_BYTES = 8 << 20
DEFAULT_UNDERLAY_MTU = 1500
UDP_POOL = 16
SOL_UDP = 17
UDP_GRO = 104
POOL_BUF_BYTES = 4 << 20


def _attach_drop_all(sock: socket.socket) -> None:
    """Attaches a classic BPF program of one instruction, "ret 0" (accept
    nothing), to `sock`.  The kernel copies the program during the call."""
    insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    prog = struct.pack("HL", 1, ctypes.addressof(insn))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _bufsize(sock: socket.socket, force: int, opt: int) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, SOCKET_BUF_BYTES)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUF_BYTES)


def path_mtu(family: int, local_ip: str, peer: str) -> int | None:
    """The kernel's route MTU from `local_ip` to `peer`, None without a route."""
    s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        s.bind((local_ip, 0))
        s.connect((peer, 4789))
        if family == socket.AF_INET:
            return int(s.getsockopt(socket.IPPROTO_IP, IP_MTU))
        return int(s.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU))
    except OSError:
        return None
    finally:
        s.close()


class VxlanPort:
    """A `type = "vxlan"` port (see the module docstring)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.vx_cfg = cfg.vxlan
        self.vxlan: fastpath.Vxlan | None = None
        self._rx: socket.socket | None = None
        self._tx: socket.socket | None = None
        self._pool: list[socket.socket] = []
        self.io: PortIO | None = None
        self.underlay_mtu = DEFAULT_UNDERLAY_MTU

    # Basics.

    def open(self) -> PortIO:
        """Binds the sockets and creates the VTEP; raises VswitchError
        naming the key at fault."""
        vc = self.vx_cfg
        base = f"ports.{self.name}"
        family = socket.AF_INET if vc.version == 4 else socket.AF_INET6
        try:
            self._rx = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._rx.setblocking(False)
            _bufsize(self._rx, SO_RCVBUFFORCE, socket.SO_RCVBUF)
            if os.environ.get("VSWITCHD_VXLAN_GRO", "on") != "off":
                self._rx.setsockopt(SOL_UDP, UDP_GRO, 1)
            try:
                self._rx.bind((vc.local_ip, vc.dstport))
            except OSError as exc:
                self.close()
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise VswitchError(f"{base}.local_ip: {vc.local_ip} is not an address "
                                       "of this host") from exc
                if exc.errno == errno.EADDRINUSE:
                    raise VswitchError(f"{base}.dstport: UDP {vc.local_ip}:{vc.dstport} is "
                                       "already in use on this host") from exc
                raise
            self._tx = self._open_tx(family)
            if os.environ.get("VSWITCHD_VXLAN_TX", "pool") != "raw":
                self._pool = self._open_pool(family)
            self.vxlan = fastpath.Vxlan(
                local_ip=vc.local_ip, dstport=vc.dstport, src_ports=vc.src_ports,
                learning=vc.learning is not False, tx_fd=self._tx.fileno(),
                vlan_vni=dict(vc.vni_map),
                udp_pool=[(s.fileno(), s.getsockname()[1]) for s in self._pool])
            for peer in vc.peers:
                self.vxlan.add_vtep(peer, flood=True)
        except OSError as exc:
            self.close()
            raise VswitchError(f"{base}: cannot open the VTEP on {vc.local_ip}:{vc.dstport}: "
                               f"{exc.strerror or exc}") from exc
        except fastpath.FastpathError as exc:
            self.close()
            raise VswitchError(f"{base}: {exc}") from exc
        mtus = [m for m in (path_mtu(family, vc.local_ip, p) for p in vc.peers) if m]
        self.underlay_mtu = min(mtus) if mtus else DEFAULT_UNDERLAY_MTU
        overhead = (fastpath.VXLAN_OVERHEAD_V4 if family == socket.AF_INET
                    else fastpath.VXLAN_OVERHEAD_V6)
        inner_mtu = self.cfg.mtu if self.cfg.mtu is not None else self.underlay_mtu - overhead
        log.info("%s: VTEP %s:%d, VNIs %s, peers %s, inner MTU %d (underlay %d)", self.name,
                 vc.local_ip, vc.dstport, ",".join(f"{v}={n}" for v, n in vc.vni_map),
                 ",".join(vc.peers) or "none", inner_mtu, self.underlay_mtu)
        self.io = PortIO(fds=[self._rx.fileno()], vnet_hdr_len=0, kind="vxlan",
                         offload_csum=False, offload_tso=False, mtu=inner_mtu, ifindex=0,
                         mac="", vxlan=self.vxlan)
        return self.io

    def _open_tx(self, family: int) -> socket.socket:
        vc = self.vx_cfg
        tx = socket.socket(family, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.IPPROTO_UDP)
        try:
            tx.setblocking(False)
            _attach_drop_all(tx)
            _bufsize(tx, SO_SNDBUFFORCE, socket.SO_SNDBUF)
            if family == socket.AF_INET:
                tx.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, vc.ttl)
                tx.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
            else:
                tx.setsockopt(socket.IPPROTO_IPV6, IPV6_CHECKSUM, UDP_CSUM_OFFSET)
                tx.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, vc.ttl)
                tx.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
            tx.bind((vc.local_ip, 0))
        except BaseException:
            tx.close()
            raise
        return tx

    def _open_pool(self, family: int) -> list[socket.socket]:
        """UDP_POOL sockets bound to local_ip and to ports spread over
        src_port_range (a port in use is skipped for the next one)."""
        vc = self.vx_cfg
        lo, hi = vc.src_ports
        want = min(UDP_POOL, hi - lo + 1)
        pool: list[socket.socket] = []
        port = lo
        step = max(1, (hi - lo + 1) // want)
        try:
            while len(pool) < want and port <= hi:
                s = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                try:
                    s.bind((vc.local_ip, port))
                except OSError:
                    s.close()
                    port += 1
                    continue
                pool.append(s)
                s.setblocking(False)
                _attach_drop_all(s)         # nothing is meant to arrive here
                try:
                    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, POOL_BUF_BYTES)
                except PermissionError:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, POOL_BUF_BYTES)
                if family == socket.AF_INET:
                    s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, vc.ttl)
                    s.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
                else:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, vc.ttl)
                    s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
                port += step
        except BaseException:
            for s in pool:
                s.close()
            raise
        return pool

    def close(self) -> None:
        """Frees the VTEP and closes the sockets; only once no published
        config names the port.  Idempotent."""
        if self.vxlan is not None:
            self.vxlan.free()
            self.vxlan = None
        for sock in (self._rx, self._tx, *self._pool):
            if sock is not None:
                sock.close()
        self._rx = self._tx = None
        self._pool = []
        self.io = None

    # What the switch asks every backend.

    def set_offload(self, csum: bool, tso: bool) -> PortIO:
        if self.io is None:
            raise VswitchError(f"ports.{self.name}: port is not open")
        return self.io      # encapsulation does its own checksums and segmentation

    def get_features(self) -> dict[str, bool]:
        return {}

    def read_link_state(self) -> bool:
        return self.io is not None
