"""Vhost-user ports: a VM's virtio-net rings in shared memory.

The port is a unix socket and, while a front end (QEMU, DPDK's
virtio_user) drives it, a running device in the workers
(fastpath_vhost.Vhost, csrc/vs_vhost.h):
- socket_mode "server": we listen on `socket` (a stale socket file is
  replaced) and take one front end at a time;
- socket_mode "client": the front end listens (QEMU `server=on`) and we
  connect, and connect again every RECONNECT_S after it goes away or
  before it is there, so either side may restart.
The protocol lives in vswitchd/vhost/; this module turns a session's state
into the port's PortIO: no queues (absent from the published config, link
down) until the session has a memory table and running queue pairs, then
one rx queue per pair, its fd the guest's TX kick eventfd.

Every change goes through the switch (`on_change`, set by it): the old
device is unpublished before it is read (its ring indices) and freed, and
the new one exists before it is published; a snapshot never names freed
memory (csrc/vs_switch.h).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from typing import Any

from vswitchd.errors import VswitchError
from vswitchd.fastpath import FastpathError
from vswitchd.fastpath_vhost import Vhost, VringSpec
from vswitchd.ports.base import PortIO
from vswitchd.vhost import features as F
from vswitchd.vhost.messages import ProtocolError, recv_message
from vswitchd.vhost.session import Session

log = logging.getLogger(__name__)

RECONNECT_S = 0.2
RECV_TIMEOUT_S = 2.0
VNET_HDR_LEN = 12


class VhostUserPort:
    """A `type = "vhostuser"` port (see the module docstring)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.name: str = cfg.name
        self.vcfg = cfg.vhost
        self.on_change: Callable[[], None] | None = None
        self.io: PortIO = self._idle_io()
        self.device: Vhost | None = None
        self.session: Session | None = None
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._csum = cfg.offload.csum
        self._tso = cfg.offload.tso
        self._running_version = -1
        self.broken = False
        self.connects = 0
        self.state = "listening" if self.vcfg.socket_mode == "server" else "connecting"
        self.state_since = time.monotonic()

    def _idle_io(self) -> PortIO:
        return PortIO(fds=[], vnet_hdr_len=VNET_HDR_LEN, kind="vhost", offload_csum=False,
                      offload_tso=False, mtu=self.cfg.mtu or 0, ifindex=0, mac="")

    # Basics.

    def open(self) -> PortIO:
        """Listens on (or starts connecting to) the socket; raises
        VswitchError naming the key at fault."""
        path = self.vcfg.socket
        key = f"ports.{self.name}.socket"
        if not os.path.isdir(os.path.dirname(path) or "/"):
            raise VswitchError(f"{key}: directory {os.path.dirname(path)} does not exist")
        loop = asyncio.get_running_loop()
        if self.vcfg.socket_mode == "server":
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
                else:
                    raise VswitchError(f"{key}: {path} exists and is not a socket")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            try:
                s.bind(path)
                s.listen(4)
            except OSError as exc:
                s.close()
                raise VswitchError(f"{key}: cannot listen on {path}: {exc.strerror}") from exc
            s.setblocking(False)
            self._listener = s
            loop.add_reader(s.fileno(), self._accept)
        else:
            self._connect_task = loop.create_task(self._connect_loop(),
                                                  name=f"vhost-connect-{self.name}")
        log.info("%s: vhost-user %s on %s, up to %d queue pairs", self.name,
                 self.vcfg.socket_mode, path, self.cfg.queues)
        return self.io

    def close(self) -> None:
        """Ends the connection and frees the device; only once no published
        config names the port.  Idempotent."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        self._drop_connection(notify=False)
        if self._listener is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.vcfg.socket)

    # What the switch asks every backend.

    def set_offload(self, csum: bool, tso: bool) -> PortIO:
        """Offloads are negotiated when a front end connects: the new
        setting applies from the next connection."""
        self._csum, self._tso = csum, tso
        return self.io

    def get_features(self) -> dict[str, bool]:
        return {}

    def read_link_state(self) -> bool:
        return self.device is not None

    # Connections.

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        if self._conn is not None:
            log.warning("%s: a second front end connected; refused", self.name)
            conn.close()
            return
        self._start_session(conn)

    async def _connect_loop(self) -> None:
        while True:
            if self._conn is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                try:
                    s.connect(self.vcfg.socket)
                except OSError:
                    s.close()
                else:
                    self._start_session(s)
            await asyncio.sleep(RECONNECT_S)

    def _start_session(self, conn: socket.socket) -> None:
        conn.settimeout(RECV_TIMEOUT_S)
        self._conn = conn
        self.connects += 1
        self.session = Session(name=self.name, max_pairs=self.cfg.queues,
                               offered=F.offered(self._csum, self._tso), hooks=self)
        self._set_state("connected")
        asyncio.get_running_loop().add_reader(conn.fileno(), self._on_readable)
        log.info("%s: front end connected", self.name)

    def _on_readable(self) -> None:
        conn, session = self._conn, self.session
        if conn is None or session is None:
            return
        try:
            msg = recv_message(conn)
            if msg is None:
                log.info("%s: front end disconnected", self.name)
                self._drop_connection()
                return
            log.debug("%s: %s %s fds=%d", self.name, msg.name(), msg.payload[:16].hex(),
                      len(msg.fds))
            reply = session.handle(msg)
            if reply is not None:
                conn.sendall(reply)
        except (ProtocolError, OSError) as exc:
            log.warning("%s: closing the vhost-user connection: %s", self.name, exc)
            self._drop_connection()

    def _drop_connection(self, notify: bool = True) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None
        self._stop_device(notify)
        if self.session is not None:
            self.session.close()
            self.session = None
        self._set_state("listening" if self.vcfg.socket_mode == "server" else "connecting")

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_since = time.monotonic()

    # The device (Hooks for the session).

    def stop(self) -> dict[int, int]:
        return self._stop_device(notify=True)

    def _stop_device(self, notify: bool) -> dict[int, int]:
        dev = self.device
        if dev is None:
            return {}
        self.device = None
        self.io = self._idle_io()
        self._running_version = -1
        if notify and self.on_change is not None:
            self.on_change()        # publishes a config without the device
        bases = dev.bases()
        self.broken = self.broken or dev.broken()
        dev.free()
        if self.session is not None:
            self._set_state("connected")
        return bases

    def reconcile(self) -> None:
        s = self.session
        if s is None:
            return
        pairs = s.running_pairs()
        if self.device is not None and (pairs != self.device.n_qp
                                        or s.version != self._running_version):
            for index, base in self._stop_device(notify=True).items():
                s.vrings[index].base = base
        if self.device is None and pairs:
            self._start_device(s, pairs)

    def _start_device(self, s: Session, pairs: int) -> None:
        vrings = [VringSpec(num=v.num, desc=v.desc, avail=v.avail, used=v.used, base=v.base,
                            kick=v.kick if v.kick is not None else -1, call=v.call)
                  for v in s.vrings[:2 * pairs]]
        regions = [(r.guest_phys_addr, r.size, r.user_addr, r.mmap_offset, r.fd)
                   for r in s.regions]
        try:
            dev = Vhost(s.features, regions, vrings)
        except FastpathError as exc:
            log.warning("%s: cannot start the device: %s", self.name, exc)
            self.broken = True
            return
        self.device = dev
        self._running_version = s.version
        self.io = PortIO(
            fds=[v.kick for v in vrings[1::2]], vnet_hdr_len=VNET_HDR_LEN, kind="vhost",
            offload_csum=s.has(F.NET_F_GUEST_CSUM),
            offload_tso=s.has(F.NET_F_GUEST_TSO4) and s.has(F.NET_F_GUEST_TSO6),
            mtu=self.cfg.mtu or 0, ifindex=0, mac="", vhost=dev)
        self._set_state("running")
        log.info("%s: device running, %d queue pairs, features %s", self.name, pairs,
                 ",".join(F.names(s.features)))
        if self.on_change is not None:
            self.on_change()

    # Reports.

    def status(self) -> dict[str, Any]:
        s = self.session
        return {
            "socket": self.vcfg.socket, "socket_mode": self.vcfg.socket_mode,
            "state": self.state, "connects": self.connects,
            "queues": self.device.n_qp if self.device is not None else 0,
            "max_queues": self.cfg.queues, "broken": self.broken or (
                self.device is not None and self.device.broken()),
            "features": F.names(s.features) if s else [],
            "protocol_features": F.names(s.protocol_features, F.PROTOCOL_NAMES) if s else [],
        }
