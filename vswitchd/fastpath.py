"""The module that touches the C fast path (``vswitchd._fastpath``), with
``vswitchd.fastpath_acl`` beside it for port policy.

It checks arguments, owns the C objects and buffers, and turns C return
codes into exceptions, so the rest of the control plane deals in plain
Python values.  The C library releases the GIL for every call (cffi's
out-of-line API mode does so by default), so a publish that waits for the
workers' grace period never stalls other Python threads.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vswitchd._fastpath import ffi, lib
from vswitchd.errors import VswitchError

if TYPE_CHECKING:
    from vswitchd.fastpath_observe import Capture, MirrorParams

MAX_PORTS: int = lib.VS_MAX_PORTS
MAX_WORKERS: int = lib.VS_MAX_WORKERS
MAX_QUEUES: int = lib.VS_MAX_QUEUES
PORT_NONE: int = lib.VS_PORT_NONE
# A MAC entry's seen_s for an entry the control plane installed (never aged,
# not moved by overlay traffic: csrc/vs_mac_table.h).
MAC_STATIC: int = lib.VS_MAC_STATIC

COUNTER_NAMES: tuple[str, ...] = tuple(
    ffi.string(lib.vs_counter_name(i)).decode() for i in range(lib.VS_N_COUNTERS)
)
COUNTER_HELP: dict[str, str] = {
    name: ffi.string(lib.vs_counter_help(i)).decode() for i, name in enumerate(COUNTER_NAMES)
}
# Counters from VS_C_FIRST_DROP on are drop reasons.
TRAFFIC_COUNTERS: tuple[str, ...] = COUNTER_NAMES[: lib.VS_C_FIRST_DROP]
DROP_REASONS: tuple[str, ...] = COUNTER_NAMES[lib.VS_C_FIRST_DROP :]


class FastpathError(VswitchError):
    """The C fast path refused a request."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        raise FastpathError(f"{what}: {os.strerror(rc)} ({errno.errorcode.get(rc, rc)})")


