"""Ports the switch makes at run time for VMs, and who made them.

Three things attach VMs without an operator: attach rules ("rule NAME",
vswitchd/attach_rules.py), the libvirt hook ("libvirt DOMAIN",
vswitchd/libvirt_hook.py) and the QEMU ifup script ("qemu-ifup").  Their
ports are runtime state, not config: the file does not name them, so
- a reload keeps them (`for_reload` adds them to the new file's config),
  except where the file now has a port of the same name or interface (the
  explicit [ports.X] wins) or they name an ACL set the file dropped;
- a runtime port lives as long as its interface: when the interface goes
  (QEMU exited, libvirt deleted the tap) the port goes too (attach_rules.py
  watches for that);
- the hook's and the ifup script's ports are written to a state file beside
  the management socket (`attached.json` in its directory, under /run so a
  reboot forgets it, as it forgets the VMs) and restored when the daemon
  starts, for the interfaces that still exist.  Rule ports need no state:
  the rules find their interfaces again.

`port/attach` is atomic: every port of a request is checked and applied in
one config change, so a domain whose second NIC is wrong starts with none
attached and the switch unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from typing import Any

from vswitchd import config as cfgmod
from vswitchd.acl_config import port_rules
from vswitchd.config import Config, PortConfig, Ports
from vswitchd.control import ControlServer
from vswitchd.errors import ConfigError, VswitchError
from vswitchd.port_args import port_from_kv
from vswitchd.ports.base import IFF_UP, Rtnl
from vswitchd.switch import VSwitch

log = logging.getLogger(__name__)

RULE_PREFIX = "rule "
STATE_FILE = "attached.json"


def state_path(management_socket: str) -> str:
    return os.path.join(os.path.dirname(management_socket) or ".", STATE_FILE)


def link_index(ifname: str) -> int:
    """The ifindex of `ifname` in the daemon's namespace, 0 if there is none."""
    try:
        with Rtnl() as rtnl:
            info = rtnl.get_link(ifname)
    except OSError:
        return 0
    return info.index if info is not None else 0


