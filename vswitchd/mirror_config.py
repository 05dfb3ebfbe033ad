"""[mirrors.NAME] tables: port mirroring, validated against the ports.

    [mirrors.span1]
    select_src_ports = ["vm1"]     # frames arriving from these ports
    select_dst_ports = ["vm1"]     # frames leaving through these ports
    select_vlans = [10]            # optional: only these VLANs
    output_port = "ids"            # the port that receives the copies
    snaplen = 0                    # 0 = whole frame

A mirror's output port is reserved (it only receives copies; what it sends
is dropped), so it may not be selected by any mirror.  Frozen dataclasses
like the rest of the config; ``parse_mirrors`` raises ConfigError naming
the key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vswitchd.config_values import VLAN_MAX, VLAN_MIN, check_keys, err, get_key, int_in, show

MIRROR_KEYS = ("select_src_ports", "select_dst_ports", "select_vlans", "output_port",
               "snaplen")
SNAPLEN_MAX = 65535
MAX_MIRRORS = 32            # csrc/vs_worker.h VS_MAX_MIRRORS


@dataclass(frozen=True)
class MirrorConfig:
    name: str
    output_port: str
    select_src_ports: tuple[str, ...] = ()
    select_dst_ports: tuple[str, ...] = ()
    select_vlans: tuple[int, ...] = ()      # () = every VLAN
    snaplen: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"select_src_ports": list(self.select_src_ports),
                               "select_dst_ports": list(self.select_dst_ports),
                               "output_port": self.output_port, "snaplen": self.snaplen}
        if self.select_vlans:
            out["select_vlans"] = list(self.select_vlans)
        return out


def _names(value: Any, key: str, ports: Mapping[str, Any]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(key, f"{show(value)} is not a list of port names")
    for name in value:
        if name not in ports:
            raise err(key, f'"{name}" is not a configured port')
    return tuple(sorted(set(value)))


def _vlans(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise err(key, f"{show(value)} is not a list of VLAN ids")
    check = int_in(VLAN_MIN, VLAN_MAX)
    return tuple(sorted({check(v, key) for v in value}))


def parse_mirror(name: str, table: object, ports: Mapping[str, Any]) -> MirrorConfig:
    base = f"mirrors.{name}"
    t = check_keys(table, base, MIRROR_KEYS)
    if "output_port" not in t:
        raise err(f"{base}.output_port", "is required")
    out = t["output_port"]
    if not isinstance(out, str) or out not in ports:
        raise err(f"{base}.output_port", f"{show(out)} is not a configured port")
    out_type = getattr(ports[out], "type", None)
    if out_type in ("vhostuser", "vxlan"):
        # Copies leave by writev()/sendmsg() on the port's fds (csrc/vs_mirror.c):
        # a vhost-user port's fds are its kick eventfds, a vxlan port's its
        # unconnected receive socket.  Neither carries a raw frame.
        raise err(f"{base}.output_port", f'{show(out)} is a {out_type} port, which cannot '
                  "be a mirror output yet (use a tap or netdev port)")
    none: tuple[str, ...] = ()
    src = get_key(t, base, "select_src_ports", none, lambda v, k: _names(v, k, ports))
    dst = get_key(t, base, "select_dst_ports", none, lambda v, k: _names(v, k, ports))
    if not src and not dst:
        raise err(base, "selects nothing (give select_src_ports or select_dst_ports)")
    return MirrorConfig(
        name=name, output_port=out, select_src_ports=src, select_dst_ports=dst,
        select_vlans=get_key(t, base, "select_vlans", (), _vlans),
        snaplen=get_key(t, base, "snaplen", 0, int_in(0, SNAPLEN_MAX)))


def parse_mirrors(tables: object, ports: Mapping[str, Any]) -> dict[str, MirrorConfig]:
    """Every [mirrors.NAME] table, checked against ``ports`` and each other."""
    if not isinstance(tables, dict):
        raise err("mirrors", f"{show(tables)} is not a table (one [mirrors.NAME] per mirror)")
    if len(tables) > MAX_MIRRORS:
        raise err("mirrors", f"{len(tables)} mirrors, at most {MAX_MIRRORS}")
    mirrors = {name: parse_mirror(name, t, ports) for name, t in sorted(tables.items())}
    check_mirrors(mirrors)
    return mirrors


def check_mirrors(mirrors: Mapping[str, MirrorConfig]) -> None:
    """An output port is reserved: no mirror may select it."""
    outputs = {m.output_port: m.name for m in mirrors.values()}
    for m in mirrors.values():
        for key in ("select_src_ports", "select_dst_ports"):
            for port in getattr(m, key):
                if port in outputs:
                    raise err(f"mirrors.{m.name}.{key}",
                              f'"{port}" is the output port of mirror {outputs[port]}')


def check_ports_kept(mirrors: Mapping[str, MirrorConfig], ports: Mapping[str, Any]) -> None:
    """Refuses removing a port a mirror still names (``port del``)."""
    for m in mirrors.values():
        for port in (m.output_port, *m.select_src_ports, *m.select_dst_ports):
            if port not in ports:
                raise err(f"mirrors.{m.name}", f'names port "{port}", which would be gone')
