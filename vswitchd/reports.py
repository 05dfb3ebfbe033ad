"""What `vswitchctl show | fdb show | stats | workers` report: the switch's
state read into the JSON shapes the CLI formats and `--json` prints.

Read-only views over a running VSwitch: counters are summed from the C
workers at the moment of the call; nothing here changes the switch (`show`
refreshes the ports' rx ring reports, which is reading them too).
"""

from __future__ import annotations

import time
from typing import Any

from vswitchd import vxlan_report
from vswitchd.config import PortConfig
from vswitchd.fastpath import DROP_REASONS, MAC_STATIC, mac_port, mac_vtep
from vswitchd.ringstats import NO_RX_RING, RxRingReport
from vswitchd.rxq import by_worker
from vswitchd.switch import Port, VSwitch

_NO_TRAFFIC = {"rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0}


def port_counters(switch: VSwitch, port: Port) -> tuple[dict[str, int], dict[str, int]]:
    """(traffic counters, drops by reason) of ``port``."""
    counters = switch.fast.port_counters(port.id)
    drops = {k: counters.pop(k) for k in DROP_REASONS}
    return counters, drops


def _port_row(pc: PortConfig, link: str, queues: int, offload: dict[str, bool],
              counters: dict[str, int], drops: dict[str, int],
              rx_ring: RxRingReport | None = None) -> dict[str, Any]:
    trunk = pc.mode == "trunk"
    return {
        "name": pc.name, "type": pc.type, "ifname": pc.ifname, "netns": pc.netns,
        "mode": pc.mode, "vlan": None if trunk else pc.vlan,
        "vlans": pc.vlans_text() if trunk else None,
        "native_vlan": pc.native_vlan if trunk else None,
        "link": link, "queues": queues, "offload": offload,
        **{k: counters[k] for k in _NO_TRAFFIC},
        "drops": sum(drops.values()),
        "drops_by_reason": {k: v for k, v in drops.items() if v},
        "acls": list(pc.acls), "acl_default": pc.acl_default,
        "max_bandwidth_out": pc.max_bandwidth_out, "max_bandwidth_in": pc.max_bandwidth_in,
        **(NO_RX_RING if rx_ring is None else rx_ring.to_json()),
    }


def show(switch: VSwitch) -> dict[str, Any]:
    # Counters as of now, not as of the last timer tick.
    switch.read_rx_rings()
    ports = []
    for port in switch.ports.values():
        counters, drops = port_counters(switch, port)
        ports.append(_port_row(port.cfg, "up" if port.link_up else "down", len(port.io.fds),
                               {"csum": port.io.offload_csum, "tso": port.io.offload_tso},
                               counters, drops, port.rx_ring))
        status = getattr(port.backend, "status", None)
        if callable(status):        # vhost-user: socket, connection, features
            ports[-1]["vhost"] = status()
    for pc in switch.lost.values():
        ports.append(_port_row(pc, "absent", pc.queues,
                               {"csum": pc.offload.csum, "tso": pc.offload.tso},
                               _NO_TRAFFIC, {}))
    for row in ports:
        row["attached_by"] = switch.attached_by.get(str(row["name"]))
    ports.sort(key=lambda p: str(p["name"]))
    macs = switch.fast.macs
    return {"switch": {"workers": switch.n_workers, "mac_entries": len(macs),
                       "mac_table_size": macs.capacity,
                       "mac_aging_s": switch.config.switch.mac_aging_s,
                       "config_generation": switch.generation},
            "ports": ports}


def fdb_show(switch: VSwitch, vlan: int | None = None,
             port: str | None = None) -> list[dict[str, Any]]:
    want = switch.port_by_name(port)
    names = {p.id: p.cfg.name for p in switch.ports.values()}
    now = int(time.monotonic())
    # A remote entry's port word also names its VTEP (csrc/vs_mac_table.h).
    rows = [{"vlan": e.vlan, "mac": e.mac, "port": names.get(mac_port(e.port), str(e.port)),
             # Static (installed by EVPN, csrc/vs_mac_table.h): no age.
             "age_s": None if e.seen_s == MAC_STATIC else max(0, now - e.seen_s),
             "static": e.seen_s == MAC_STATIC,
             "vtep": vxlan_report.vtep_address(switch, mac_port(e.port), mac_vtep(e.port))}
            for e in switch.fast.macs.dump()
            if (vlan is None or e.vlan == vlan)
            and (want is None or mac_port(e.port) == want.id)]
    return sorted(rows, key=lambda r: (r["vlan"], r["mac"]))


def stats(switch: VSwitch, port: str | None = None) -> dict[str, Any]:
    want = switch.port_by_name(port)
    rows = []
    for p in sorted(switch.ports.values(), key=lambda p: p.cfg.name):
        if want is None or p is want:
            counters, drops = port_counters(switch, p)
            rows.append({"name": p.cfg.name, "counters": counters, "drops": drops})
    return {"ports": rows, "mac_table": switch.fast.macs.stats().__dict__}


def workers(switch: VSwitch) -> list[dict[str, Any]]:
    queues = by_worker(switch.rxq)
    ratios, loads = switch.load.worker_ratio, switch.load.rxq_load
    out = []
    for w in range(switch.n_workers):
        st = switch.fast.worker_stats(w)
        out.append({
            "worker": w, "cpu": switch.cpus[w % len(switch.cpus)] if switch.cpus else None,
            "busy_ratio": round(ratios[w] if w < len(ratios) else 0.0, 4),
            "frames": st.frames, "polls": st.polls,
            "avg_batch": round(st.frames / st.polls, 2) if st.polls else 0.0,
            "rx_queues": [{"port": name, "queue": q,
                           "busy_ratio": round(loads.get((name, q), 0.0), 4)}
                          for name, q in queues.get(w, []) if name in switch.ports],
        })
    return out