@dataclass(frozen=True)
class PortParams:
    """One port as the fast path sees it (mirrors struct vs_port_params)."""

    id: int
    fds: tuple[int, ...]
    kind: str = "fd"                     # "fd" (TAP queues) or "packet" (datagram sockets)
    mode: str = "access"                 # "access" or "trunk"
    access_vlan: int = 1
    native_vlan: int = 0                 # trunk: 0 = no native VLAN
    allowed: tuple[tuple[int, int], ...] = ((1, 4094),)   # trunk: inclusive ranges
    up: bool = True
    vnet_hdr_len: int = 0
    offload_csum: bool = False
    offload_tso: bool = False
    mtu: int = 0                         # 0 = no MTU check
    # Guards (csrc/vs_guard.h); the defaults turn them off.
    allowed_macs: tuple[str, ...] = ()   # source MACs the port may use; () = any
    max_macs: int = 0                    # MAC table entries on the port; 0 = unlimited
    dhcp_guard: bool = False
    router_guard: bool = False
    broadcast_pps: int = 0               # storm control, frames/s; 0 = unlimited
    multicast_pps: int = 0
    unknown_unicast_pps: int = 0
    # Packet ports: the rx ring of each queue, aligned with ``fds`` (None or
    # missing = none).  The port owns them; see Ring for when to detach.
    rings: tuple[Ring | None, ...] = ()
    # Policy (csrc/vs_policy.h): the compiled ACL's ``struct vs_acl *``
    # (fastpath_acl.Acl.c_acl; owned by the port, None = no ACL) and the
    # bandwidth limits in bit/s (0 = none) with their bucket depth.
    acl: object | None = None
    max_bps_out: int = 0
    max_bps_in: int = 0
    max_burst_bytes: int = 0
    # The port was published before under this id (a vhost-user port that
    # left the snapshot between connections): its counters go on.
    keep_counters: bool = False
    # Vxlan ports (kind "vxlan"): their VTEP, owned by the port.
    vxlan: Vxlan | None = None
    # Vhost-user ports (kind "vhost"): the running device, a
    # fastpath_vhost.Vhost owned by the port.
    vhost: Any = None

    def to_c(self) -> object:
        p = ffi.new("struct vs_port_params *")
        p.id = self.id
        p.kind = _PORT_KINDS.get(self.kind, lib.VS_PORT_FD)
        p.vxlan = self.vxlan.c_vxlan if self.vxlan is not None else ffi.NULL
        p.vhost = self.vhost.c_vhost if self.vhost is not None else ffi.NULL
        p.mode = lib.VS_MODE_TRUNK if self.mode == "trunk" else lib.VS_MODE_ACCESS
        p.access_vlan = self.access_vlan
        p.native_vlan = self.native_vlan
        words = [0] * 64
        for lo, hi in self.allowed:
            for vid in range(lo, hi + 1):
                words[vid >> 6] |= 1 << (vid & 63)
        for i, w in enumerate(words):
            p.allowed[i] = w
        p.up = int(self.up)
        if not 1 <= len(self.fds) <= MAX_QUEUES:
            raise FastpathError(f"port {self.id}: {len(self.fds)} queues, allowed 1-{MAX_QUEUES}")
        p.n_queues = len(self.fds)
        for i, fd in enumerate(self.fds):
            p.fds[i] = fd
        if len(self.rings) > len(self.fds):
            raise FastpathError(f"port {self.id}: {len(self.rings)} rings for "
                                f"{len(self.fds)} queues")
        for i, ring in enumerate(self.rings):
            p.rings[i] = ring.c_ring if ring is not None else ffi.NULL
        p.vnet_hdr_len = self.vnet_hdr_len
        p.offload_csum = int(self.offload_csum)
        p.offload_tso = int(self.offload_tso)
        p.mtu = self.mtu
        if len(self.allowed_macs) > len(p.allowed_macs):
            raise FastpathError(f"port {self.id}: {len(self.allowed_macs)} allowed MACs, "
                                f"allowed at most {len(p.allowed_macs)}")
        p.n_allowed_macs = len(self.allowed_macs)
        for i, m in enumerate(self.allowed_macs):
            p.allowed_macs[i] = list(mac_to_bytes(m))
        p.max_macs = self.max_macs
        p.dhcp_guard = int(self.dhcp_guard)
        p.router_guard = int(self.router_guard)
        p.broadcast_pps = self.broadcast_pps
        p.multicast_pps = self.multicast_pps
        p.unknown_unicast_pps = self.unknown_unicast_pps
        p.acl = self.acl if self.acl is not None else ffi.NULL
        p.max_bps_out = self.max_bps_out
        p.max_bps_in = self.max_bps_in
        p.max_burst_bytes = self.max_burst_bytes
        p.keep_counters = int(self.keep_counters)
        return p


_PORT_KINDS = {"fd": lib.VS_PORT_FD, "packet": lib.VS_PORT_PACKET, "vxlan": lib.VS_PORT_VXLAN,
               "vhost": lib.VS_PORT_VHOST}


def mac_port(word: int) -> int:
    """The port id in a MAC table entry's port word (csrc/vs_mac_table.h)."""
    return word & 0xFFFF


def mac_vtep(word: int) -> int:
    """The VTEP index in a MAC table entry's port word; 0 = a local address."""
    return word >> 16


@dataclass(frozen=True)
class MacEntry:
    vlan: int
    mac: str
    port: int
    seen_s: int


@dataclass
class MacStats:
    learned: int = 0
    moved: int = 0
    aged: int = 0
    flushed: int = 0
    full: int = 0


@dataclass
class RxqStats:
    busy_ns: int = 0
    frames: int = 0
    polls: int = 0


@dataclass
class WorkerStats:
    busy_ns: int = 0
    idle_ns: int = 0
    polls: int = 0
    frames: int = 0
    batches_full: int = 0
    quiescent: int = 0
    extra: dict[str, int] = field(default_factory=dict)


def mac_to_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ValueError(f"{mac!r} is not a MAC address")
    return bytes(int(p, 16) for p in parts)


