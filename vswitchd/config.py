"""Configuration: frozen dataclasses, TOML loading and validation, and diff().

The TOML file is a contract users write against (configs/vswitchd.toml is the
annotated sample).  Every key is type- and range-checked, unknown keys and
sections are rejected, and every error is a single line that names the key
path, says what is wrong and what is allowed:

    ports.vm1.vlan: 5000 is not in 1-4094

Nothing here touches the system except reading the file: whether a netns
exists, a CPU is online or an interface can be opened is for whoever applies
the config.  A reload parses the new file and the switch applies only
diff(old, new), a `ConfigDiff` (the model is faucet's dp.get_config_changes).

`vswitchctl port add/set` go through vswitchd.port_args, which feeds the
same parse_port() as the file, so both paths accept exactly the same ports.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from vswitchd import vhost_config, vxlan_config
from vswitchd.acl_config import (
    DEFAULT_ACTIONS,
    POLICY_PORT_KEYS,
    AclSet,
    acl_names,
    bandwidth,
    byte_size,
    check_ports_acls,
    format_rate,
    parse_acl_sets,
)
from vswitchd.config_sections import (
    ManagementConfig,
    MetricsConfig,
    SwitchConfig,
    parse_management,
    parse_metrics,
    parse_switch,
)
from vswitchd.config_values import (
    IFNAME_RULES,
    VLAN_MAX,
    VLAN_MIN,
    boolean,
    check_keys,
    err,
    format_vlans,
    get_key,
    ifname_ok,
    int_in,
    interface_name,
    mac_list,
    netns_name,
    one_of,
    parse_vlans,
    show,
)
from vswitchd.errors import ConfigError
from vswitchd.mirror_config import MirrorConfig, check_ports_kept, parse_mirrors
from vswitchd.vxlan_config import VxlanConfig

ALL_VLANS: tuple[tuple[int, int], ...] = ((VLAN_MIN, VLAN_MAX),)
PORT_TYPES = ("tap", "netdev", "vxlan", "vhostuser")
PORT_MODES = ("access", "trunk")
# [switch] fields a running daemon cannot change: workers and their CPUs are
# fixed at start, and the MAC table has a fixed capacity.
RESTART_FIELDS = ("workers", "cpus", "mac_table_size", "acl_sessions")
# PortConfig fields that can only change by closing and reopening the port.
RECREATE_FIELDS = ("type", "ifname", "netns", "queues", "persist", "rx_ring", "vxlan", "vhost")

_SECTIONS = ("switch", "management", "metrics", "acls", "ports", "mirrors", "evpn")
PORT_KEYS = ("type", "ifname", "queues", "netns", "mode", "vlan", "vlans",
              "native_vlan", "persist", "mtu", "offload", "allowed_macs", "max_macs", "rx_ring",
              "dhcp_guard", "router_guard", "broadcast_pps", "multicast_pps",
              "unknown_unicast_pps", *POLICY_PORT_KEYS) + vxlan_config.VXLAN_KEYS \
    + vhost_config.VHOST_KEYS
OFFLOAD_KEYS = ("csum", "tso")
MODE_ONLY = {"vlan": "access", "vlans": "trunk", "native_vlan": "trunk"}
_TAP_ONLY = ("netns", "persist")
_NETDEV_ONLY = ("rx_ring",)
RX_RINGS = ("off", "v2", "v3")
GUARD_BOOL_KEYS = ("dhcp_guard", "router_guard")
GUARD_INT_KEYS = ("max_macs", "broadcast_pps", "multicast_pps", "unknown_unicast_pps")

_PORT_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MAX_MACS_LIMIT = 65536
MAX_PPS = 10_000_000



# --- Dataclasses -------------------------------------------------------------

@dataclass(frozen=True)
class OffloadConfig:
    csum: bool = True
    tso: bool = True


@dataclass(frozen=True)
class PortConfig:
    name: str
    type: str                   # "tap" | "netdev"
    ifname: str
    queues: int = 1
    netns: str | None = None    # tap only
    mode: str = "access"
    vlan: int = 1               # access VLAN, meaningful for access ports only
    vlans: tuple[tuple[int, int], ...] = ALL_VLANS  # trunk: sorted, merged, inclusive
    native_vlan: int | None = None                  # trunk: VLAN of untagged frames
    persist: bool = False       # tap only
    rx_ring: str | None = None  # netdev only: "off", "v2", "v3"; None: VSWITCHD_PACKET_RING or off
    mtu: int | None = None      # None: leave the interface's MTU alone
    offload: OffloadConfig = OffloadConfig()
    # Guards (csrc/vs_guard.h).  Defaults: off.
    allowed_macs: tuple[str, ...] = ()     # lower-case source MACs; () = any
    max_macs: int | None = None            # None: no limit
    dhcp_guard: bool = False
    router_guard: bool = False
    broadcast_pps: int | None = None       # storm control; None: no limit
    multicast_pps: int | None = None
    unknown_unicast_pps: int | None = None
    # Policy (vswitchd/acl_config.py, csrc/vs_policy.h).  Defaults: none.
    acls: tuple[str, ...] = ()             # ACL set names
    acl_default: str = "allow"             # when no rule matches
    max_bandwidth_out: int | None = None   # bit/s from the VM; None: unlimited
    max_bandwidth_in: int | None = None    # bit/s toward the VM
    max_burst: int | None = None           # bucket depth in bytes; None: default
    vxlan: VxlanConfig | None = None        # type "vxlan" only (vswitchd/vxlan_config.py)
    vhost: vhost_config.VhostConfig | None = None  # type "vhostuser" only

    def allows_vlan(self, vid: int) -> bool:
        """Whether frames of VLAN `vid` may enter or leave this port."""
        if self.mode == "access":
            return vid == self.vlan
        return any(lo <= vid <= hi for lo, hi in self.vlans)

    def vlans_text(self) -> str:
        return format_vlans(self.vlans)

    def to_dict(self) -> dict[str, Any]:
        """The [ports.NAME] table: only keys that apply to this type and mode.

        parse_port(port.name, port.to_dict()) == port.
        """
        if self.vxlan is not None:
            return {"type": self.type, "ifname": self.ifname,
                    **({"mtu": self.mtu} if self.mtu is not None else {}),
                    **self.vxlan.to_dict()}
        out: dict[str, Any] = {"type": self.type, "ifname": self.ifname, "queues": self.queues}
        if self.netns is not None:
            out["netns"] = self.netns
        out["mode"] = self.mode
        if self.mode == "access":
            out["vlan"] = self.vlan
        else:
            out["vlans"] = self.vlans_text()
            if self.native_vlan is not None:
                out["native_vlan"] = self.native_vlan
        if self.type == "tap":
            out["persist"] = self.persist
        if self.rx_ring is not None:
            out["rx_ring"] = self.rx_ring
        if self.mtu is not None:
            out["mtu"] = self.mtu
        out["offload"] = {"csum": self.offload.csum, "tso": self.offload.tso}
        if self.vhost is not None:
            out.update(self.vhost.to_dict())
        if self.allowed_macs:
            out["allowed_macs"] = list(self.allowed_macs)
        for key in GUARD_BOOL_KEYS:
            if getattr(self, key):
                out[key] = True
        for key in GUARD_INT_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.acls:
            out["acls"] = list(self.acls)
        if self.acl_default != "allow":
            out["acl_default"] = self.acl_default
        for key in ("max_bandwidth_out", "max_bandwidth_in"):
            if getattr(self, key) is not None:
                out[key] = format_rate(getattr(self, key))
        if self.max_burst is not None:
            out["max_burst"] = self.max_burst
        return out


V = TypeVar("V", PortConfig, AclSet)


class NamedMap(Mapping[str, V], Generic[V]):
    """Read-only name -> value mapping in file order, of values that know
    their name.

    Unlike MappingProxyType it is hashable, so Config stays a value: equal
    configs compare and hash equal whatever order the items were written in.
    """

    __slots__ = ("_ports",)

    def __init__(self, ports: Iterable[V] | Mapping[str, V] = ()) -> None:
        values = ports.values() if isinstance(ports, Mapping) else ports
        self._ports: dict[str, V] = {port.name: port for port in values}

    def __getitem__(self, name: str) -> V:
        return self._ports[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def __hash__(self) -> int:
        return hash(frozenset(self._ports.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._ports.values())!r})"


class Ports(NamedMap[PortConfig]):
    """The ports, by name."""


class AclSets(NamedMap[AclSet]):
    """The [acls.NAME] rule sets, by name."""


@dataclass(frozen=True)
class Config:
    switch: SwitchConfig = field(default_factory=SwitchConfig)
    management: ManagementConfig = field(default_factory=ManagementConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ports: Mapping[str, PortConfig] = field(default_factory=Ports)
    acls: Mapping[str, AclSet] = field(default_factory=AclSets)
    # [mirrors.NAME] (vswitchd/mirror_config.py), as sorted (name, mirror) pairs.
    mirrors: tuple[tuple[str, MirrorConfig], ...] = ()
    evpn: vxlan_config.EvpnConfig | None = None     # [evpn]: vswitchd/evpn.py

    def __post_init__(self) -> None:
        # Accept plain dicts, keep the value hashable.
        if not isinstance(self.ports, Ports):
            object.__setattr__(self, "ports", Ports(self.ports))
        if not isinstance(self.acls, AclSets):
            object.__setattr__(self, "acls", AclSets(self.acls))
        if isinstance(self.mirrors, Mapping):
            object.__setattr__(self, "mirrors", tuple(sorted(self.mirrors.items())))

    def to_dict(self) -> dict[str, Any]:
        """The whole config as TOML-shaped data: from_dict(cfg.to_dict()) == cfg."""
        switch = dataclasses.asdict(self.switch)
        if self.switch.cpus is None:
            del switch["cpus"]
        else:
            switch["cpus"] = list(self.switch.cpus)
        mgmt = self.management
        return {
            "switch": switch,
            "management": {"socket": mgmt.socket, "socket_mode": f"{mgmt.socket_mode:04o}",
                           "socket_group": mgmt.socket_group or ""},
            "metrics": {"listen": self.metrics.listen},
            "acls": {name: acl.to_dict() for name, acl in self.acls.items()},
            "ports": {name: port.to_dict() for name, port in self.ports.items()},
            **({"mirrors": {name: m.to_dict() for name, m in self.mirrors}}
               if self.mirrors else {}),
            **({"evpn": self.evpn.to_dict()} if self.evpn is not None else {}),
        }


@dataclass(frozen=True)
class ConfigDiff:
    """What a reload changes; the switch applies exactly this."""

    added: tuple[str, ...] = ()          # port names, sorted
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()        # same name, different PortConfig
    recreate: tuple[str, ...] = ()       # subset of changed: close and reopen the port
    switch_changed: tuple[str, ...] = ()  # [switch] field names, in field order
    management_changed: bool = False
    metrics_changed: bool = False
    acls_changed: tuple[str, ...] = ()   # ACL set names added, removed or changed
    mirrors_changed: bool = False
    evpn_changed: bool = False           # [evpn] applies at the next restart

    @property
    def restart_required(self) -> tuple[str, ...]:
        """The changed [switch] fields that only take effect after a restart."""
        return tuple(name for name in self.switch_changed if name in RESTART_FIELDS)

    @property
    def awaiting_restart(self) -> tuple[str, ...]:
        """Every changed key or section a reload cannot apply, as the log
        and the reload reply name it: "switch.<field>", "management"."""
        return (tuple(f"switch.{name}" for name in self.restart_required)
                + (("management",) if self.management_changed else ())
                + (("evpn",) if self.evpn_changed else ()))

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.switch_changed
                    or self.management_changed or self.metrics_changed or self.acls_changed
                    or self.mirrors_changed or self.evpn_changed)


# --- Loading -------------------------------------------------------------------

def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file at `path`; raises ConfigError."""
    source = os.fsdecode(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 at byte {e.start}") from None
    return loads(text, source)


def loads(text: str, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: invalid TOML: {e}") from None
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> Config:
    """Validate already-parsed TOML data."""
    check_keys(data, "", _SECTIONS, what="section")
    ports: dict[str, PortConfig] = {}
    port_tables = data.get("ports", {})
    if not isinstance(port_tables, dict):
        raise err("ports", f"{show(port_tables)} is not a table (one [ports.NAME] per port)")
    for name, table in port_tables.items():
        port = parse_port(name, table)
        _check_unique(ports.values(), port)
        ports[name] = port
    acls = parse_acl_sets(data.get("acls", {}))
    check_ports_acls(ports.values(), acls)
    vxlan_config.check_ports(ports.values())
    evpn = vxlan_config.parse_evpn(data["evpn"]) if "evpn" in data else None
    ports = {n: vxlan_config.resolve_learning(p, evpn) for n, p in ports.items()}
    return Config(
        evpn=evpn,
        switch=parse_switch(data.get("switch", {})),
        management=parse_management(data.get("management", {})),
        metrics=parse_metrics(data.get("metrics", {})),
        ports=Ports(ports.values()),
        acls=AclSets(acls.values()),
        mirrors=tuple(parse_mirrors(data.get("mirrors", {}), ports).items()),
    )


# --- Ports -----------------------------------------------------------------------

def parse_port(name: str, table: object, path: str = "ports") -> PortConfig:
    """Validate one [ports.NAME] table."""
    check_port_name(name, path)
    base = f"{path}.{name}"
    t = check_keys(table, base, PORT_KEYS)
    if "type" not in t:
        raise err(f"{base}.type", "required key is missing (one of tap, netdev, vxlan, vhostuser)")
    type_ = one_of(PORT_TYPES)(t["type"], f"{base}.type")
    if type_ == "vxlan":
        vx = vxlan_config.parse(t, base)
        return PortConfig(name=name, type=type_, ifname=_port_ifname(t, base, name),
                          mode="trunk", vlans=vx.vlan_ranges(),
                          mtu=get_key(t, base, "mtu", None, int_in(68, 65535)),
                          offload=OffloadConfig(csum=False, tso=False), vxlan=vx)
    for key in vxlan_config.VXLAN_KEYS:
        if key in t:
            raise err(f"{base}.{key}", f'not allowed for type "{type_}" (only for type "vxlan")')
    vhost = vhost_config.parse(t, base, type_)
    mode = get_key(t, base, "mode", "access", one_of(PORT_MODES))
    for key in _TAP_ONLY:
        if key in t and type_ != "tap":
            raise err(f"{base}.{key}", f'not allowed for type "{type_}" (only for type "tap")')
    for key in _NETDEV_ONLY:
        if key in t and type_ != "netdev":
            raise err(f"{base}.{key}", f'not allowed for type "{type_}" (only for type "netdev")')
    for key, only in MODE_ONLY.items():
        if key in t and mode != only:
            raise err(f"{base}.{key}", f'not allowed for mode "{mode}" (only for mode "{only}")')
    vlans = get_key(t, base, "vlans", ALL_VLANS, parse_vlans)
    native_vlan = get_key(t, base, "native_vlan", None, int_in(VLAN_MIN, VLAN_MAX))
    if native_vlan is not None and not any(lo <= native_vlan <= hi for lo, hi in vlans):
        raise err(f"{base}.native_vlan", f"{native_vlan} is not in the port's vlans "
                   f"{format_vlans(vlans)} (the native VLAN must be allowed)")
    return PortConfig(
        name=name,
        type=type_,
        ifname=_port_ifname(t, base, name),
        queues=get_key(t, base, "queues", 1, int_in(1, 16)),
        netns=get_key(t, base, "netns", None, netns_name),
        mode=mode,
        vlan=get_key(t, base, "vlan", 1, int_in(VLAN_MIN, VLAN_MAX)),
        vlans=vlans,
        native_vlan=native_vlan,
        persist=get_key(t, base, "persist", False, boolean),
        rx_ring=get_key(t, base, "rx_ring", None, one_of(RX_RINGS)),
        mtu=get_key(t, base, "mtu", None, int_in(68, 65535)),
        offload=get_key(t, base, "offload", OffloadConfig(), _offload),
        allowed_macs=get_key(t, base, "allowed_macs", (), mac_list),
        max_macs=get_key(t, base, "max_macs", None, int_in(1, MAX_MACS_LIMIT)),
        dhcp_guard=get_key(t, base, "dhcp_guard", False, boolean),
        router_guard=get_key(t, base, "router_guard", False, boolean),
        broadcast_pps=get_key(t, base, "broadcast_pps", None, int_in(1, MAX_PPS)),
        multicast_pps=get_key(t, base, "multicast_pps", None, int_in(1, MAX_PPS)),
        unknown_unicast_pps=get_key(t, base, "unknown_unicast_pps", None, int_in(1, MAX_PPS)),
        acls=get_key(t, base, "acls", (), acl_names),
        acl_default=get_key(t, base, "acl_default", "allow", one_of(DEFAULT_ACTIONS)),
        max_bandwidth_out=get_key(t, base, "max_bandwidth_out", None, bandwidth),
        max_bandwidth_in=get_key(t, base, "max_bandwidth_in", None, bandwidth),
        max_burst=get_key(t, base, "max_burst", None, byte_size),
        vhost=vhost,
    )


def check_port_name(name: object, path: str = "ports") -> None:
    if not isinstance(name, str) or not _PORT_NAME_RE.fullmatch(name):
        raise err(path, f"{show(name)} is not a valid port name (1-32 of A-Z a-z 0-9 _ . -)")


def _port_ifname(t: dict[str, Any], base: str, name: str) -> str:
    if "ifname" in t:
        return interface_name(t["ifname"], f"{base}.ifname")
    if ifname_ok(name):
        return name
    raise err(f"{base}.ifname", f"{show(name)} (the port name, used when ifname is not set) "
               f"is not a valid interface name ({IFNAME_RULES}); set ifname")


def _check_unique(ports: Iterable[PortConfig], new: PortConfig) -> None:
    for other in ports:
        if other.name != new.name and (other.netns, other.ifname) == (new.netns, new.ifname):
            where = f' in netns "{new.netns}"' if new.netns else ""
            raise err(f"ports.{new.name}.ifname", f'"{new.ifname}"{where} is already used by '
                       f"port {other.name} (each port needs its own interface)")


def with_port(cfg: Config, port: PortConfig) -> Config:
    """`cfg` with `port` added, or replacing the port of the same name."""
    _check_unique(cfg.ports.values(), port)
    check_ports_acls((port,), cfg.acls)
    ports = dict(cfg.ports)
    ports[port.name] = vxlan_config.resolve_learning(port, cfg.evpn)
    return dataclasses.replace(cfg, ports=Ports(ports.values()))


def without_port(cfg: Config, name: str) -> Config:
    if name not in cfg.ports:
        raise err(f"ports.{name}", "no such port")
    ports = Ports(p for p in cfg.ports.values() if p.name != name)
    check_ports_kept(dict(cfg.mirrors), ports)
    return dataclasses.replace(cfg, ports=ports)


def __getattr__(name: str) -> Any:
    """port_from_kv() and port_update() live in vswitchd.port_args (it builds
    on parse_port(), so it cannot be imported from here at load time); they
    remain reachable as part of this module's contract."""
    if name in ("port_from_kv", "port_update"):
        from vswitchd import port_args
        return getattr(port_args, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- Diff -------------------------------------------------------------------------

def changed_fields(old: Any, new: Any) -> tuple[str, ...]:
    """Names of the fields that differ between two dataclasses of the same type."""
    return tuple(f.name for f in dataclasses.fields(old)
                 if getattr(old, f.name) != getattr(new, f.name))


def diff(old: Config, new: Config) -> ConfigDiff:
    before, after = old.ports, new.ports
    changed = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
    return ConfigDiff(
        added=tuple(sorted(after.keys() - before.keys())),
        removed=tuple(sorted(before.keys() - after.keys())),
        changed=tuple(changed),
        recreate=tuple(n for n in changed
                       if set(changed_fields(before[n], after[n])) & set(RECREATE_FIELDS)),
        switch_changed=changed_fields(old.switch, new.switch),
        management_changed=old.management != new.management,
        metrics_changed=old.metrics != new.metrics,
        acls_changed=tuple(sorted(n for n in old.acls.keys() | new.acls.keys()
                                  if old.acls.get(n) != new.acls.get(n))),
        mirrors_changed=old.mirrors != new.mirrors,
        evpn_changed=old.evpn != new.evpn,
    )


def _offload(value: Any, key: str) -> OffloadConfig:
    t = check_keys(value, key, OFFLOAD_KEYS)
    return OffloadConfig(csum=get_key(t, key, "csum", True, boolean),
                         tso=get_key(t, key, "tso", True, boolean))
