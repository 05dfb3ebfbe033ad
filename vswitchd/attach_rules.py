"""Attach rules at run time: interfaces that appear become ports, and go with them.

`RuleWatcher` listens to RTMGRP_LINK in the daemon's namespace (the link
monitor's listener, vswitchd/ports/linkmon.py) and keeps two promises:
- an interface matching an [attach.NAME] rule (vswitchd/attach_config.py)
  becomes a port named after it, attached_by "rule NAME", unless a port
  already uses that interface or that name (an explicit [ports.X], or the
  libvirt hook, wins);
- any runtime port (a rule's, the hook's, the ifup script's) is detached
  when its interface disappears: RTM_DELLINK, or a rename away from it.

Events only queue work; one named task applies it in order, since each
change goes through the switch's config lock.  A resync (at start, after a
reload, after the netlink socket overflowed) lists every link and settles
both promises from scratch, so a lost event costs nothing but delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from vswitchd.attach import RULE_PREFIX, Attachments
from vswitchd.attach_config import rule_for
from vswitchd.config import check_port_name
from vswitchd.errors import ConfigError, VswitchError
from vswitchd.ports.base import LinkInfo, Rtnl
from vswitchd.ports.linkmon import RTM_DELLINK, NsListener

log = logging.getLogger(__name__)


def list_links() -> dict[str, int]:
    """Every interface in the daemon's namespace: name -> ifindex."""
    # pyroute2's IPRoute runs an event loop of its own: not inside ours.
    with Rtnl() as rtnl:
        return {link.ifname: link.index for link in rtnl.list_links()}


class RuleWatcher:
    def __init__(self, attachments: Attachments) -> None:
        self.attachments = attachments
        self.switch = attachments.switch
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._listener: NsListener | None = None
        self._task: asyncio.Task[None] | None = None
        self._index: dict[str, int] = {}     # runtime port's interface -> ifindex seen

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._listener = NsListener(None, self._on_event, self._on_overrun)
        self._listener.open(loop)           # subscribe first, then list: nothing falls between
        self._task = asyncio.create_task(self._run(), name="vswitchd-attach-rules")
        self.resync()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def resync(self) -> None:
        self._queue.put_nowait(("resync", ""))

    async def rules_changed(self, changed: tuple[str, ...]) -> None:
        """After a reload: ports of rules that changed or went are detached,
        then a resync attaches what the rules match now."""
        names = [n for n, o in self.attachments.owners.items()
                 if o.startswith(RULE_PREFIX) and o[len(RULE_PREFIX):] in changed]
        if names:
            await self.attachments.detach(names, by=None)
        self.resync()

    # Events (called from the listener's reader; they only queue).

    def _on_event(self, netns: str | None, msg_type: int, info: LinkInfo) -> None:
        kind = "del" if msg_type == RTM_DELLINK else "new"
        seen = self._index.get(info.ifname)
        if kind == "new" and seen is not None and seen != info.index:
            kind = "del"                    # same name, another device: the old one is gone
        for name, index in self._index.items():
            if index == info.index and name != info.ifname:
                self._queue.put_nowait(("del", name))    # renamed away
        self._queue.put_nowait((kind, info.ifname))

    def _on_overrun(self, netns: str | None) -> None:
        self.resync()

    async def _run(self) -> None:
        while True:
            kind, ifname = await self._queue.get()
            try:
                if kind == "resync":
                    await self._resync()
                elif kind == "del":
                    await self._gone(ifname)
                else:
                    await self._appeared(ifname, None)
            except VswitchError as exc:
                log.warning("attach rules: %s: %s", ifname or "resync", exc)
            except Exception:
                log.exception("attach rules: handling %s %s failed", kind, ifname)

    # Work.

    def _runtime_ports_on(self, ifname: str) -> list[str]:
        cfg = self.switch.config
        return [n for n in self.attachments.owners
                if n in cfg.ports and cfg.ports[n].netns is None and cfg.ports[n].ifname == ifname
                and cfg.ports[n].type != "vhostuser"]

    async def _gone(self, ifname: str) -> None:
        self._index.pop(ifname, None)
        names = self._runtime_ports_on(ifname)
        if names:
            log.info("interface %s is gone: detaching %s", ifname, ", ".join(names))
            await self.attachments.detach(names, by=None)

    async def _appeared(self, ifname: str, index: int | None) -> None:
        cfg = self.switch.config
        if self._runtime_ports_on(ifname):
            if index is not None:
                self._index[ifname] = index
            return
        rule = rule_for(cfg.attach, ifname)
        if rule is None:
            return
        if any(p.netns is None and p.ifname == ifname for p in cfg.ports.values()):
            return                          # an explicit port has it
        if ifname in cfg.ports:
            log.warning("attach.%s: %s matches, but a port of that name exists", rule.name,
                        ifname)
            return
        try:
            check_port_name(ifname)
        except ConfigError:
            log.warning("attach.%s: %s matches but is no valid port name", rule.name, ifname)
            return
        await self.attachments.attach([rule.port_for(ifname)], f"{RULE_PREFIX}{rule.name}")
        self._index[ifname] = index if index is not None else list_links().get(ifname, 0)

    async def _resync(self) -> None:
        links = list_links()
        for ifname in list(self._index):
            if links.get(ifname) != self._index[ifname]:
                await self._gone(ifname)
        for ifname in {p.ifname for n, p in self.switch.config.ports.items()
                       if n in self.attachments.owners and p.netns is None
                       and p.type != "vhostuser"}:
            if ifname not in links:
                await self._gone(ifname)
        for ifname, index in sorted(links.items()):
            await self._appeared(ifname, index)