def mac_to_str(raw: Iterable[int]) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class MacTable:
    """The switch's (VLAN, MAC) -> port table; owned by a Switch."""

    def __init__(self, ptr: object) -> None:
        self._t = ptr

    @property
    def capacity(self) -> int:
        return int(lib.vs_mac_table_capacity(self._t))

    def __len__(self) -> int:
        return int(lib.vs_mac_table_count(self._t))

    def learn(self, vlan: int, mac: str, port: int, now_s: int) -> int:
        return int(lib.vs_mac_learn(self._t, vlan, mac_to_bytes(mac), port, now_s))

    def lookup(self, vlan: int, mac: str) -> int | None:
        port = int(lib.vs_mac_lookup(self._t, vlan, mac_to_bytes(mac)))
        return None if port == PORT_NONE else port

    def age(self, now_s: int, aging_s: int) -> int:
        return int(lib.vs_mac_age(self._t, now_s, aging_s))

    def flush(self, vlan: int | None = None, port: int | None = None) -> int:
        """Removes the entries of ``vlan`` and/or port id ``port``: those
        behind any VTEP of an overlay port too (csrc/vs_mac_table.h)."""
        return int(lib.vs_mac_flush_masked(self._t, -1 if vlan is None else vlan,
                                           -1 if port is None else port,
                                           lib.VS_MAC_PORT_MASK))

    def flush_exact(self, vlan: int, word: int) -> int:
        """Removes the entries of ``vlan`` whose port word is ``word``
        exactly: one VTEP's remote entries (VS_MAC_AT())."""
        return int(lib.vs_mac_flush(self._t, vlan, word))

    def dump(self) -> list[MacEntry]:
        size = max(len(self) + 64, 64)
        buf = ffi.new("struct vs_mac_entry[]", size)
        n = lib.vs_mac_dump(self._t, buf, size)
        return [MacEntry(e.vlan, mac_to_str(e.mac), e.port, e.seen_s)
                for e in (buf[i] for i in range(n))]

    def count_by_vlan(self) -> dict[int, int]:
        """Entries per VLAN, read straight from the C dump without building
        an object per entry (a scrape of a full table stays cheap)."""
        size = max(len(self) + 64, 64)
        buf = ffi.new("struct vs_mac_entry[]", size)
        n = lib.vs_mac_dump(self._t, buf, size)
        counts: dict[int, int] = {}
        for i in range(n):
            vlan = buf[i].vlan
            counts[vlan] = counts.get(vlan, 0) + 1
        return counts

    def stats(self) -> MacStats:
        s = ffi.new("struct vs_mac_stats *")
        lib.vs_mac_table_stats(self._t, s)
        return MacStats(s.learned, s.moved, s.aged, s.flushed, s.full)