class Attachments:
    """The runtime ports of one switch: attach, detach, keep across reloads."""

    def __init__(self, switch: VSwitch, state_file: str | None) -> None:
        self.switch = switch
        self.state_file = state_file
        # Taken around every change of the runtime ports and around a reload,
        # so a reload never computes its config while a port is being attached.
        self.lock = asyncio.Lock()

    @property
    def owners(self) -> dict[str, str]:
        return self.switch.attached_by

    # Changes.

    async def attach(self, ports: list[PortConfig], by: str) -> list[str]:
        """Add `ports` for owner `by` in one change; returns what was done per port.

        A port already attached with the same settings is left alone (the
        hook's `reconnect` re-adds only what is missing).  A port made by a
        rule gives way to the hook or the ifup script for the same interface.
        """
        async with self.lock:
            cfg = self.switch.config
            owners = dict(self.owners)
            done: list[str] = []
            for port in ports:
                current = cfg.ports.get(port.name)
                if current is not None and owners.get(port.name) is None:
                    raise VswitchError(f"ports.{port.name}: configured in the config file "
                                       "(a VM cannot take it over)")
                for other in cfg.ports.values():
                    if other.name != port.name and (other.netns, other.ifname) == (
                            port.netns, port.ifname):
                        if not owners.get(other.name, "").startswith(RULE_PREFIX) \
                                or by.startswith(RULE_PREFIX):
                            raise VswitchError(
                                f"ports.{port.name}.ifname: \"{port.ifname}\" is already used "
                                f"by port {other.name}")
                        cfg = cfgmod.without_port(cfg, other.name)
                        owners.pop(other.name, None)
                if current == port and owners.get(port.name) == by:
                    done.append(f"port {port.name} already attached")
                    continue
                cfg = cfgmod.with_port(cfg, port)
                owners[port.name] = by
                done.append(f"port {port.name} attached")
            if cfg is not self.switch.config:
                for port in ports:
                    self._bring_up(port)
                await self.switch.apply(cfg)
            self.switch.attached_by.clear()
            self.switch.attached_by.update(
                {n: o for n, o in owners.items() if n in self.switch.config.ports})
            self._save()
            for line in done:
                log.info("%s (by %s)", line, by)
            return done

    async def detach(self, names: list[str], by: str | None = None) -> list[str]:
        """Remove runtime ports; a name that is not attached is not an error
        (libvirt calls both `stopped` and `release`)."""
        async with self.lock:
            cfg = self.switch.config
            done: list[str] = []
            for name in names:
                owner = self.owners.get(name)
                if name in cfg.ports and owner is None:
                    raise VswitchError(f"ports.{name}: configured in the config file "
                                       "(use vswitchctl port del)")
                if owner is None or (by is not None and owner != by):
                    done.append(f"port {name} not attached" +
                                (f" by {by}" if owner is not None else ""))
                    continue
                cfg = cfgmod.without_port(cfg, name)
                done.append(f"port {name} detached")
            if cfg is not self.switch.config:
                await self.switch.apply(cfg)
            for name in list(self.owners):
                if name not in self.switch.config.ports:
                    del self.owners[name]
            self._save()
            for line in done:
                log.info("%s%s", line, f" (by {by})" if by else "")
            return done

    def for_reload(self, new: Config) -> Config:
        """`new` (the file) plus the runtime ports it does not override.
        Call with `lock` held."""
        ports = dict(new.ports)
        used = {(p.netns, p.ifname) for p in new.ports.values()}
        for name, owner in list(self.owners.items()):
            port = self.switch.config.ports.get(name)
            if port is None:
                continue
            why = None
            if name in ports:
                why = f"the config file now has a port {name}"
            elif (port.netns, port.ifname) in used:
                why = f"the config file now has a port on {port.ifname}"
            else:
                try:
                    port_rules(name, port.acls, new.acls)
                except ConfigError as exc:
                    why = str(exc)
            if why is not None:
                log.warning("port %s (attached by %s) is dropped: %s", name, owner, why)
                del self.owners[name]
                continue
            ports[name] = port
            used.add((port.netns, port.ifname))
        return dataclasses.replace(new, ports=Ports(ports.values()))

    def reloaded(self) -> None:
        for name in list(self.owners):
            if name not in self.switch.config.ports:
                del self.owners[name]
        self._save()

    # The state file.

    def _save(self) -> None:
        if self.state_file is None:
            return
        entries = [{"name": n, "by": o, "port": self.switch.config.ports[n].to_dict()}
                   for n, o in sorted(self.owners.items())
                   if not o.startswith(RULE_PREFIX) and n in self.switch.config.ports]
        tmp = f"{self.state_file}.tmp"
        try:
            # Rules may attach before the management socket has made the directory.
            os.makedirs(os.path.dirname(self.state_file) or ".", mode=0o755, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"version": 1, "ports": entries}, f, indent=1)
            os.replace(tmp, self.state_file)
        except OSError as exc:
            log.warning("cannot write %s: %s (attached ports will not survive a restart)",
                        self.state_file, exc)

    async def restore(self) -> None:
        """Re-attach the hook's and the ifup script's ports after a restart,
        those whose interface is still there."""
        if self.state_file is None or not os.path.exists(self.state_file):
            return
        try:
            with open(self.state_file) as f:
                entries = json.load(f)["ports"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", self.state_file, exc)
            return
        for entry in entries:
            try:
                port = cfgmod.parse_port(entry["name"], entry["port"])
                by = str(entry["by"])
            except (ConfigError, KeyError, TypeError) as exc:
                log.warning("%s: skipping an entry: %s", self.state_file, exc)
                continue
            if port.type == "netdev" and not link_index(port.ifname):
                log.info("port %s (attached by %s) not restored: %s is gone", port.name, by,
                         port.ifname)
                continue
            try:
                await self.attach([port], by)
            except VswitchError as exc:
                log.warning("port %s (attached by %s) not restored: %s", port.name, by, exc)
        async with self.lock:
            self._save()

    @staticmethod
    def _bring_up(port: PortConfig) -> None:
        # A tap QEMU made with script=no (or that an ifup script hands us)
        # is admin down; the switch is what plugs it in.
        if port.type != "netdev":
            return
        try:
            with Rtnl() as rtnl:
                info = rtnl.get_link(port.ifname)
                if info is not None and not info.flags & IFF_UP:
                    rtnl.set_link(info.index, up=True)
        except OSError as exc:
            log.warning("cannot set %s up: %s", port.ifname, exc)


# Management commands.

def _owner(args: dict[str, Any]) -> str:
    by = args.get("by")
    if not isinstance(by, str) or not by.strip() or by.startswith(RULE_PREFIX):
        raise VswitchError('by: who attaches the port is required (e.g. "libvirt web1"; '
                           '"rule ..." is reserved for attach rules)')
    return by.strip()


def _port_requests(args: dict[str, Any]) -> list[PortConfig]:
    ports = args.get("ports")
    if not isinstance(ports, list) or not ports:
        raise VswitchError('ports: a list of {"name": ..., "pairs": [...]} is required')
    out = []
    for p in ports:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise VswitchError('ports: each entry needs a "name"')
        pairs = p.get("pairs") or []
        if not isinstance(pairs, list) or not all(isinstance(x, str) for x in pairs):
            raise VswitchError(f"ports.{p['name']}: pairs must be key=value strings")
        out.append(port_from_kv(p["name"], pairs))
    return out


def register(server: ControlServer, attachments: Attachments) -> None:
    async def attach(a: dict[str, Any]) -> dict[str, Any]:
        return {"message": "; ".join(await attachments.attach(_port_requests(a), _owner(a)))}

    async def detach(a: dict[str, Any]) -> dict[str, Any]:
        names = a.get("names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise VswitchError("names: a list of port names is required")
        by = _owner(a) if a.get("by") is not None else None
        return {"message": "; ".join(await attachments.detach(names, by))}

    server.register("port/attach", attach, 'by=OWNER ports=[{"name": N, "pairs": [k=v...]}]',
                    "Attach VM ports at run time (the libvirt hook, qemu-ifup)")
    server.register("port/detach", detach, "names=[N...] [by=OWNER]",
                    "Detach ports attached at run time")
