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

`vswitchctl port add/set` go through port_from_kv()/port_update(), which feed
the same parse_port() as the file, so both paths accept exactly the same ports.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vswitchd.errors import ConfigError

T = TypeVar("T")

VLAN_MIN, VLAN_MAX = 1, 4094
ALL_VLANS: tuple[tuple[int, int], ...] = ((VLAN_MIN, VLAN_MAX),)
PORT_TYPES = ("tap", "netdev")
PORT_MODES = ("access", "trunk")
RXQ_ASSIGN = ("roundrobin", "cycles")
# [switch] fields a running daemon cannot change: workers and their CPUs are
# fixed at start, and the MAC table has a fixed capacity.
RESTART_FIELDS = ("workers", "cpus", "mac_table_size")
# PortConfig fields that can only change by closing and reopening the port.
RECREATE_FIELDS = ("type", "ifname", "netns", "queues", "persist", "rx_ring")

_SECTIONS = ("switch", "management", "metrics", "ports")
_SWITCH_KEYS = ("workers", "cpus", "mac_aging_s", "mac_table_size", "rxq_assign",
                "rebalance_interval_s", "rebalance_load_threshold", "rebalance_improvement",
                "rebalance_sample_s", "busy_poll_us")
_MANAGEMENT_KEYS = ("socket", "socket_mode", "socket_group")
_METRICS_KEYS = ("listen",)
_PORT_KEYS = ("type", "ifname", "queues", "netns", "mode", "vlan", "vlans",
              "native_vlan", "persist", "mtu", "offload", "allowed_macs", "max_macs", "rx_ring",
              "dhcp_guard", "router_guard", "broadcast_pps", "multicast_pps",
              "unknown_unicast_pps")
_OFFLOAD_KEYS = ("csum", "tso")
_MODE_ONLY = {"vlan": "access", "vlans": "trunk", "native_vlan": "trunk"}
_TAP_ONLY = ("netns", "persist")
_NETDEV_ONLY = ("rx_ring",)
RX_RINGS = ("off", "v2", "v3")

_PORT_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_VLAN_ITEM_RE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MODE_RE = re.compile(r"0?[0-7]{3}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
MAX_ALLOWED_MACS = 64   # csrc/vs_guard.h VS_GUARD_MAX_ALLOWED_MACS
MAX_MACS_LIMIT = 65536
MAX_PPS = 10_000_000
_IFNAMSIZ = 16      # including the NUL, so names are 1..15 bytes
_SUN_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path), including the NUL
_MAX_CPU = 8191     # Linux NR_CPUS is at most 8192

_IFNAME_RULES = '1-15 characters, no "/", ":" or whitespace, not "." or ".."'
_VLANS_RULES = "ranges like 1-100,200 within 1-4094"
_LISTEN_RULES = 'host:port, [ipv6]:port, or "" to disable'


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
        if self.allowed_macs:
            out["allowed_macs"] = list(self.allowed_macs)
        for key in _GUARD_BOOL_KEYS:
            if getattr(self, key):
                out[key] = True
        for key in _GUARD_INT_KEYS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class SwitchConfig:
    workers: int = 0                    # 0: one per online CPU
    cpus: tuple[int, ...] | None = None  # None: all online CPUs
    mac_aging_s: int = 300
    mac_table_size: int = 8192
    rxq_assign: str = "roundrobin"
    # Automatic rx queue rebalancing, in the spirit of Open vSwitch's
    # pmd-auto-lb: a worker busier than load_threshold % for a whole
    # interval, while another has room, triggers a reassignment if it would
    # lower the busiest worker's load by at least improvement %.
    rebalance_interval_s: int = 60      # 0: never automatically
    rebalance_load_threshold: int = 95
    rebalance_improvement: int = 25
    rebalance_sample_s: int = 10
    # Workers keep polling this long after their last frame before they
    # sleep (latency and batch size under load, for some CPU).  0: never.
    busy_poll_us: int = 200