class Switch:
    """The C switch: workers, the MAC table, config snapshots, counters.

    Lifecycle: ``Switch(...)`` allocates, ``start()`` runs the workers,
    ``stop()`` joins them, ``close()`` frees everything.  ``publish()`` is
    called from one control thread at a time.
    """

    def __init__(self, n_workers: int, cpus: Sequence[int] | None, mac_capacity: int) -> None:
        if not 0 <= n_workers <= MAX_WORKERS:
            raise FastpathError(f"workers: {n_workers} is not in 0-{MAX_WORKERS}")
        c_cpus = ffi.NULL
        if cpus is not None:
            pinned = [cpus[i % len(cpus)] for i in range(n_workers)] if cpus else []
            c_cpus = ffi.new("int[]", pinned or [-1])
        ptr = lib.vs_switch_new(n_workers, c_cpus, mac_capacity)
        if ptr == ffi.NULL:
            raise FastpathError("cannot create the switch (out of memory or bad arguments)")
        self._sw = ptr
        self.n_workers = n_workers
        self.macs = MacTable(lib.vs_switch_mac_table(ptr))
        self._running = False

    def start(self) -> None:
        _check(lib.vs_switch_start(self._sw), "starting workers")
        self._running = True

    def set_busy_poll(self, busy_poll_us: int) -> None:
        lib.vs_switch_set_busy_poll(self._sw, busy_poll_us)

    def set_acl_sessions(self, capacity: int) -> None:
        """Gives the switch an empty session table of ``capacity``; before start()."""
        _check(lib.vs_switch_set_acl_sessions(self._sw, capacity), "ACL session table")

    @property
    def acl_sessions_ptr(self) -> object:
        """The ``struct vs_acl_sessions *`` (wrapped by fastpath_acl.Sessions)."""
        return lib.vs_switch_acl_sessions(self._sw)

    def stop(self) -> None:
        if self._sw is not None:
            lib.vs_switch_stop(self._sw)
        self._running = False

    def close(self) -> None:
        if self._sw is not None:
            lib.vs_switch_free(self._sw)
            self._sw = None

    def publish(self, ports: Sequence[PortParams],
                rxqs: Mapping[int, Sequence[tuple[int, int]]] | None = None,
                mirrors: Sequence[MirrorParams] = (),
                captures: Sequence[Capture] = ()) -> int:
        """Makes ``ports`` the switch's ports and ``rxqs`` (worker ->
        [(port id, queue)]) its rx queue assignment, with ``mirrors`` and
        ``captures`` (vswitchd/fastpath_observe.py); returns when no worker
        can still use a port, mirror or capture left out.  Returns the new
        generation."""
        cfg = lib.vs_config_new()
        if cfg == ffi.NULL:
            raise FastpathError("cannot allocate a config")
        try:
            for port in ports:
                _check(lib.vs_config_add_port(cfg, port.to_c()), f"port {port.id}")
            for worker, queues in (rxqs or {}).items():
                for port_id, queue in queues:
                    _check(lib.vs_config_assign_rxq(cfg, worker, port_id, queue),
                           f"worker {worker} rx queue {port_id}/{queue}")
            for mirror in mirrors:
                _check(lib.vs_config_add_mirror(cfg, mirror.to_c()), f"mirror {mirror.id}")
            for capture in captures:
                _check(lib.vs_config_add_capture(cfg, capture.c_capture), "capture")
        except BaseException:
            lib.vs_config_free(cfg)
            raise
        _check(lib.vs_switch_publish(self._sw, cfg), "publishing the config")
        return int(lib.vs_switch_generation(self._sw))

    @property
    def generation(self) -> int:
        return int(lib.vs_switch_generation(self._sw))

    def poll_once(self, now_s: int) -> int:
        """Forwards one burst from every rx queue in the calling thread
        (tests, and switches with no workers)."""
        n = int(lib.vs_switch_poll_once(self._sw, now_s))
        if n < 0:
            raise FastpathError("poll_once: workers are running")
        return n

    def port_counters(self, port_id: int) -> dict[str, int]:
        out = ffi.new("uint64_t[]", lib.VS_N_COUNTERS)
        lib.vs_switch_port_counters(self._sw, port_id, out)
        return {name: int(out[i]) for i, name in enumerate(COUNTER_NAMES)}

    def rxq_stats(self, port_id: int, queue: int) -> RxqStats:
        s = ffi.new("struct vs_rxq_stats *")
        lib.vs_switch_rxq_stats(self._sw, port_id, queue, s)
        return RxqStats(s.busy_ns, s.frames, s.polls)

    def worker_stats(self, worker: int) -> WorkerStats:
        s = ffi.new("struct vs_worker_stats *")
        _check(lib.vs_switch_worker_stats(self._sw, worker, s), f"worker {worker}")
        return WorkerStats(s.busy_ns, s.idle_ns, s.polls, s.frames, s.batches_full,
                           s.quiescent)


# PACKET_MMAP rx rings for packet-socket ports (csrc/vs_ring.h).

