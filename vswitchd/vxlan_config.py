"""The keys of a `type = "vxlan"` port: parsing and validation.

config.parse_port() hands a vxlan port's table here; what comes back is a
frozen `VxlanConfig` that becomes the port's `vxlan` field.  A vxlan port
is a trunk of the VLANs of its vni_map with no native VLAN: the VLAN keys
of other ports (mode, vlan, vlans, native_vlan) do not apply and are
refused, as are the TAP/netdev keys.

Like the rest of config.py nothing here touches the system: whether
local_ip is an address of this host is checked when the port is opened
(vswitchd/ports/vxlan.py), with an error that names the same key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vswitchd.config_values import VLAN_MAX, VLAN_MIN, boolean, err, get_key, int_in, show

VXLAN_KEYS = ("local_ip", "dstport", "vni_map", "peers", "learning", "src_port_range", "ttl")
# Keys of other port types a vxlan port also takes.
VXLAN_COMMON_KEYS = ("type", "ifname", "mtu")
VNI_MIN, VNI_MAX = 1, 0xFFFFFF
DEFAULT_DSTPORT = 4789          # IANA; never the kernel's legacy 8472
DEFAULT_SRC_PORTS = (32768, 61000)
_RANGE_RE = re.compile(r"([0-9]{1,5})-([0-9]{1,5})")


@dataclass(frozen=True)
class VxlanConfig:
    local_ip: str
    vni_map: tuple[tuple[int, int], ...]      # (VLAN, VNI), sorted by VLAN
    dstport: int = DEFAULT_DSTPORT
    peers: tuple[str, ...] = ()
    learning: bool | None = None    # None: not set (on without [evpn], off with it)
    src_ports: tuple[int, int] = DEFAULT_SRC_PORTS
    ttl: int = 64

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.local_ip).version

    def vlan_ranges(self) -> tuple[tuple[int, int], ...]:
        """The VLANs the port carries, as config.PortConfig.vlans ranges."""
        out: list[tuple[int, int]] = []
        for vlan, _ in self.vni_map:
            if out and out[-1][1] + 1 == vlan:
                out[-1] = (out[-1][0], vlan)
            else:
                out.append((vlan, vlan))
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        return {"local_ip": self.local_ip, "dstport": self.dstport,
                "vni_map": {str(vlan): vni for vlan, vni in self.vni_map},
                "peers": list(self.peers),
                **({"learning": self.learning} if self.learning is not None else {}),
                "src_port_range": f"{self.src_ports[0]}-{self.src_ports[1]}",
                "ttl": self.ttl}


def _ip(value: Any, key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        addr = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        addr = None
    if addr is None:
        raise err(key, f"{show(value)} is not an IPv4 or IPv6 address")
    if addr.is_multicast or addr.is_unspecified or addr.is_loopback:
        raise err(key, f"{show(value)} is not a unicast address of a VTEP")
    return addr


def _vni_map(value: Any, key: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(value, dict) or not value:
        raise err(key, f"{show(value)} is not a table of VLAN = VNI (like {{ 10 = 5010 }})")
    by_vlan: dict[int, int] = {}
    by_vni: dict[int, int] = {}
    for raw_vlan, vni in value.items():
        if not re.fullmatch(r"[0-9]{1,4}", raw_vlan) or not VLAN_MIN <= int(raw_vlan) <= VLAN_MAX:
            raise err(f"{key}.{raw_vlan}", f"{show(raw_vlan)} is not a VLAN in "
                      f"{VLAN_MIN}-{VLAN_MAX}")
        vlan = int(raw_vlan)
        vni = int_in(VNI_MIN, VNI_MAX)(vni, f"{key}.{raw_vlan}")
        if vlan in by_vlan:
            raise err(f"{key}.{raw_vlan}", f"VLAN {vlan} is mapped twice "
                      f"(to VNI {by_vlan[vlan]} and {vni})")
        if vni in by_vni:
            raise err(f"{key}.{raw_vlan}", f"VNI {vni} is already the VNI of VLAN "
                      f"{by_vni[vni]} (one VNI per VLAN)")
        by_vlan[vlan], by_vni[vni] = vni, vlan
    return tuple(sorted(by_vlan.items()))


def _port_range(value: Any, key: str) -> tuple[int, int]:
    match = _RANGE_RE.fullmatch(value) if isinstance(value, str) else None
    lo, hi = (int(match[1]), int(match[2])) if match else (0, -1)
    if not 1 <= lo <= hi <= 65535:
        raise err(key, f"{show(value)} is not a UDP port range like \"32768-61000\" "
                  "(low-high within 1-65535)")
    return lo, hi


def parse(t: dict[str, Any], base: str) -> VxlanConfig:
    """The vxlan keys of port table `t` (at key path `base`)."""
    for key in t:
        if key not in VXLAN_KEYS + VXLAN_COMMON_KEYS:
            raise err(f"{base}.{key}", 'not allowed for type "vxlan" (allowed: '
                      f"{', '.join(VXLAN_COMMON_KEYS + VXLAN_KEYS)})")
    if "local_ip" not in t:
        raise err(f"{base}.local_ip", "required key is missing (the underlay source address)")
    if "vni_map" not in t:
        raise err(f"{base}.vni_map", "required key is missing (like { 10 = 5010 })")
    local = _ip(t["local_ip"], f"{base}.local_ip")
    peers: list[str] = []
    raw_peers = t.get("peers", [])
    if not isinstance(raw_peers, list):
        raise err(f"{base}.peers", f"{show(raw_peers)} is not a list of VTEP addresses")
    for i, raw in enumerate(raw_peers):
        key = f"{base}.peers[{i}]"
        peer = _ip(raw, key)
        if peer.version != local.version:
            raise err(key, f"{show(raw)} is not of local_ip's address family "
                      f"(IPv{local.version})")
        if peer == local:
            raise err(key, f"{show(raw)} is local_ip itself")
        if str(peer) in peers:
            raise err(key, f"{show(raw)} is listed twice")
        peers.append(str(peer))
    return VxlanConfig(
        local_ip=str(local),
        vni_map=_vni_map(t["vni_map"], f"{base}.vni_map"),
        dstport=get_key(t, base, "dstport", DEFAULT_DSTPORT, int_in(1, 65535)),
        peers=tuple(peers),
        learning=get_key(t, base, "learning", None, boolean),
        src_ports=get_key(t, base, "src_port_range", DEFAULT_SRC_PORTS, _port_range),
        ttl=get_key(t, base, "ttl", 64, int_in(1, 255)),
    )


def check_ports(ports: Iterable[Any]) -> None:
    """Checks between vxlan ports: each needs its own (local_ip, dstport)
    socket, and a VLAN rides one overlay only."""
    seen: dict[tuple[str, int], str] = {}
    vlans: dict[int, str] = {}
    for port in ports:
        vx = getattr(port, "vxlan", None)
        if vx is None:
            continue
        where = (vx.local_ip, vx.dstport)
        if where in seen:
            raise err(f"ports.{port.name}.dstport", f"{vx.local_ip}:{vx.dstport} is already "
                      f"used by port {seen[where]}")
        seen[where] = port.name
        for vlan, _ in vx.vni_map:
            if vlan in vlans:
                raise err(f"ports.{port.name}.vni_map", f"VLAN {vlan} is already carried by "
                          f"vxlan port {vlans[vlan]}")
            vlans[vlan] = port.name


# --- [evpn] ----------------------------------------------------------------------

EVPN_KEYS = ("asn", "router_id", "neighbors", "gobgpd", "vni")
EVPN_VNI_KEYS = ("rd", "route_targets")
_RD_RE = re.compile(r"([0-9]{1,10}|[0-9]{1,3}(\.[0-9]{1,3}){3}):([0-9]{1,10})")
_RT_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,10})")


@dataclass(frozen=True)
class VniOverride:
    """[evpn.vni.N]: what FRR would derive, overridden for VNI N."""

    rd: str | None = None
    route_targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class EvpnConfig:
    asn: int
    router_id: str
    neighbors: tuple[str, ...] = ()
    gobgpd: str = "spawn"           # or "HOST:PORT" of a gobgpd someone else runs
    vnis: tuple[tuple[int, VniOverride], ...] = ()     # sorted by VNI

    def override(self, vni: int) -> VniOverride:
        return dict(self.vnis).get(vni, VniOverride())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"asn": self.asn, "router_id": self.router_id,
                               "neighbors": list(self.neighbors), "gobgpd": self.gobgpd}
        if self.vnis:
            out["vni"] = {str(vni): {**({"rd": o.rd} if o.rd else {}),
                                     **({"route_targets": list(o.route_targets)}
                                        if o.route_targets is not None else {})}
                          for vni, o in self.vnis}
        return out


def _vni_overrides(value: Any, key: str) -> tuple[tuple[int, VniOverride], ...]:
    from vswitchd.config_values import check_keys

    if not isinstance(value, dict):
        raise err(key, f"{show(value)} is not a table of [evpn.vni.N] tables")
    out = []
    for raw, table in value.items():
        path = f"{key}.{raw}"
        if not re.fullmatch(r"[0-9]{1,8}", raw) or not VNI_MIN <= int(raw) <= VNI_MAX:
            raise err(path, f"{show(raw)} is not a VNI in {VNI_MIN}-{VNI_MAX}")
        t = check_keys(table, path, EVPN_VNI_KEYS)
        rd = t.get("rd")
        if rd is not None and (not isinstance(rd, str) or not _RD_RE.fullmatch(rd)):
            raise err(f"{path}.rd", f'{show(rd)} is not a route distinguisher '
                      '("ASN:N" or "A.B.C.D:N")')
        rts = t.get("route_targets")
        if rts is not None:
            if not isinstance(rts, list) or not all(
                    isinstance(r, str) and _RT_RE.fullmatch(r) for r in rts):
                raise err(f"{path}.route_targets", f'{show(rts)} is not a list of route '
                          'targets like ["65000:5010"]')
            rts = tuple(rts)
        out.append((int(raw), VniOverride(rd=rd, route_targets=rts)))
    return tuple(sorted(out, key=lambda x: x[0]))


def parse_evpn(data: object) -> EvpnConfig:
    """The [evpn] section."""
    from vswitchd.config_values import check_keys, split_listen

    t = check_keys(data, "evpn", EVPN_KEYS)
    for key in ("asn", "router_id"):
        if key not in t:
            raise err(f"evpn.{key}", "required key is missing")
    rid = t["router_id"]
    try:
        ipaddress.IPv4Address(rid)
    except (ValueError, TypeError):
        raise err("evpn.router_id", f"{show(rid)} is not an IPv4 address") from None
    raw = t.get("neighbors", [])
    if not isinstance(raw, list):
        raise err("evpn.neighbors", f"{show(raw)} is not a list of addresses")
    neighbors = tuple(str(_ip(n, f"evpn.neighbors[{i}]")) for i, n in enumerate(raw))
    gobgpd = t.get("gobgpd", "spawn")
    if gobgpd != "spawn":
        try:
            ok = isinstance(gobgpd, str) and bool(split_listen(gobgpd))
        except ValueError:
            ok = False
        if not ok:
            raise err("evpn.gobgpd", f'{show(gobgpd)} is not "spawn" or HOST:PORT')
    return EvpnConfig(asn=int_in(1, 4294967295)(t["asn"], "evpn.asn"), router_id=rid,
                      neighbors=neighbors, gobgpd=gobgpd,
                      vnis=get_key(t, "evpn", "vni", (), _vni_overrides))


def resolve_learning(port: Any, evpn: EvpnConfig | None) -> Any:
    """`port` with its vxlan `learning` default settled: on without [evpn],
    off with it (the routes say where MACs are)."""
    vx = getattr(port, "vxlan", None)
    if vx is None or vx.learning is not None:
        return port
    return dataclasses.replace(port, vxlan=dataclasses.replace(vx, learning=evpn is None))
