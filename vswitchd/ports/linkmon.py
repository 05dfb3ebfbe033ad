"""Follow the link state of port interfaces, event-driven over rtnetlink.

The switch forwards on a port only while its interface is admin up AND has
carrier.  `LinkMonitor.watch()` reports that state once immediately and then
on every change, in the daemon's namespace or in a named namespace.

Design:
- One RTMGRP_LINK netlink socket per namespace, created while the thread is
  inside it (a socket belongs to its creator's namespace for life) and read
  with `loop.add_reader` -- no tasks per socket.  pyroute2's AsyncIPRoute is
  not used: it needs a datagram endpoint on AF_NETLINK, which uvloop refuses.
- Moving an interface between namespaces shows up as RTM_DELLINK in the old
  one and RTM_NEWLINK in the new one; a rename as RTM_NEWLINK with the same
  index and another name.  Both count as "gone" for a watch by name.
- Our socket holds a reference on its namespace: after `ip netns del` the
  namespace (and the interfaces in it) live on until we close it, and no
  event says it was deleted.  So one named task polls that each watched
  namespace is still mounted; when it is not, we close its socket (letting
  the kernel tear it down) and report its watches down.  If a namespace of
  that name comes back, we listen to the new one and resync.
- A full socket buffer (ENOBUFS) means lost events: resync by querying.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from vswitchd.ports.base import LinkInfo, Rtnl, decode_link, iter_netlink
from vswitchd.ports.netns import in_netns, netns_exists, netns_id

log = logging.getLogger(__name__)

RTMGRP_LINK = 0x1
RTM_NEWLINK = 16
RTM_DELLINK = 17
_RCVBUF_BYTES = 1 << 20

LinkCallback = Callable[[str, bool], None]


@dataclass
class _Watch:
    key: str
    ifname: str
    netns: str | None
    callback: LinkCallback
    up: bool | None = None  # last state reported
    index: int = 0  # ifindex last seen under `ifname`, 0 if absent


class _NsListener:
    """One RTMGRP_LINK socket in one namespace, feeding `on_event`."""

    def __init__(
        self,
        netns: str | None,
        on_event: Callable[[str | None, int, LinkInfo], None],
        on_overrun: Callable[[str | None], None],
    ) -> None:
        self.netns = netns
        self._on_event = on_event
        self._on_overrun = on_overrun
        self._sock: socket.socket | None = None
        self.ns_id: int | None = None  # inode of the namespace we listen in
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self.ns_id = netns_id(self.netns) if self.netns is not None else None
        with in_netns(self.netns):
            sock = socket.socket(
                socket.AF_NETLINK,
                socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                socket.NETLINK_ROUTE,
            )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
            sock.bind((0, RTMGRP_LINK))
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()

    def _readable(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self._on_overrun(self.netns)
                    continue
                log.warning("link monitor (netns %s): %s", self.netns, exc)
                return
            for msg_type, _seq, raw in iter_netlink(data):
                if msg_type in (RTM_NEWLINK, RTM_DELLINK):
                    self._on_event(self.netns, msg_type, decode_link(raw))


class LinkMonitor:
    """Report (admin up and carrier) changes of watched interfaces."""

    def __init__(self, netns_poll_s: float = 1.0) -> None:
        self._netns_poll_s = netns_poll_s
        self._watches: dict[str, _Watch] = {}
        self._listeners: dict[str | None, _NsListener] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poll_task: asyncio.Task[None] | None = None

    # Basics.

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._poll_task = asyncio.create_task(self._poll_netns(), name="linkmon-netns-poll")

    async def stop(self) -> None:
        task, self._poll_task = self._poll_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
        self._watches.clear()
        self._loop = None

    # Watches.

    def watch(self, key: str, ifname: str, netns: str | None, callback: LinkCallback) -> None:
        """Follow `ifname` in `netns`; call `callback(key, up)` now and on changes."""
        if self._loop is None:
            raise RuntimeError("LinkMonitor.watch() before start()")
        self._watches[key] = w = _Watch(key, ifname, netns, callback)
        # Subscribe before querying so no change falls between the two.
        if self._ensure_listener(netns):
            self._resync_one(w)
        else:
            self._report(w, False, 0)

    def unwatch(self, key: str) -> None:
        w = self._watches.pop(key, None)
        if w is None:
            return
        if not any(o.netns == w.netns for o in self._watches.values()):
            listener = self._listeners.pop(w.netns, None)
            if listener is not None:
                listener.close()

    # Implementation.

    def _ensure_listener(self, netns: str | None) -> bool:
        if netns in self._listeners:
            return True
        if netns is not None and not netns_exists(netns):
            return False
        listener = _NsListener(netns, self._on_event, self._resync_netns)
        try:
            assert self._loop is not None
            listener.open(self._loop)
        except OSError as exc:
            log.warning("link monitor: cannot listen in netns %s: %s", netns, exc)
            return False
        self._listeners[netns] = listener
        return True

    def _on_event(self, netns: str | None, msg_type: int, info: LinkInfo) -> None:
        for w in list(self._watches.values()):
            if w.netns != netns:
                continue
            if info.ifname == w.ifname:
                if msg_type == RTM_DELLINK:
                    self._report(w, False, 0)
                else:
                    self._report(w, info.up, info.index)
            elif w.index and info.index == w.index:
                self._report(w, False, 0)  # renamed away from the watched name

    def _resync_netns(self, netns: str | None) -> None:
        for w in list(self._watches.values()):
            if w.netns == netns:
                self._resync_one(w)

    def _resync_one(self, w: _Watch) -> None:
        try:
            with in_netns(w.netns), Rtnl() as rtnl:
                info = rtnl.get_link(w.ifname)
        except OSError as exc:
            log.warning("link monitor: cannot query %s: %s", w.ifname, exc)
            info = None
        self._report(w, info is not None and info.up, info.index if info else 0)

    def _report(self, w: _Watch, up: bool, index: int) -> None:
        w.index = index
        if w.up == up:
            return
        w.up = up
        try:
            w.callback(w.key, up)
        except Exception:
            log.exception("link monitor callback for %s failed", w.key)

    async def _poll_netns(self) -> None:
        while True:
            await asyncio.sleep(self._netns_poll_s)
            self._check_namespaces()

    def _check_namespaces(self) -> None:
        wanted = {w.netns for w in self._watches.values() if w.netns is not None}
        for netns in wanted:
            ns_id = netns_id(netns)
            alive = ns_id is not None
            listener = self._listeners.get(netns)
            if listener is not None and listener.ns_id != ns_id:
                # Release our reference so the kernel can tear it down.
                self._listeners.pop(netns).close()
                for w in list(self._watches.values()):
                    if w.netns == netns:
                        self._report(w, False, 0)
                listener = None
            if alive and listener is None and self._ensure_listener(netns):
                self._resync_netns(netns)


# The attach rules (vswitchd/attach_rules.py) listen to every link of the
# daemon's namespace, not to watched names: they use the listener alone.
NsListener = _NsListener
