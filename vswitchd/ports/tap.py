"""TAP ports: a tun/tap device whose queue fds the fast path reads and writes.

Lifecycle: `open()` creates the device (or attaches to an existing one by
name), configures every queue fd, sets MTU, moves it into `cfg.netns` if
asked and brings it up; `close()` undoes exactly what `open()` did.

Kernel facts this module relies on (measured on Linux 6.18):
- With IFF_VNET_HDR and TUNSETVNETHDRSZ 12 every read()/write() carries one
  frame behind a 12-byte virtio_net_hdr (v1 layout, num_buffers included).
- TUNSETOFFLOAD decides what the kernel may hand *us* on read (partial
  checksums, GSO super-frames up to ~64 KB) and is what `ethtool -k` shows as
  tx-checksumming / tcp-segmentation-offload.  It does NOT restrict writes:
  tun_get_user() accepts NEEDS_CSUM/GSO frames written to the fd even with
  TUNSETOFFLOAD 0 (verified: a 3 KB TCPv4 GSO frame is accepted and counted
  as one RX packet).  `PortIO.offload_*` still follows the configuration, so
  turning offloads off in the config makes the fast path segment/checksum
  itself -- useful when a peer mishandles GSO.
- TUNSETIFF on a tap another process holds (QEMU) fails with EBUSY.
- A tap can be moved into another namespace while we hold its fds; the fds
  keep working.  TUNSETIFF looks the name up in the namespace of the
  /dev/net/tun file, i.e. of the thread that opened it.
- A non-persistent tap disappears when its last fd is closed.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
from dataclasses import replace
from typing import Any

from vswitchd.errors import VswitchError
from vswitchd.ports.base import LinkInfo, PortIO, Rtnl
from vswitchd.ports.netns import in_netns, netns_exists, netns_fd

log = logging.getLogger(__name__)

TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
VNET_HDR_LEN = 12  # virtio_net_hdr_v1: the 10-byte header + num_buffers

_TSO = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
# Best first; older kernels reject USO (6.2+) with EINVAL, so fall back.
_OFFLOAD_CANDIDATES: dict[tuple[bool, bool], tuple[int, ...]] = {
    (True, True): (_TSO | TUN_F_TSO_ECN | TUN_F_USO4 | TUN_F_USO6, _TSO | TUN_F_TSO_ECN, _TSO),
    (True, False): (TUN_F_CSUM,),
    # TSO without checksum offload is meaningless (segments need checksums),
    # and the kernel refuses it: no checksum offload means no offload at all.
    (False, True): (0,),
    (False, False): (0,),
}


def _ifreq(ifname: str, flags: int) -> bytes:
    return struct.pack("16sH22x", ifname.encode(), flags)


def apply_offload(fd: int, csum: bool, tso: bool) -> int:
    """TUNSETOFFLOAD on `fd` with the best flags the kernel takes; returns them."""
    candidates = _OFFLOAD_CANDIDATES[(csum, tso)]
    for flags in candidates:
        try:
            fcntl.ioctl(fd, TUNSETOFFLOAD, flags)
            return flags
        except OSError as exc:
            if exc.errno != errno.EINVAL or flags == candidates[-1]:
                raise
    raise AssertionError("unreachable")


def _require_link(rtnl: Rtnl, ifname: str | None = None, index: int = 0) -> LinkInfo:
    info = rtnl.get_link(ifname, index)
    if info is None:
        raise OSError(errno.ENODEV, "device vanished while opening it")
    return info


class TapPort:
    """A TAP device owned (or adopted) by the switch."""

    def __init__(self, cfg: Any, inherited_fds: list[int] | None = None) -> None:
        self.cfg = cfg
        # Queue fds a previous vswitchd left in the service manager's fd
        # store: adopting them keeps the TAP's carrier up across a restart.
        self._inherited = list(inherited_fds or [])
        self.adopted = False
        self.name: str = cfg.name
        self.ifname: str = cfg.ifname
        self.netns: str | None = getattr(cfg, "netns", None)
        self.created = False
        self.io: PortIO | None = None
        self.offload_flags = 0
        self._fds: list[int] = []
        # Namespace the device lives in now (None: the daemon's own).
        self._where: str | None = None

    # Basics.

    def open(self) -> PortIO:
        """Create or attach the TAP and return its queue fds; raise VswitchError."""
        if self.netns is not None and not netns_exists(self.netns):
            raise VswitchError(
                f'ports.{self.name}.netns: namespace "{self.netns}" does not exist'
            )
        try:
            self._where, existed = self._locate()
            self.created = not existed
            self._open_queues()
            self._set_persist()
            info = self._configure_link()
        except OSError as exc:
            self.close()
            raise self._error(exc) from exc
        except BaseException:
            self.close()
            raise
        offload = self.cfg.offload
        csum = bool(offload.csum)
        tso = csum and bool(offload.tso)
        self.io = PortIO(
            fds=list(self._fds),
            vnet_hdr_len=VNET_HDR_LEN,
            kind="fd",
            offload_csum=csum,
            offload_tso=tso,
            mtu=info.mtu,
            ifindex=info.index,
            mac=info.mac,
        )
        return self.io

    def close(self) -> None:
        """Close the fds; delete the device if we created it and it is not persistent.

        Idempotent, and safe after a failed open().
        """
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
        if fds and self.created and not self.cfg.persist:
            # Closing the last fd already unregistered it; this only catches
            # a device someone made persistent behind our back.
            self._delete_if_present()
        self.io = None

    # Offloads and link state.

    def set_offload(self, csum: bool, tso: bool) -> PortIO:
        """Change offloads live on every queue; returns the updated PortIO."""
        if self.io is None:
            raise VswitchError(f"ports.{self.name}: port is not open")
        tso = csum and tso
        try:
            for fd in self._fds:
                self.offload_flags = apply_offload(fd, csum, tso)
        except OSError as exc:
            raise self._error(exc) from exc
        self.io = replace(self.io, offload_csum=csum, offload_tso=tso)
        return self.io

    def read_link_state(self) -> bool:
        """True when the device is admin up and has carrier (False if it is gone)."""
        try:
            with in_netns(self._where), Rtnl() as rtnl:
                info = rtnl.get_link(self.ifname)
        except OSError:
            return False  # namespace vanished
        return info is not None and info.up

    # Implementation.

    def _locate(self) -> tuple[str | None, bool]:
        """Where the device exists: (namespace, True), or (None, False) if nowhere.

        A tap left persistent inside its namespace by a previous run must be
        attached from inside that namespace, so look there first.
        """
        if self.netns is not None:
            with in_netns(self.netns), Rtnl() as rtnl:
                if rtnl.get_link(self.ifname) is not None:
                    return self.netns, True
        with Rtnl() as rtnl:
            return None, rtnl.get_link(self.ifname) is not None

    def _open_queues(self) -> None:
        flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR
        if self.cfg.queues > 1:
            flags |= IFF_MULTI_QUEUE
        offload = self.cfg.offload
        csum = bool(offload.csum)
        tso = csum and bool(offload.tso)
        if self._adopt_inherited():
            for fd in self._fds:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                self.offload_flags = apply_offload(fd, csum, tso)
            return
        with in_netns(self._where):
            for _ in range(self.cfg.queues):
                fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                self._fds.append(fd)
                fcntl.ioctl(fd, TUNSETIFF, _ifreq(self.ifname, flags))
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                self.offload_flags = apply_offload(fd, csum, tso)

    def _adopt_inherited(self) -> bool:
        """Takes the inherited fds as this TAP's queues if they are attached
        to it, one per configured queue; otherwise closes them."""
        fds, self._inherited = self._inherited, []
        if not fds:
            return False
        ok = len(fds) == self.cfg.queues
        for fd in fds:
            try:
                raw = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
            except OSError:
                ok = False
                continue
            ok = ok and raw[:16].rstrip(b"\0").decode(errors="replace") == self.ifname
        if not ok:
            log.warning("ports.%s: inherited fds do not match %d queues of %s; reopening",
                        self.name, self.cfg.queues, self.ifname)
            for fd in fds:
                os.close(fd)
            return False
        for fd in fds:
            os.set_blocking(fd, False)
        self._fds = fds
        self.adopted = True
        return True

    def _set_persist(self) -> None:
        # Persistence is a device property: one fd is enough.  A device we did
        # not create keeps whatever persistence its owner chose.
        if self.cfg.persist:
            fcntl.ioctl(self._fds[0], TUNSETPERSIST, 1)
        elif self.created:
            fcntl.ioctl(self._fds[0], TUNSETPERSIST, 0)

    def _configure_link(self) -> LinkInfo:
        with in_netns(self._where), Rtnl() as rtnl:
            info = _require_link(rtnl, self.ifname)
            rtnl.set_link(info.index, mtu=self.cfg.mtu, up=True)
            if self.netns is None or self._where == self.netns:
                return _require_link(rtnl, index=info.index)
            # Moving resets the device to admin down; its ifindex may change
            # if the number is taken in the target, so look it up again there.
            with netns_fd(self.netns) as target:
                rtnl.set_link(info.index, netns_fd=target)
        self._where = self.netns
        with in_netns(self._where), Rtnl() as rtnl:
            info = _require_link(rtnl, self.ifname)
            rtnl.set_link(info.index, up=True)
            return _require_link(rtnl, index=info.index)

    def _delete_if_present(self) -> None:
        try:
            with in_netns(self._where), Rtnl() as rtnl:
                info = rtnl.get_link(self.ifname)
                if info is not None:
                    rtnl.del_link(info.index)
        except OSError as exc:
            log.warning("ports.%s: cannot delete tap %s: %s", self.name, self.ifname, exc)

    def _error(self, exc: OSError) -> VswitchError:
        if exc.errno == errno.EBUSY:
            return VswitchError(
                f'ports.{self.name}.ifname: tap "{self.ifname}" is in use by another '
                f'process (e.g. QEMU); use type = "netdev" to attach to it'
            )
        where = f' in namespace "{self._where}"' if self._where else ""
        return VswitchError(
            f'ports.{self.name}.ifname: cannot open tap "{self.ifname}"{where}: '
            f"{os.strerror(exc.errno) if exc.errno else exc}"
        )
