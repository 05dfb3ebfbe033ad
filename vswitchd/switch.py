"""The switch as the control plane sees it: ports, workers, the MAC table.

``VSwitch`` owns the C switch (``fastpath.Switch``), one backend per port
(TAP or netdev), the link monitor and the MAC aging timer.  Every change,
from a reload, a ``vswitchctl port ...`` command or a link going down, ends
in ``_publish()``: a new immutable snapshot handed to the workers, which
keep forwarding on every other port while it is swapped in.

Order of operations, and why:
 - a port is opened (its fds exist) before a snapshot names it;
 - a port is closed only after a snapshot without it has been published
   (no worker can still use its fds) and its MAC entries are flushed (its
   id may then be reused);
 - a reload opens every new port before it touches a running one, so a bad
   new config fails with the running switch unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from vswitchd import config as cfgmod
from vswitchd import fdstore, port_args, rebalance, ringstats
from vswitchd.config import Config, ConfigDiff, PortConfig
from vswitchd.errors import VswitchError
from vswitchd.fastpath import MAX_PORTS, PortParams, Switch
from vswitchd.fastpath_acl import Sessions
from vswitchd.fastpath_observe import Capture
from vswitchd.mirrors import MirrorTable
from vswitchd.policy import Policies
from vswitchd.ports import (
    LinkMonitor,
    NetdevPort,
    PortIO,
    TapPort,
    VhostUserPort,
    VxlanPort,
    in_netns,
    netns_exists,
)
from vswitchd.ports.base import Rtnl
from vswitchd.rxq import RxqKey, assign, by_worker

log = logging.getLogger(__name__)

AGING_INTERVAL_S = 1.0


@dataclass
class Port:
    """A vPort at run time: its config, id, backend and link state."""

    cfg: PortConfig
    id: int
    backend: TapPort | NetdevPort | VxlanPort | VhostUserPort
    io: PortIO
    link_up: bool = False
    # Packet ports: their rx path and ring counters as last read by the
    # event loop thread (VSwitch.read_rx_rings), for threads that must not
    # touch the rings themselves (the exporter's).  Replaced whole, never
    # mutated.  None for a TAP.
    rx_ring: ringstats.RxRingReport | None = None
    # In a published snapshot at least once under this id: from then on its
    # counters carry on across gaps (a vhost-user port between connections).
    published: bool = False

    def params(self) -> PortParams:
        return PortParams(
            id=self.id, fds=tuple(self.io.fds), rings=self.io.rings, kind=self.io.kind,
            vxlan=self.io.vxlan, vhost=self.io.vhost,
            mode=self.cfg.mode,
            access_vlan=self.cfg.vlan, native_vlan=self.cfg.native_vlan or 0,
            allowed=self.cfg.vlans, up=self.link_up, vnet_hdr_len=self.io.vnet_hdr_len,
            offload_csum=self.io.offload_csum, offload_tso=self.io.offload_tso,
            mtu=self.io.mtu, allowed_macs=self.cfg.allowed_macs,
            max_macs=self.cfg.max_macs or 0, dhcp_guard=self.cfg.dhcp_guard,
            router_guard=self.cfg.router_guard, broadcast_pps=self.cfg.broadcast_pps or 0,
            multicast_pps=self.cfg.multicast_pps or 0,
            unknown_unicast_pps=self.cfg.unknown_unicast_pps or 0,
            keep_counters=self.published)


def online_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def open_backend(pc: PortConfig,
                 inherited_fds: list[int] | None = None
                 ) -> tuple[TapPort | NetdevPort | VxlanPort | VhostUserPort, PortIO]:
    backend: TapPort | NetdevPort | VxlanPort | VhostUserPort = (
        TapPort(pc, inherited_fds) if pc.type == "tap"
        else VxlanPort(pc) if pc.type == "vxlan"
        else VhostUserPort(pc) if pc.type == "vhostuser" else NetdevPort(pc))
    return backend, backend.open()


class VSwitch:
    def __init__(self, config: Config, inherited: dict[str, list[int]] | None = None) -> None:
        self.config = config
        # TAP queue fds handed back by the service manager's fd store.
        self._inherited = dict(inherited or {})
        self.generation = 0
        # Explicit cpus are used in the order given.  By default workers
        # take the highest-numbered CPUs first: CPU 0 is where interrupts,
        # housekeeping and pinned tools (trafgen, for one) land first.
        self.cpus = list(config.switch.cpus or reversed(online_cpus()))
        self.n_workers = config.switch.workers or len(online_cpus())
        self.ports: dict[str, Port] = {}
        # Configured ports whose interface vanished; retried every second.
        self.lost: dict[str, PortConfig] = {}
        self.rxq: dict[RxqKey, int] = {}
        self._fast: Switch | None = None
        self._policy: Policies | None = None
        # The ACL sets ports resolve against: during a reload, the old and
        # the new ones together (the new win), so a port not yet moved to
        # its new config still finds its sets.
        self._acl_sets = dict(config.acls)
        self._linkmon = LinkMonitor()
        self._aging_task: asyncio.Task[None] | None = None
        self.load = rebalance.LoadSampler()
        self._last_rebalance = time.monotonic()
        self.rebalances = 0
        self._lock = asyncio.Lock()
        # Observation (issue 11): mirror slots, and the live captures every
        # snapshot carries (vswitchd/capture.py adds and removes them).
        self.mirrors = MirrorTable()
        self.captures: list[Capture] = []
        # Ports made at run time (rules, the libvirt hook, qemu-ifup) -> who
        # made them; vswitchd/attach.py keeps it.
        self.attached_by: dict[str, str] = {}

    @property
    def policy(self) -> Policies:
        if self._policy is None:
            raise VswitchError("the switch is not running")
        return self._policy

    def port_ids(self) -> dict[str, int]:
        return {name: p.id for name, p in self.ports.items()}
        self.evpn: Any = None       # the daemon's Evpn when [evpn] is set (metrics read it)

    @property
    def fast(self) -> Switch:
        if self._fast is None:
            raise VswitchError("the switch is not running")
        return self._fast

    # Lifecycle.

    async def start(self) -> None:
        sw = self.config.switch
        self._fast = Switch(self.n_workers, self.cpus, sw.mac_table_size)
        self._fast.set_busy_poll(sw.busy_poll_us)
        self._fast.set_acl_sessions(sw.acl_sessions)
        self._policy = Policies(self.n_workers + 1, Sessions(self._fast.acl_sessions_ptr))
        self._fast.start()
        await self._linkmon.start()
        try:
            for pc in self.config.ports.values():
                self._attach(pc)
            self._publish()
            self._drop_unclaimed_fds()
        except BaseException:
            await self.stop()
            raise
        self.generation = 1
        self._aging_task = asyncio.create_task(self._timer_loop(), name="vswitchd-timers")
        log.info("switch running: %d workers on cpus %s, %d ports",
                 self.n_workers, self.cpus, len(self.ports))

    async def stop(self) -> None:
        if self._aging_task is not None:
            self._aging_task.cancel()
            try:
                await self._aging_task
            except asyncio.CancelledError:
                pass
            self._aging_task = None
        if self._fast is not None:
            detached = list(self.ports.values())
            self.ports.clear()
            self._publish()
            for port in detached:
                self._close(port, keep_stored=True)
        await self._linkmon.stop()
        if self._fast is not None:
            self._fast.stop()
            self._fast.close()
            self._fast = None

    # Configuration.

    async def apply(self, new: Config) -> ConfigDiff:
        """Moves the running switch to config ``new``, changing only what
        differs.  Raises VswitchError, leaving the switch as it was, when a
        new port cannot be opened."""
        async with self._lock:
            return self._apply(new)

    def _apply(self, new: Config) -> ConfigDiff:
        diff = cfgmod.diff(self.config, new)
        if diff.empty:
            # Nothing to publish: the generation counts applied changes.
            log.info("config unchanged (generation %d)", self.generation)
            return diff
        # A lost port only needs its config updated: it reattaches as it is then.
        for name in list(self.lost):
            if name in new.ports:
                self.lost[name] = new.ports[name]
            else:
                del self.lost[name]
        live = set(self.ports)
        self._acl_sets = {**self.config.acls, **new.acls}
        for key in diff.awaiting_restart:
            log.warning("%s: change takes effect at the next restart", key)

        # Open what is new first: if that fails nothing has changed yet.
        opened: list[Port] = []
        try:
            for name in diff.added:
                opened.append(self._attach(new.ports[name], register=False))
        except BaseException:
            for port in opened:
                self._close(port)
            raise

        for name in diff.removed:
            if name in live:
                self._detach(name)
        for name in diff.recreate:
            if name not in live:
                continue
            self._detach(name)
            try:
                self._attach(new.ports[name])
            except VswitchError:
                self._attach(self.config.ports[name])
                raise
        for name in diff.changed:
            if name not in diff.recreate and name in live:
                self._update_in_place(self.ports[name], new.ports[name])
        for port in opened:
            self._register(port)

        kept = {k: v for k, v in new.switch.__dict__.items()
                if k not in cfgmod.RESTART_FIELDS}
        switch_cfg = type(new.switch)(**{**self.config.switch.__dict__, **kept})
        # The management socket in use stays what it is until a restart, so
        # the running config keeps saying so (and the next reload warns again).
        self.config = Config(switch=switch_cfg, management=self.config.management, acls=new.acls,
                             metrics=new.metrics, ports=new.ports, mirrors=new.mirrors,
                             evpn=self.config.evpn, attach=new.attach)
        self.fast.set_busy_poll(switch_cfg.busy_poll_us)
        self._acl_sets = dict(new.acls)
        self._publish()
        if diff.mirrors_changed:
            # A new output port is reserved: what it had learned must go.
            for _, m in new.mirrors:
                if m.output_port in self.ports:
                    self.fast.macs.flush(port=self.ports[m.output_port].id)
        self.generation += 1
        log.info("config generation %d: +%s -%s ~%s", self.generation,
                 ",".join(diff.added) or "0", ",".join(diff.removed) or "0",
                 ",".join(diff.changed) or "0")
        return diff

    async def port_add(self, name: str, pairs: list[str]) -> str:
        if name in self.config.ports:
            raise VswitchError(f"ports.{name}: port already exists")
        await self.apply(cfgmod.with_port(self.config, port_args.port_from_kv(name, pairs)))
        return f"port {name} added"

    async def port_del(self, name: str) -> str:
        await self.apply(cfgmod.without_port(self.config, name))
        self.attached_by.pop(name, None)
        return f"port {name} deleted"

    async def port_set(self, name: str, pairs: list[str]) -> str:
        if name not in self.config.ports:
            raise VswitchError(f"ports.{name}: no such port")
        updated = port_args.port_update(self.config.ports[name], pairs)
        await self.apply(cfgmod.with_port(self.config, updated))
        return f"port {name} updated"

    # Ports.

    def _free_id(self) -> int:
        used = {p.id for p in self.ports.values()}
        for i in range(MAX_PORTS):
            if i not in used:
                return i
        raise VswitchError(f"ports: at most {MAX_PORTS} ports")

    def _drop_unclaimed_fds(self) -> None:
        """Closes inherited fds no configured port claimed (a TAP removed
        from the config while vswitchd was down) and drops them from the
        service manager's store, so their devices can go away."""
        for name, fds in self._inherited.items():
            log.info("closing %d inherited fds of %s: no port uses them", len(fds), name)
            for fd in fds:
                os.close(fd)
            fdstore.remove(name)
        self._inherited.clear()

    def _attach(self, pc: PortConfig, register: bool = True) -> Port:
        stored = fdstore.tap_name(pc.ifname)
        inherited = self._inherited.pop(stored, None) if pc.type == "tap" else None
        backend, io = open_backend(pc, inherited)
        if pc.type == "tap" and pc.persist:
            fdstore.store(stored, list(io.fds))
        elif inherited:
            fdstore.remove(stored)
        port = Port(cfg=pc, id=-1, backend=backend, io=io)
        port.link_up = backend.read_link_state()
        self._read_rx_ring(port)
        if register:
            self._register(port)
        return port

    def _register(self, port: Port) -> None:
        port.id = self._free_id()
        self.ports[port.cfg.name] = port
        if isinstance(port.backend, VhostUserPort):
            port.backend.on_change = lambda: self._on_vhost(port.cfg.name)
        elif port.cfg.type != "vxlan":    # no interface to follow: up while open
            self._linkmon.watch(port.cfg.name, port.cfg.ifname, port.cfg.netns, self._on_link)
        log.info("port %s (%s %s) attached as id %d, link %s", port.cfg.name, port.cfg.type,
                 port.cfg.ifname, port.id, "up" if port.link_up else "down")

    def _detach(self, name: str) -> None:
        port = self.ports.pop(name)
        self._publish()
        self._close(port)
        log.info("port %s detached", name)

    def _close(self, port: Port, keep_stored: bool = False) -> None:
        """Closes ``port``.  A persistent TAP's fds stay in the service
        manager's store when the daemon stops (``keep_stored``), so its
        carrier survives a restart; a port removed for good leaves it."""
        if port.cfg.type == "tap" and port.cfg.persist and not keep_stored:
            fdstore.remove(fdstore.tap_name(port.cfg.ifname))
        self._linkmon.unwatch(port.cfg.name)
        if port.id >= 0 and self._fast is not None:
            self._fast.macs.flush(port=port.id)
            self.policy.port_closed(port.cfg.name, port.id)
        port.backend.close()

    def _update_in_place(self, port: Port, pc: PortConfig) -> None:
        old = port.cfg
        if pc.offload != old.offload:
            port.io = port.backend.set_offload(pc.offload.csum, pc.offload.tso)
        port.cfg = pc
        if ((pc.mode, pc.vlan, pc.vlans, pc.native_vlan) != (old.mode, old.vlan, old.vlans,
                                                               old.native_vlan)
                or (pc.allowed_macs, pc.max_macs) != (old.allowed_macs, old.max_macs)):
            # Entries learned under the old VLAN rules may be wrong now, and
            # max_macs counts only the entries it admitted (csrc/vs_guard.h).
            self._publish()
            self.fast.macs.flush(port=port.id)

    def _device_present(self, port: Port) -> bool:
        """Whether the interface ``port`` was opened on still exists (same
        ifindex, and its namespace still there)."""
        pc = port.cfg
        if pc.netns is not None and not netns_exists(pc.netns):
            return False
        try:
            with in_netns(pc.netns if pc.type == "tap" else None), Rtnl() as rtnl:
                info = rtnl.get_link(pc.ifname)
        except OSError:
            return False
        return info is not None and (not port.io.ifindex or info.index == port.io.ifindex)

    def _lose(self, port: Port) -> None:
        """The interface under ``port`` vanished (deleted, its namespace
        removed, its VM killed): detach what is left, keep the port
        configured, and reattach it once the interface is back."""
        name = port.cfg.name
        log.warning("port %s: interface %s is gone; it will be reattached when it is back",
                    name, port.cfg.ifname)
        self.ports.pop(name)
        self._publish()
        self._close(port)
        self.lost[name] = port.cfg

    def _retry_lost(self) -> None:
        back = []
        for name, pc in list(self.lost.items()):
            try:
                self._attach(pc)
            except (VswitchError, OSError) as exc:
                log.debug("port %s still absent: %s", name, exc)
                continue
            del self.lost[name]
            back.append(name)
        if back:
            self._publish()
            log.info("reattached %s", ", ".join(back))

    def _on_link(self, name: str, up: bool) -> None:
        port = self.ports.get(name)
        if port is None:
            return
        # Events can be stale (queued while the port was being set up):
        # what counts is the state now.
        up = port.backend.read_link_state()
        if not up and not self._device_present(port):
            self._lose(port)
            return
        if port.link_up == up:
            return
        port.link_up = up
        log.info("port %s link %s", name, "up" if up else "down")
        self._publish()
        if not up:
            # A port that goes down forgets its hosts, as a physical port does.
            self.fast.macs.flush(port=port.id)

    def _on_vhost(self, name: str) -> None:
        """A vhost-user port's device started, changed or stopped
        (vswitchd/ports/vhostuser.py): publish it, or its absence."""
        port = self.ports.get(name)
        if port is None or not isinstance(port.backend, VhostUserPort):
            return
        port.io = port.backend.io
        port.link_up = port.backend.read_link_state()
        self._publish()
        if not port.link_up:
            self.fast.macs.flush(port=port.id)

    def _publish(self) -> None:
        # A port without queues (a vhost-user port with no running device)
        # is left out of the snapshot until it has some.
        ports = sorted((p for p in self.ports.values() if p.io.fds), key=lambda p: p.id)
        queues = [(p.cfg.name, q) for p in ports for q in range(len(p.io.fds))]
        load = self.load.rxq_load if self.config.switch.rxq_assign == "cycles" else None
        self.rxq = assign(queues, self.n_workers, previous=self.rxq, load=load)
        ids = {p.cfg.name: p.id for p in ports}
        rxqs = {w: [(ids[name], q) for name, q in keys]
                for w, keys in by_worker(self.rxq).items()}
        self.policy.prepare(self._acl_sets, [p.cfg for p in ports])
        self.fast.publish([dataclasses.replace(p.params(), **self.policy.c_fields(p.cfg.name))
                           for p in ports], rxqs,
                          mirrors=self.mirrors.params(self.fast, self.config.mirrors, ids),
                          captures=self.captures)
        for p in ports:
            p.published = True
        self.policy.published(ids)

    # Captures (vswitchd/capture.py): a capture is in every snapshot from
    # add_capture() until remove_capture() returns; only then may it be freed.

    def add_capture(self, cap: Capture) -> None:
        self.captures.append(cap)
        self._publish()

    def remove_capture(self, cap: Capture) -> None:
        if cap in self.captures:
            self.captures.remove(cap)
            if self._fast is not None:
                self._publish()

    # Timers.

    async def _timer_loop(self) -> None:
        self._take_sample()
        ticks = 0
        while True:
            await asyncio.sleep(AGING_INTERVAL_S)
            ticks += 1
            sw = self.config.switch
            aged = self.fast.macs.age(int(time.monotonic()), sw.mac_aging_s)
            if aged:
                log.debug("aged out %d MAC entries", aged)
            if self.lost:
                self._retry_lost()
            ids = self.port_ids()
            self.policy.expire({v: k for k, v in ids.items()})
            self.policy.refresh(ids)
            # Every tick, scraped or not: the kernel's ring counters are
            # 32-bit and reset on each read, so reading often keeps them
            # from wrapping, and the exporter's copy at most a tick old.
            self.read_rx_rings()
            if ticks % sw.rebalance_sample_s == 0:
                self._take_sample()
                self._maybe_rebalance()

    def _take_sample(self) -> None:
        sw = self.config.switch
        queues = {(p.cfg.name, q): self.fast.rxq_stats(p.id, q).busy_ns
                  for p in self.ports.values() for q in range(len(p.io.fds))}
        workers = [self.fast.worker_stats(w) for w in range(self.n_workers)]
        self.load.take(time.monotonic_ns(), [(w.busy_ns, w.idle_ns) for w in workers], queues,
                       keep=max(1, sw.rebalance_interval_s // sw.rebalance_sample_s))

    def _maybe_rebalance(self) -> None:
        sw = self.config.switch
        if not sw.rebalance_interval_s or self.n_workers < 2:
            return
        if time.monotonic() - self._last_rebalance < sw.rebalance_interval_s:
            return
        needed = max(1, sw.rebalance_interval_s // sw.rebalance_sample_s)
        if self.load.overloaded(sw.rebalance_load_threshold / 100, needed):
            self.rebalance(force=False)

    def rebalance(self, force: bool = True) -> str:
        """Reassigns rx queues by their measured load; without ``force``
        only when that improves the busiest worker by the configured
        percentage.  Returns what was done, for the log and vswitchctl."""
        if not self.load.rxq_load:
            self._take_sample()
        plan = rebalance.plan(self.rxq, self.load.rxq_load, self.n_workers)
        self._last_rebalance = time.monotonic()
        before = "/".join(f"{x:.0%}" for x in plan.before)
        after = "/".join(f"{x:.0%}" for x in plan.after)
        if not plan.moves:
            msg = f"rebalance: assignment already balanced (worker loads {before})"
        elif not force and plan.improvement_pct < self.config.switch.rebalance_improvement:
            msg = (f"rebalance: skipped, improvement {plan.improvement_pct:.0f}% is below "
                   f"{self.config.switch.rebalance_improvement}% (worker loads {before})")
        else:
            self.rxq = plan.assignment
            self._publish()
            self.rebalances += 1
            self.load.forget_history()
            msg = (f"rebalance: moved {plan.moves} rx queues, worker loads {before} -> "
                   f"{after} (expected)")
        log.info("%s", msg)
        return msg

    # Reporting.

    def read_rx_rings(self) -> None:
        """Refreshes every packet port's ``rx_ring`` report.  Event loop
        thread only (see vswitchd/ringstats.py)."""
        for port in self.ports.values():
            self._read_rx_ring(port)

    @staticmethod
    def _read_rx_ring(port: Port) -> None:
        if port.io.kind == "packet":
            port.rx_ring = ringstats.read(port.io.rings)

    def port_by_name(self, name: str | None) -> Port | None:
        if name is None:
            return None
        if name not in self.ports:
            raise VswitchError(f"ports.{name}: no such port")
        return self.ports[name]

    def fdb_flush(self, vlan: int | None = None, port: str | None = None) -> dict[str, int]:
        want = self.port_by_name(port)
        n = self.fast.macs.flush(vlan=vlan, port=None if want is None else want.id)
        return {"flushed": n}