@dataclass(frozen=True)
class ManagementConfig:
    socket: str = "/run/vswitchd/vswitchd.sock"
    socket_mode: int = 0o660
    socket_group: str | None = None     # None: leave the group alone


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1:9477"      # "" disables the exporter

    @property
    def enabled(self) -> bool:
        return self.listen != ""

    @property
    def host(self) -> str | None:
        """The address to bind, IPv6 without brackets; None when disabled."""
        return _split_listen(self.listen)[0] if self.enabled else None

    @property
    def port(self) -> int | None:
        return _split_listen(self.listen)[1] if self.enabled else None


class Ports(Mapping[str, PortConfig]):
    """Read-only name -> PortConfig mapping in file order.

    Unlike MappingProxyType it is hashable, so Config stays a value: equal
    configs compare and hash equal whatever order the ports were written in.
    """

    __slots__ = ("_ports",)

    def __init__(self, ports: Iterable[PortConfig] | Mapping[str, PortConfig] = ()) -> None:
        values = ports.values() if isinstance(ports, Mapping) else ports
        self._ports = {port.name: port for port in values}

    def __getitem__(self, name: str) -> PortConfig:
        return self._ports[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def __hash__(self) -> int:
        return hash(frozenset(self._ports.items()))

    def __repr__(self) -> str:
        return f"Ports({list(self._ports.values())!r})"


@dataclass(frozen=True)
class Config:
    switch: SwitchConfig = field(default_factory=SwitchConfig)
    management: ManagementConfig = field(default_factory=ManagementConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    ports: Mapping[str, PortConfig] = field(default_factory=Ports)

    def __post_init__(self) -> None:
        if not isinstance(self.ports, Ports):  # accept a plain dict, keep the value hashable
            object.__setattr__(self, "ports", Ports(self.ports))

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
            "ports": {name: port.to_dict() for name, port in self.ports.items()},
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

    @property
    def restart_required(self) -> tuple[str, ...]:
        """The changed [switch] fields that only take effect after a restart."""
        return tuple(name for name in self.switch_changed if name in RESTART_FIELDS)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.switch_changed
                    or self.management_changed or self.metrics_changed)


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
    _check_keys(data, "", _SECTIONS, what="section")
    ports: dict[str, PortConfig] = {}
    port_tables = data.get("ports", {})
    if not isinstance(port_tables, dict):
        raise _err("ports", f"{_show(port_tables)} is not a table (one [ports.NAME] per port)")
    for name, table in port_tables.items():
        port = parse_port(name, table)
        _check_unique(ports.values(), port)
        ports[name] = port
    return Config(
        switch=_parse_switch(data.get("switch", {})),
        management=_parse_management(data.get("management", {})),
        metrics=_parse_metrics(data.get("metrics", {})),
        ports=Ports(ports.values()),
    )


def _parse_switch(data: object) -> SwitchConfig:
    t = _check_keys(data, "switch", _SWITCH_KEYS)
    return SwitchConfig(
        workers=_get(t, "switch", "workers", 0, _int_in(0, 64)),
        cpus=_get(t, "switch", "cpus", None, _cpus),
        mac_aging_s=_get(t, "switch", "mac_aging_s", 300, _int_in(1, 1_000_000)),
        mac_table_size=_get(t, "switch", "mac_table_size", 8192, _int_in(16, 1_048_576)),
        rxq_assign=_get(t, "switch", "rxq_assign", "roundrobin", _one_of(RXQ_ASSIGN)),
        rebalance_interval_s=_get(t, "switch", "rebalance_interval_s", 60,
                                  _int_in(0, 86_400)),
        rebalance_load_threshold=_get(t, "switch", "rebalance_load_threshold", 95,
                                      _int_in(1, 100)),
        rebalance_improvement=_get(t, "switch", "rebalance_improvement", 25, _int_in(1, 100)),
        rebalance_sample_s=_get(t, "switch", "rebalance_sample_s", 10, _int_in(1, 3600)),
        busy_poll_us=_get(t, "switch", "busy_poll_us", 200, _int_in(0, 100_000)),
    )


def _parse_management(data: object) -> ManagementConfig:
    t = _check_keys(data, "management", _MANAGEMENT_KEYS)
    return ManagementConfig(
        socket=_get(t, "management", "socket", ManagementConfig.socket, _socket_path),
        socket_mode=_get(t, "management", "socket_mode", 0o660, _octal_mode),
        socket_group=_get(t, "management", "socket_group", None, _group),
    )


def _parse_metrics(data: object) -> MetricsConfig:
    t = _check_keys(data, "metrics", _METRICS_KEYS)
    return MetricsConfig(listen=_get(t, "metrics", "listen", MetricsConfig.listen, _listen))


# --- Ports -----------------------------------------------------------------------

def parse_port(name: str, table: object, path: str = "ports") -> PortConfig:
    """Validate one [ports.NAME] table."""
    _check_port_name(name, path)
    base = f"{path}.{name}"
    t = _check_keys(table, base, _PORT_KEYS)
    if "type" not in t:
        raise _err(f"{base}.type", "required key is missing (one of tap, netdev)")
    type_ = _one_of(PORT_TYPES)(t["type"], f"{base}.type")
    mode = _get(t, base, "mode", "access", _one_of(PORT_MODES))
    for key in _TAP_ONLY:
        if key in t and type_ != "tap":
            raise _err(f"{base}.{key}", f'not allowed for type "{type_}" (only for type "tap")')
    for key in _NETDEV_ONLY:
        if key in t and type_ != "netdev":
            raise _err(f"{base}.{key}", f'not allowed for type "{type_}" (only for type "netdev")')
    for key, only in _MODE_ONLY.items():
        if key in t and mode != only:
            raise _err(f"{base}.{key}", f'not allowed for mode "{mode}" (only for mode "{only}")')
    vlans = _get(t, base, "vlans", ALL_VLANS, parse_vlans)
    native_vlan = _get(t, base, "native_vlan", None, _int_in(VLAN_MIN, VLAN_MAX))
    if native_vlan is not None and not any(lo <= native_vlan <= hi for lo, hi in vlans):
        raise _err(f"{base}.native_vlan", f"{native_vlan} is not in the port's vlans "
                   f"{format_vlans(vlans)} (the native VLAN must be allowed)")
    return PortConfig(
        name=name,
        type=type_,
        ifname=_port_ifname(t, base, name),
        queues=_get(t, base, "queues", 1, _int_in(1, 16)),
        netns=_get(t, base, "netns", None, _netns),
        mode=mode,
        vlan=_get(t, base, "vlan", 1, _int_in(VLAN_MIN, VLAN_MAX)),
        vlans=vlans,
        native_vlan=native_vlan,
        persist=_get(t, base, "persist", False, _bool),
        rx_ring=_get(t, base, "rx_ring", None, _one_of(RX_RINGS)),
        mtu=_get(t, base, "mtu", None, _int_in(68, 65535)),
        offload=_get(t, base, "offload", OffloadConfig(), _offload),
        allowed_macs=_get(t, base, "allowed_macs", (), _allowed_macs),
        max_macs=_get(t, base, "max_macs", None, _int_in(1, MAX_MACS_LIMIT)),
        dhcp_guard=_get(t, base, "dhcp_guard", False, _bool),
        router_guard=_get(t, base, "router_guard", False, _bool),
        broadcast_pps=_get(t, base, "broadcast_pps", None, _int_in(1, MAX_PPS)),
        multicast_pps=_get(t, base, "multicast_pps", None, _int_in(1, MAX_PPS)),
        unknown_unicast_pps=_get(t, base, "unknown_unicast_pps", None, _int_in(1, MAX_PPS)),
    )


def _check_port_name(name: object, path: str = "ports") -> None:
    if not isinstance(name, str) or not _PORT_NAME_RE.fullmatch(name):
        raise _err(path, f"{_show(name)} is not a valid port name (1-32 of A-Z a-z 0-9 _ . -)")


def _port_ifname(t: dict[str, Any], base: str, name: str) -> str:
    if "ifname" in t:
        return _ifname(t["ifname"], f"{base}.ifname")
    if _ifname_ok(name):
        return name
    raise _err(f"{base}.ifname", f"{_show(name)} (the port name, used when ifname is not set) "
               f"is not a valid interface name ({_IFNAME_RULES}); set ifname")


def _check_unique(ports: Iterable[PortConfig], new: PortConfig) -> None:
    for other in ports:
        if other.name != new.name and (other.netns, other.ifname) == (new.netns, new.ifname):
            where = f' in netns "{new.netns}"' if new.netns else ""
            raise _err(f"ports.{new.name}.ifname", f'"{new.ifname}"{where} is already used by '
                       f"port {other.name} (each port needs its own interface)")


def with_port(cfg: Config, port: PortConfig) -> Config:
    """`cfg` with `port` added, or replacing the port of the same name."""
    _check_unique(cfg.ports.values(), port)
    ports = dict(cfg.ports)
    ports[port.name] = port
    return dataclasses.replace(cfg, ports=Ports(ports.values()))


def without_port(cfg: Config, name: str) -> Config:
    if name not in cfg.ports:
        raise _err(f"ports.{name}", "no such port")
    return dataclasses.replace(cfg, ports=Ports(p for p in cfg.ports.values() if p.name != name))


# --- vswitchctl port add / port set ---------------------------------------------

_KV_KEYS = tuple(k for k in _PORT_KEYS if k != "offload") + tuple(
    f"offload.{k}" for k in _OFFLOAD_KEYS)
_GUARD_BOOL_KEYS = ("dhcp_guard", "router_guard")
_GUARD_INT_KEYS = ("max_macs", "broadcast_pps", "multicast_pps", "unknown_unicast_pps")
_KV_INT_KEYS = ("queues", "vlan", "native_vlan", "mtu") + _GUARD_INT_KEYS
_KV_BOOL_KEYS = ("persist", "offload.csum", "offload.tso") + _GUARD_BOOL_KEYS
_KV_LIST_KEYS = ("allowed_macs",)
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True,
               "false": False, "no": False, "off": False, "0": False}