RING_BLOCK_SIZE: int = lib.VS_RING_BLOCK_SIZE
RING_BLOCK_NR: int = lib.VS_RING_BLOCK_NR
RING_TOV_MS: int = lib.VS_RING_TOV_MS
RING_VERSION: int = lib.VS_RING_VERSION
RING_V2_FRAME_SIZE: int = lib.VS_RING_V2_FRAME_SIZE
RING_V2_FRAME_NR: int = lib.VS_RING_V2_FRAME_NR
RING_STATS: tuple[str, ...] = ("blocks", "frames", "truncated", "vlan_restored",
                               "kernel_packets", "kernel_drops", "kernel_freezes")


class Ring:
    """The rx ring mapped on one AF_PACKET socket, owned by whoever owns the
    socket (a netdev port's queue).

    The switch reaches it only through published port params
    (``PortParams.rings``), so its lifetime follows the socket's: detach it
    only once a config without it has been published, right before closing
    the socket.  Detaching twice is harmless; publishing a detached ring is
    an error, not a use after free.
    """

    def __init__(self, c_ring: object) -> None:
        self._ring: object | None = c_ring

    @classmethod
    def attach(cls, fd: int, vnet_hdr_len: int, version: int = 0, block_size: int = 0,
               block_nr: int = 0, tov_ms: int = 0) -> Ring:
        """Sets up and maps a ring on socket ``fd`` (0 = default version and
        sizes): before bind(), as setting a ring purges the socket's receive
        queue.  Raises OSError; the socket then has no ring."""
        out = ffi.new("struct vs_ring **")
        rc = lib.vs_ring_attach(fd, vnet_hdr_len, version, block_size, block_nr, tov_ms, out)
        if rc != 0:
            raise OSError(rc, os.strerror(rc))
        return cls(out[0])

    @property
    def attached(self) -> bool:
        return self._ring is not None

    @property
    def c_ring(self) -> object:
        """The ``struct vs_ring *`` for port params."""
        if self._ring is None:
            raise FastpathError("rx ring used after detach")
        return self._ring

    @property
    def version(self) -> int:
        """The TPACKET version the kernel accepted: 2 or 3."""
        return int(lib.vs_ring_version(self.c_ring))

    def stats(self) -> dict[str, int]:
        """The ring's counters (see struct vs_ring_stats).  Control thread
        only: the kernel_* ones are read from the socket, which resets
        them, and added up in the ring without a lock."""
        s = ffi.new("struct vs_ring_stats *")
        lib.vs_ring_get_stats(self.c_ring, s)
        return {name: int(getattr(s, name)) for name in RING_STATS}

    def detach(self) -> None:
        """Unmaps and frees the ring.  Idempotent."""
        ring, self._ring = self._ring, None
        if ring is not None:
            lib.vs_ring_detach(ring)


# Vxlan ports (csrc/vs_vxlan.h).

VXLAN_OVERHEAD_V4: int = lib.VS_VXLAN_OVERHEAD_V4
VXLAN_OVERHEAD_V6: int = lib.VS_VXLAN_OVERHEAD_V6
VXLAN_VTEPS_MAX: int = lib.VS_VXLAN_VTEPS_MAX
VTEP_COUNTERS: tuple[str, ...] = ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")


@dataclass(frozen=True)
class VtepInfo:
    index: int
    address: str
    flood: bool
    counters: dict[str, int]


