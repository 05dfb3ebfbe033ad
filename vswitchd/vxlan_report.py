"""What `vswitchctl vxlan show` and the exporter say about vxlan ports.

Read-only views: VTEPs with their per-VTEP counters (summed from the C
workers at the moment of the call), VNIs, and the decapsulation drops by
reason.  `fastpath.Vxlan` guards its C object with a lock, so a scrape in
the exporter's thread never reads a VTEP table that the event loop frees.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

VXLAN_DROPS = ("vxlan_short", "vxlan_no_vni_flag", "vxlan_reserved", "vxlan_unknown_vni",
               "vxlan_unknown_vtep")
NS = "vswitchd"
_VTEP_METRICS = (("tx_packets", "transmit_packets", "Frames encapsulated to the VTEP"),
                 ("tx_bytes", "transmit_bytes", "Inner Ethernet bytes encapsulated to the VTEP"),
                 ("rx_packets", "receive_packets", "Frames decapsulated from the VTEP"),
                 ("rx_bytes", "receive_bytes", "Inner Ethernet bytes decapsulated from the VTEP"))


def _vxlan_of(port: Any) -> Any:
    return getattr(port.io, "vxlan", None) if port is not None else None


def vtep_address(switch: Any, port_id: int, vtep: int) -> str | None:
    """The address of VTEP index `vtep` of port `port_id`; None for 0."""
    if not vtep:
        return None
    for port in list(switch.ports.values()):
        if port.id == port_id and _vxlan_of(port) is not None:
            return str(_vxlan_of(port).vtep_address(vtep))
    return None


def show(switch: Any) -> list[dict[str, Any]]:
    out = []
    for port in sorted(switch.ports.values(), key=lambda p: p.cfg.name):
        vx = _vxlan_of(port)
        if vx is None:
            continue
        vc = port.cfg.vxlan
        counters = switch.fast.port_counters(port.id)
        out.append({
            "name": port.cfg.name, "local_ip": vc.local_ip, "dstport": vc.dstport,
            "learning": vc.learning is not False, "mtu": port.io.mtu,
            "vnis": [{"vlan": vlan, "vni": vni} for vlan, vni in vc.vni_map],
            "vteps": [{"address": v.address, "flood": v.flood, **v.counters}
                      for v in vx.vteps()],
            "decap_drops": {r: counters[r] for r in VXLAN_DROPS},
            "oversize": counters["oversize"],
        })
    return out


def format_show(result: list[dict[str, Any]]) -> str:
    """`vswitchctl vxlan show`: one block per vxlan port."""
    lines: list[str] = []
    for p in result:
        vnis = ", ".join(f"{v['vlan']}={v['vni']}" for v in p["vnis"])
        lines.append(f"{p['name']}: VTEP {p['local_ip']}:{p['dstport']}, learning "
                     f"{'on' if p['learning'] else 'off'}, inner MTU {p['mtu']}")
        lines.append(f"  VNIs (VLAN=VNI): {vnis}")
        lines.append(f"  {'VTEP':<39} {'FLOOD':<5} {'TX_PKTS':>10} {'TX_BYTES':>12} "
                     f"{'RX_PKTS':>10} {'RX_BYTES':>12}")
        for v in p["vteps"]:
            lines.append(f"  {v['address']:<39} {'yes' if v['flood'] else 'no':<5} "
                         f"{v['tx_packets']:>10} {v['tx_bytes']:>12} {v['rx_packets']:>10} "
                         f"{v['rx_bytes']:>12}")
        drops = ", ".join(f"{k} {v}" for k, v in p["decap_drops"].items())
        lines.append(f"  decap drops: {drops}; oversize {p['oversize']}")
    return "\n".join(lines) if lines else "no vxlan ports"


def evpn_families(snap: dict[str, Any] | None) -> list[Metric]:
    """vswitchd_evpn_routes{type,direction} and vswitchd_evpn_session_up{neighbor}
    from Evpn.metrics_snapshot(); None (no [evpn]): empty families."""
    routes = GaugeMetricFamily(f"{NS}_evpn_routes", "EVPN routes sent and received, by type",
                               labels=["type", "direction"])
    up = GaugeMetricFamily(f"{NS}_evpn_session_up", "1 when the BGP session is established",
                           labels=["neighbor"])
    if snap is not None:
        for direction in ("sent", "received"):
            for kind, n in snap[direction].items():
                routes.add_metric([kind, direction], n)
        for neighbor, is_up in snap["sessions"].items():
            up.add_metric([neighbor], 1 if is_up else 0)
    return [routes, up]


def metric_families(rows: Iterable[tuple[Any, dict[str, int], Any]]) -> list[Metric]:
    """Per-VTEP counters and decapsulation drops of the vxlan ports among a
    scrape's port rows (port, counters, rx ring); no rows: empty families."""
    fams = {key: CounterMetricFamily(f"{NS}_vxlan_{name}", help_text, labels=["port", "vtep"])
            for key, name, help_text in _VTEP_METRICS}
    drops = CounterMetricFamily(f"{NS}_vxlan_decap_drops",
                                "VXLAN datagrams dropped on decapsulation, by reason",
                                labels=["port", "reason"])
    for port, counters, _ in rows:
        vx = _vxlan_of(port)
        if vx is None:
            continue
        for v in vx.vteps():
            for key, fam in fams.items():
                fam.add_metric([port.cfg.name, v.address], v.counters[key])
        for reason in VXLAN_DROPS:
            drops.add_metric([port.cfg.name, reason], counters.get(reason, 0))
    return [*fams.values(), drops]


def format_evpn(result: dict[str, Any]) -> str:
    """`vswitchctl evpn show`."""
    if not result.get("enabled"):
        return "evpn: not configured"
    lines = [f"evpn: AS {result['asn']} router-id {result['router_id']}, gobgpd "
             f"{result['gobgpd']}{' (spawned)' if result['spawned'] else ''}, "
             f"restarts {result['restarts']}"]
    for s in result["sessions"]:
        lines.append(f"  neighbor {s['neighbor']}: {s['state']}")
    r = result["routes"]
    lines.append(f"  routes sent: type-2 {r['sent']['type2']}, type-3 {r['sent']['type3']}; "
                 f"received: type-2 {r['received']['type2']}, type-3 {r['received']['type3']}")
    lines.append(f"  flood list from type-3: {', '.join(result['flood_list']) or '-'}")
    return "\n".join(lines)