def port_from_kv(name: str, pairs: list[str]) -> PortConfig:
    """Build a port from `key=value` words; an empty value means the default."""
    _check_port_name(name)
    table: dict[str, Any] = {}
    for key, value in _parse_pairs(name, pairs).items():
        _set_dotted(table, key, value)
    return parse_port(name, table)


def port_update(port: PortConfig, pairs: list[str]) -> PortConfig:
    """Apply `key=value` words over `port` and validate the result as a whole.

    Changing mode drops the old mode's VLAN keys, so the new mode starts from
    its defaults (trunk: all VLANs, no native VLAN; access: VLAN 1) unless the
    same command sets them.  An empty value resets a key to its default.
    """
    changes = _parse_pairs(port.name, pairs)
    for key in ("type", "ifname", "netns"):
        if key in changes and changes[key] != getattr(port, key):
            raise _err(f"ports.{port.name}.{key}",
                       "cannot be changed with port set (delete the port and add it again)")
    table = port.to_dict()
    if "mode" in changes and (changes["mode"] or "access") != port.mode:
        for key in _MODE_ONLY:
            table.pop(key, None)
    for key, value in changes.items():
        _set_dotted(table, key, value)
    return parse_port(port.name, table)


def _parse_pairs(name: str, pairs: list[str]) -> dict[str, Any]:
    """`key=value` words -> {dotted key: typed value, or None for an empty value}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or not key:
            raise _err(f"ports.{name}", f"{_show(pair)} is not a key=value pair "
                       f"(keys: {', '.join(_KV_KEYS)})")
        path = f"ports.{name}.{key}"
        if key not in _KV_KEYS:
            raise _err(path, f"unknown key (allowed: {', '.join(_KV_KEYS)})")
        if key in out:
            raise _err(path, "given more than once (give each key once)")
        out[key] = _kv_value(key, raw)
    return out


def _kv_value(key: str, raw: str) -> Any:
    # Values that do not convert stay strings, so parse_port reports them with
    # the same message as the file would ("abc" is not an integer in 1-4094).
    if raw == "":
        return None
    if key in _KV_INT_KEYS and re.fullmatch(r"[+-]?[0-9]+", raw):
        return int(raw)
    if key in _KV_BOOL_KEYS:
        return _BOOL_WORDS.get(raw.lower(), raw)
    if key in _KV_LIST_KEYS:
        return [item.strip() for item in raw.split(",")]
    return raw


def _set_dotted(table: dict[str, Any], key: str, value: Any) -> None:
    """Set (or, for None, remove) `key`, which may be "offload.csum", in `table`."""
    head, _, leaf = key.rpartition(".")
    target = table.setdefault(head, {}) if head else table
    if value is None:
        target.pop(leaf, None)
    else:
        target[leaf] = value


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
    )


# --- VLAN lists ---------------------------------------------------------------------

def parse_vlans(text: object, key: str = "vlans") -> tuple[tuple[int, int], ...]:
    """"1-100,200" -> ((1, 100), (200, 200)): sorted, overlaps and neighbours merged."""
    if not isinstance(text, str):
        raise _err(key, f"{_show(text)} is not a VLAN list string ({_VLANS_RULES})")
    ranges = []
    for item in text.split(","):
        match = _VLAN_ITEM_RE.fullmatch(item.strip())
        lo, hi = (int(match[1]), int(match[2] or match[1])) if match else (0, -1)
        if not VLAN_MIN <= lo <= hi <= VLAN_MAX:
            raise _err(key, f"{_show(text)} is not a valid VLAN list ({_VLANS_RULES})")
        ranges.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def format_vlans(ranges: Iterable[tuple[int, int]]) -> str:
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


# --- Value checkers: each takes (value, key path) and returns the clean value --------

def _err(key: str, problem: str) -> ConfigError:
    return ConfigError(f"{key}: {problem}" if key else problem, key=key or None)


def _show(value: object) -> str:
    """A value as the user would have written it in TOML, kept short and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # dates and times
        return " ".join(str(value).split())


