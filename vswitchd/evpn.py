"""BGP EVPN for vxlan ports (RFC 7432, RFC 8365), through GoBGP.

Once a second `Evpn` reconciles three things:
 - what this host advertises: a type-3 (IMET) route per VNI of the vxlan
   port, and a type-2 (MAC) route per MAC learned on a local port of a
   VLAN that has a VNI (withdrawn when the MAC ages out, is flushed or its
   port goes);
 - what the switch installs from received routes: type-3 originators join
   the flood list of the route's VNI (beside static `peers`, in all), type-2 MACs become
   static remote MAC table entries at (vxlan port, VTEP): never aged, not
   moved by overlay traffic, removed when their route is withdrawn;
 - gobgpd itself: in "spawn" mode vswitchd runs its own (API on 127.0.0.1
   only) and restarts it when it dies; its routes are then re-advertised
   from scratch.  Sessions use graceful restart, so the peers keep our
   routes while it is down.  With an external gobgpd, our leftover paths of a previous
   run are withdrawn at start.

MAC mobility: a MAC we learn locally while a remote route for it exists is
advertised with that route's sequence number + 1, and the remote entry is
not installed.  Churn damping: a MAC's route changes at most once per
DAMP_S seconds; changes in between wait for the next pass.

Defaults follow FRR: RD router-id:VLAN, route target ASN:VNI; [evpn.vni.N]
overrides rd and route_targets per VNI (and then imports only routes that
carry one of those route targets).  Only the
first vxlan port takes part.  All gRPC calls run in a thread (they block);
the MAC table and the VTEP table are safe to touch from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from vswitchd.errors import VswitchError
from vswitchd.fastpath import MAC_STATIC, mac_port, mac_vtep
from vswitchd.gobgp import GobgpClient, GobgpError, ImetRoute, MacRoute
from vswitchd.vxlan_config import EvpnConfig

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 1.0
# With no BGP session up, what the switch installed stays (stale, as
# graceful restart keeps routes, RFC 4724) this long before it is removed:
# a restarted gobgpd starts with an empty RIB, and forwarding to installed
# entries must not stop while its session comes back.
STALE_HOLD_S = 120.0
DAMP_S = 5.0
SEQ_MEMORY_S = 600.0        # how long a withdrawn remote MAC's sequence is remembered

GOBGPD_CONF = """\
[global.config]
  as = {asn}
  router-id = "{rid}"
  local-address-list = ["{local}"]
{neighbors}"""
NEIGHBOR_CONF = """
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {asn}
  [neighbors.transport.config]
    local-address = "{local}"
  [neighbors.timers.config]
    connect-retry = 1
  [neighbors.graceful-restart.config]
    enabled = true
    restart-time = 120
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
    [neighbors.afi-safis.mp-graceful-restart.config]
      enabled = true