class Vxlan:
    """The VTEP of one vxlan port: VNI map, VTEP table, per-VTEP counters.

    Owned by the port like its sockets; the switch reaches it only through
    published port params, so ``free()`` only after a config without the
    port has been published, then close the sockets.
    """

    def __init__(self, *, local_ip: str, dstport: int, src_ports: tuple[int, int],
                 learning: bool, tx_fd: int, vlan_vni: Mapping[int, int],
                 udp_pool: Sequence[tuple[int, int]] = ()) -> None:
        """``udp_pool``: (fd, bound source port) of the UDP send pool;
        empty: send through the raw socket ``tx_fd`` (csrc/vs_vxlan.h)."""
        addr = ipaddress.ip_address(local_ip)
        self.family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
        p = ffi.new("struct vs_vxlan_params *")
        p.family = self.family
        p.local_ip = list(addr.packed.ljust(16, b"\0"))
        p.dstport = dstport
        p.src_port_min, p.src_port_max = src_ports
        p.learning = int(learning)
        p.tx_fd = tx_fd
        p.n_ctx = MAX_WORKERS + 1
        if len(udp_pool) > lib.VS_VXLAN_UDP_MAX:
            raise FastpathError(f"vxlan: at most {lib.VS_VXLAN_UDP_MAX} pool sockets")
        p.n_udp = len(udp_pool)
        for i, (fd, port) in enumerate(udp_pool):
            p.udp_fds[i], p.udp_ports[i] = fd, port
        for vlan, vni in vlan_vni.items():
            p.vlan_vni[vlan] = vni
        ptr = lib.vs_vxlan_new(p)
        if ptr == ffi.NULL:
            raise FastpathError("vxlan: bad VNI map or source ports, or out of memory")
        self._vx: object | None = ptr
        # Readers in other threads (the exporter) against free() in the
        # event loop's; the workers reach the C object through configs only.
        self._lock = threading.Lock()

    @property
    def c_vxlan(self) -> object:
        if self._vx is None:
            raise FastpathError("vxlan port used after free")
        return self._vx

    def _packed(self, address: str) -> bytes:
        addr = ipaddress.ip_address(address)
        if (addr.version == 4) != (self.family == socket.AF_INET):
            raise FastpathError(f"VTEP {address}: not the address family of local_ip")
        return addr.packed

    def add_vtep(self, address: str, flood: bool) -> int:
        """Adds (or finds) the VTEP at ``address``; returns its index."""
        rc = lib.vs_vxlan_add_vtep(self.c_vxlan, self._packed(address), int(flood))
        if rc < 0:
            raise FastpathError(f"VTEP {address}: the table is full ({VXLAN_VTEPS_MAX - 1})")
        return int(rc)

    def set_flood(self, index: int, flood: bool) -> None:
        _check(lib.vs_vxlan_set_flood(self.c_vxlan, index, int(flood)), f"VTEP {index}")

    def set_flood_vni(self, index: int, vni: int, flood: bool) -> None:
        """Puts VTEP ``index`` in VNI ``vni``'s flood list only, or takes it
        out (an EVPN type-3 route is per VNI); its all-VNI flag stays."""
        _check(lib.vs_vxlan_set_flood_vni(self.c_vxlan, index, vni, int(flood)),
               f"VTEP {index}, VNI {vni}")

    def vteps(self) -> list[VtepInfo]:
        out: list[VtepInfo] = []
        info = ffi.new("struct vs_vtep_info *")
        with self._lock:
            if self._vx is None:
                return out
            for i in range(1, int(lib.vs_vxlan_n_vteps(self._vx)) + 1):
                out.append(self._vtep(i, info))
        return out

    def _vtep(self, i: int, info: object) -> VtepInfo:
        lib.vs_vxlan_vtep_get(self._vx, i, info)
        size = 4 if info.family == socket.AF_INET else 16  # type: ignore[attr-defined]
        addr = str(ipaddress.ip_address(bytes(info.addr[0:size])))  # type: ignore[attr-defined]
        return VtepInfo(i, addr, bool(info.flood or info.flood_vnis),  # type: ignore[attr-defined]
                        {name: int(info.counters[k])  # type: ignore[attr-defined]
                         for k, name in enumerate(VTEP_COUNTERS)})

    def vtep_address(self, index: int) -> str | None:
        info = ffi.new("struct vs_vtep_info *")
        with self._lock:
            if self._vx is None or not 1 <= index <= int(lib.vs_vxlan_n_vteps(self._vx)):
                return None
            return self._vtep(index, info).address

    def src_port(self, frame: bytes) -> int:
        return int(lib.vs_vxlan_src_port(self.c_vxlan, frame, len(frame)))

    def free(self) -> None:
        """Frees the VTEP.  Idempotent."""
        with self._lock:
            vx, self._vx = self._vx, None
            if vx is not None:
                lib.vs_vxlan_free(vx)