def _check_keys(data: object, path: str, allowed: tuple[str, ...],
                what: str = "key") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _err(path, f"{_show(data)} is not a table (keys: {', '.join(allowed)})")
    for key in data:
        if key not in allowed:
            raise _err(f"{path}.{key}" if path else key,
                       f"unknown {what} (allowed: {', '.join(allowed)})")
    return data


def _get(table: dict[str, Any], path: str, key: str, default: T,
         check: Callable[[Any, str], T]) -> T:
    return check(table[key], f"{path}.{key}") if key in table else default


def _int_in(lo: int, hi: int) -> Callable[[Any, str], int]:
    def check(value: Any, key: str) -> int:
        # bool is an int subclass: `vlan = true` must not mean VLAN 1.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _err(key, f"{_show(value)} is not an integer in {lo}-{hi}")
        if not lo <= value <= hi:
            raise _err(key, f"{value} is not in {lo}-{hi}")
        return value
    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, key: str) -> str:
        if value not in choices or not isinstance(value, str):
            raise _err(key, f"{_show(value)} is not one of {', '.join(choices)}")
        return value
    return check


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise _err(key, f"{_show(value)} is not a boolean (true or false)")
    return value


def _text(rules: str, ok: Callable[[str], bool]) -> Callable[[Any, str], str]:
    """A checker for a string value that must satisfy `ok`; `rules` says what is allowed."""
    def check(value: Any, key: str) -> str:
        if not isinstance(value, str) or not ok(value):
            raise _err(key, f"{_show(value)} is not {rules}")
        return value
    return check