"""


@dataclass
class _Overlay:
    """The vxlan port EVPN serves, as read in the event loop thread."""

    port_id: int
    vxlan: Any
    local_ip: str
    vni_of: dict[int, int]                  # VLAN -> VNI
    peers: frozenset[str]
    local_ports: frozenset[int]             # ids of the other ports


@dataclass
class _State:
    advertised: dict[tuple, tuple[Any, bytes]] = field(default_factory=dict)  # key -> (route, uuid)
    changed_at: dict[tuple, float] = field(default_factory=dict)
    installed: dict[tuple[int, str], int] = field(default_factory=dict)  # (vlan, mac) -> word
    flood: set[tuple[str, int]] = field(default_factory=set)  # (VTEP, VNI) from type-3
    # The highest sequence number seen in a remote route per (VLAN, MAC),
    # kept after the route goes: a VM that moves here often arrives after
    # its old host withdrew it, and must still win with a higher number.
    remote_seq: dict[tuple[int, str], int] = field(default_factory=dict)
    remote_seen: dict[tuple[int, str], float] = field(default_factory=dict)
    remote_since: dict[tuple[int, str], int] = field(default_factory=dict)
    sessions_down_since: float | None = None    # no session up since then
    received: dict[str, int] = field(default_factory=lambda: {"type2": 0, "type3": 0})


class Evpn:
    def __init__(self, cfg: EvpnConfig, switch: Any) -> None:
        self.cfg = cfg
        self.switch = switch
        self.spawned = cfg.gobgpd == "spawn"
        self.target = "" if self.spawned else cfg.gobgpd
        self.client: GobgpClient | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.state = _State()
        self.sessions: list[Any] = []
        self.restarts = 0

    # Lifecycle.

    async def start(self) -> None:
        if self.spawned:
            self._dir = tempfile.TemporaryDirectory(prefix="vswitchd-gobgpd-")
            await asyncio.to_thread(self._spawn)
        else:
            self.client = GobgpClient(self.target)
            await asyncio.to_thread(self._wait_api)
            await asyncio.to_thread(self.client.withdraw_own_evpn)
        self._task = asyncio.create_task(self._loop(), name="vswitchd-evpn")
        log.info("evpn: AS %d router-id %s, gobgpd %s%s", self.cfg.asn, self.cfg.router_id,
                 self.target, " (spawned)" if self.spawned else "")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.client is not None and not self.spawned:
            with contextlib.suppress(GobgpError):
                await asyncio.to_thread(self._withdraw_all)
        await asyncio.to_thread(self._kill)
        if self.client is not None:
            self.client.close()
            self.client = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def _spawn(self) -> None:
        """Starts our gobgpd (blocking) and connects to its API."""
        assert self._dir is not None
        local = self._local_ip() or self.cfg.router_id
        conf = os.path.join(self._dir.name, "gobgpd.toml")
        with open(conf, "w") as f:
            f.write(GOBGPD_CONF.format(
                asn=self.cfg.asn, rid=self.cfg.router_id, local=local,
                neighbors="".join(NEIGHBOR_CONF.format(addr=n, asn=self.cfg.asn, local=local)
                                  for n in self.cfg.neighbors)))
        with socket.socket() as s:          # a free port for the API, on loopback only
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.target = f"127.0.0.1:{port}"
        logf = open(os.path.join(self._dir.name, "gobgpd.log"), "ab")
        # Graceful restart (RFC 4724): when our gobgpd dies, peers keep our
        # routes as stale for restart-time, so forwarding to us goes on; a
        # respawned one says so with -r ("restarting").
        restarting = ["-r"] if self.restarts else []
        self._proc = subprocess.Popen(["gobgpd", "-f", conf, "--api-hosts", self.target,
                                       "--pprof-disable", *restarting], stdout=logf,
                                      stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        if self.client is not None:
            self.client.close()
        self.client = GobgpClient(self.target)
        self._wait_api()
        self.state.advertised.clear()       # a new gobgpd knows none of them: all
        self.state.changed_at.clear()       # go again at once, not damped

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _wait_api(self, timeout_s: float = 10.0) -> None:
        assert self.client is not None
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client.router_id()
                return
            except GobgpError:
                if self._proc is not None and self._proc.poll() is not None:
                    raise VswitchError(f"evpn: gobgpd exited {self._proc.returncode} "
                                       "at start") from None
                if time.monotonic() >= deadline:
                    raise VswitchError(f"evpn: gobgpd API {self.target} not answering") from None
                time.sleep(0.1)

    def _local_ip(self) -> str | None:
        o = self._overlay()
        return o.local_ip if o else None

    async def _loop(self) -> None:
        failing = False
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                log.warning("evpn: gobgpd exited %s; restarting it", self._proc.returncode)
                self.restarts += 1
                try:
                    await asyncio.to_thread(self._spawn)
                except VswitchError as exc:
                    log.error("%s", exc)
            overlay = self._overlay()
            if overlay is not None:
                local = self._local_macs(overlay)
                try:
                    await asyncio.to_thread(self._sync, overlay, local)
                    if failing:
                        log.info("evpn: gobgpd %s answers again", self.target)
                    failing = False
                except GobgpError as exc:
                    if not failing:
                        log.warning("evpn: %s", exc)
                    failing = True
            await asyncio.sleep(SYNC_INTERVAL_S)

    # Reconciling.

    def _overlay(self) -> _Overlay | None:
        ports = list(self.switch.ports.values())
        for p in ports:
            if p.cfg.type == "vxlan" and p.io.vxlan is not None:
                vc = p.cfg.vxlan
                return _Overlay(p.id, p.io.vxlan, vc.local_ip, dict(vc.vni_map),
                                frozenset(vc.peers),
                                frozenset(q.id for q in ports if q is not p))
        return None

    def _local_macs(self, o: _Overlay) -> dict[tuple[int, str], tuple[int, int]]:
        """(VLAN, MAC) -> (VNI, last seen, s) of every MAC learned on a local port."""
        return {(e.vlan, e.mac): (o.vni_of[e.vlan], e.seen_s)
                for e in self.switch.fast.macs.dump()
                if not mac_vtep(e.port) and mac_port(e.port) in o.local_ports
                and e.vlan in o.vni_of}

    def _rd(self, vlan: int, vni: int) -> str:
        return self.cfg.override(vni).rd or f"{self.cfg.router_id}:{vlan}"

    def _rt(self, vni: int) -> tuple[str, ...]:
        rts = self.cfg.override(vni).route_targets
        return rts if rts is not None else (f"{self.cfg.asn % 65536}:{vni}",)

    def _imports(self, route: MacRoute | ImetRoute) -> bool:
        """Whether a received route is for us: by its VNI, and with route
        targets overridden for that VNI, only when it carries one of them."""
        rts = self.cfg.override(route.vni).route_targets
        return rts is None or bool(set(rts) & set(route.route_targets))

    def _sync(self, o: _Overlay, local: dict[tuple[int, str], tuple[int, int]]) -> None:
        assert self.client is not None
        st = self.state
        vlan_of = {vni: vlan for vlan, vni in o.vni_of.items()}
        received = [r for r in self.client.list_evpn() if self._imports(r)]
        remote2 = {(vlan_of[r.vni], r.mac): r for r in received
                   if isinstance(r, MacRoute) and r.neighbor and r.vni in vlan_of}
        # (VTEP, VNI): a type-3 route asks for one VNI's BUM traffic.
        remote3 = {(r.originator, r.vni) for r in received
                   if isinstance(r, ImetRoute) and r.neighbor and r.vni in vlan_of
                   and r.originator != o.local_ip}
        st.received = {"type2": len(remote2), "type3": len(remote3)}
        now = time.monotonic()
        for key, r in remote2.items():
            if key not in st.remote_seq or r.seq > st.remote_seq[key]:
                st.remote_since[key] = int(now)     # when this claim was first seen
            st.remote_seq[key] = max(st.remote_seq.get(key, 0), r.seq)
            st.remote_seen[key] = now
        for key in [k for k, seen in st.remote_seen.items() if now - seen > SEQ_MEMORY_S]:
            del st.remote_seq[key], st.remote_seen[key]
            st.remote_since.pop(key, None)
        self.sessions = self.client.sessions()     # for the exporter: no gRPC at scrape
        if any(s.up for s in self.sessions):
            st.sessions_down_since = None
        elif st.sessions_down_since is None:
            st.sessions_down_since = now
        hold_stale = (st.sessions_down_since is not None
                      and now - st.sessions_down_since < STALE_HOLD_S)

        # What we advertise.
        want: dict[tuple, Any] = {}
        for vlan, vni in o.vni_of.items():
            want[("imet", vni)] = ImetRoute(vni, o.local_ip, o.local_ip, self._rd(vlan, vni),
                                            self._rt(vni))
        here: set[tuple[int, str]] = set()
        for (vlan, mac), (vni, seen_s) in local.items():
            prev = st.advertised.get(("mac", vni, mac))
            seq = prev[0].seq if prev else 0
            theirs = st.remote_seq.get((vlan, mac))
            if theirs is not None and theirs >= seq:
                live = (vlan, mac) in remote2
                if live and seen_s <= st.remote_since.get((vlan, mac), 0):
                    # Claimed elsewhere with a higher number and not heard
                    # here since: it moved away; our entry is stale.
                    continue
                seq = theirs + 1                # it moved here (RFC 7432 section 15)
            here.add((vlan, mac))
            want[("mac", vni, mac)] = MacRoute(vni, mac, o.local_ip, self._rd(vlan, vni),
                                               self._rt(vni), seq=seq)
        for key in set(st.advertised) | set(want):
            old = st.advertised.get(key)
            if (old[0] if old else None) == want.get(key) or not self._may_change(key, now):
                continue
            if old is not None:
                self.client.delete(st.advertised.pop(key)[1])
            if key in want:
                st.advertised[key] = (want[key], self.client.add(want[key]))

        # What we install: nothing changes while no session is up (the RIB
        # may be empty only because gobgpd just restarted).
        if hold_stale:
            return
        vx = o.vxlan
        # Per VNI, beside the static peers' all-VNI flag.
        for addr, vni in remote3 - st.flood:
            vx.set_flood_vni(vx.add_vtep(addr, flood=False), vni, True)
        for addr, vni in st.flood - remote3:
            idx = _vtep_index(vx, addr)
            if idx:
                vx.set_flood_vni(idx, vni, False)
        st.flood = set(remote3)
        installs: dict[tuple[int, str], int] = {}
        for (vlan, mac), r in remote2.items():
            if (vlan, mac) not in here:        # a stale local entry is moved over
                installs[(vlan, mac)] = o.port_id | (vx.add_vtep(r.nexthop, flood=False) << 16)
        macs = self.switch.fast.macs
        for key, word in st.installed.items():
            if installs.get(key) != word:
                macs.flush_exact(key[0], word)  # takes others at that VTEP too: re-learned below
        # Static entries: never aged, and traffic from the overlay cannot
        # move them; only a frame from a local port can (a VM that moved
        # here).  Learning an entry that is in place is a no-op, so every
        # pass also restores one an operator's flush took away.
        for (vlan, mac), word in installs.items():
            macs.learn(vlan, mac, word, MAC_STATIC)
        st.installed = installs

    def _may_change(self, key: tuple, now: float) -> bool:
        if key[0] != "mac":
            return True
        last = self.state.changed_at.get(key)
        if last is not None and now - last < DAMP_S:
            return False
        self.state.changed_at[key] = now
        return True

    def _withdraw_all(self) -> None:
        assert self.client is not None
        for _, uuid in self.state.advertised.values():
            self.client.delete(uuid)
        self.state.advertised.clear()

    # Reporting.

    def received_macs(self) -> list[dict[str, Any]]:
        return [{"vlan": vlan, "mac": mac, "seq": seq}
                for (vlan, mac), seq in sorted(self.state.remote_seq.items())]

    def metrics_snapshot(self) -> dict[str, Any]:
        """What the exporter shows, as of the last pass (any thread)."""
        sent = {"type2": sum(1 for k in self.state.advertised if k[0] == "mac"),
                "type3": sum(1 for k in self.state.advertised if k[0] == "imet")}
        return {"sent": sent, "received": dict(self.state.received),
                "sessions": {s.neighbor: s.up for s in self.sessions}}

    def show(self) -> dict[str, Any]:
        sent = {"type2": sum(1 for k in self.state.advertised if k[0] == "mac"),
                "type3": sum(1 for k in self.state.advertised if k[0] == "imet")}
        sessions: list[dict[str, Any]] = []
        if self.client is not None:
            try:
                sessions = [dataclasses.asdict(s) for s in self.client.sessions()]
            except GobgpError as exc:
                sessions = [{"neighbor": "-", "state": f"unknown ({exc})"}]
        return {"enabled": True, "asn": self.cfg.asn, "router_id": self.cfg.router_id,
                "gobgpd": self.target, "spawned": self.spawned, "restarts": self.restarts,
                "gobgpd_pid": self._proc.pid if self._proc is not None else None,
                "sessions": sessions, "routes": {"sent": sent, "received": self.state.received},
                "received_macs": self.received_macs(),
                "sent_macs": sorted(({"vni": k[1], "mac": k[2], "seq": r.seq}
                                     for k, (r, _) in self.state.advertised.items()
                                     if k[0] == "mac"), key=lambda m: (m["vni"], m["mac"])),
                "flood_list": sorted({addr for addr, _ in self.state.flood})}


def _vtep_index(vx: Any, addr: str) -> int:
    for v in vx.vteps():
        if v.address == addr:
            return int(v.index)
    return 0