def _ifname_ok(value: str) -> bool:
    # Linux dev_valid_name(): also rejects ":" (alias syntax) and "." / "..".
    return (0 < len(value.encode()) < _IFNAMSIZ and value not in (".", "..")
            and not any(c in "/:\0" or c.isspace() for c in value))


def _listen_ok(value: str) -> bool:
    try:
        return not value or bool(_split_listen(value))
    except ValueError:
        return False


_ifname = _text(f"a valid interface name ({_IFNAME_RULES})", _ifname_ok)
_netns = _text('a valid netns name (a name in /run/netns: no "/")', lambda v: (
    0 < len(v) <= 255 and v not in (".", "..") and "/" not in v and "\0" not in v))
_socket_path = _text(f"an absolute path (shorter than {_SUN_PATH_MAX} bytes)", lambda v: (
    v.startswith("/") and "\0" not in v and len(v.encode()) < _SUN_PATH_MAX))
_mode_text = _text('an octal mode string (like "0660")', lambda v: bool(_MODE_RE.fullmatch(v)))
_group_text = _text('a group name (or "" to leave the group alone)', lambda v: not any(
    c in ":\0" or c.isspace() for c in v))
_listen = _text(f"a valid listen address ({_LISTEN_RULES})", _listen_ok)


def _octal_mode(value: Any, key: str) -> int:
    return int(_mode_text(value, key), 8)


def _group(value: Any, key: str) -> str | None:
    return _group_text(value, key) or None


def _cpus(value: Any, key: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise _err(key, f"{_show(value)} is not a list of CPU numbers "
                   "(like [0, 1]; omit cpus to use all online CPUs)")
    cpus = tuple(_int_in(0, _MAX_CPU)(cpu, f"{key}[{i}]") for i, cpu in enumerate(value))
    for i, cpu in enumerate(cpus):
        if cpu in cpus[:i]:
            raise _err(key, f"CPU {cpu} is listed twice (each CPU at most once)")
    return cpus


def _offload(value: Any, key: str) -> OffloadConfig:
    t = _check_keys(value, key, _OFFLOAD_KEYS)
    return OffloadConfig(csum=_get(t, key, "csum", True, _bool),
                         tso=_get(t, key, "tso", True, _bool))


def _allowed_macs(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _err(key, f"{_show(value)} is not a list of MAC addresses "
                   '(like ["02:00:00:00:00:01"])')
    if len(value) > MAX_ALLOWED_MACS:
        raise _err(key, f"{len(value)} MAC addresses are too many (at most {MAX_ALLOWED_MACS})")
    macs: list[str] = []
    for item in value:
        if not isinstance(item, str) or not _MAC_RE.fullmatch(item):
            raise _err(key, f"{_show(item)} is not a MAC address")
        mac = item.lower()
        if int(mac[:2], 16) & 1:
            raise _err(key, f"{_show(item)} is a multicast address (sources are unicast)")
        if mac in macs:
            raise _err(key, f"{_show(item)} is listed twice (each MAC at most once)")
        macs.append(mac)
    return tuple(macs)


def _split_listen(text: str) -> tuple[str, int]:
    """"127.0.0.1:9477" -> ("127.0.0.1", 9477); "[::1]:9477" -> ("::1", 9477)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = text.rpartition(":")
        if not _HOST_RE.fullmatch(host):
            raise ValueError(text)
        if re.fullmatch(r"[0-9.]+", host):
            ipaddress.IPv4Address(host)
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) <= 65535:
        raise ValueError(text)
    return host, int(port)

