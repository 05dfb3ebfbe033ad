"""Port policy in the config: [acls.NAME] rule sets and a port's policy keys.

The keys are a contract (docs/policy.md):

    [acls.web]
    rules = [
      { name = "ssh-in", weight = 200, direction = "in", action = "allow",
        protocol = "tcp", local_port = "22", remote_ip = "10.0.0.0/8" },
      { name = "deny-all", weight = 1, direction = "both", action = "deny" },
    ]

    [ports.vm1]
    acls = ["web"]              # sets, evaluated together in weight order
    acl_default = "allow"       # no rule matched
    max_bandwidth_out = "500Mbit"
    max_bandwidth_in = "1Gbit"
    max_burst = "256KiB"

Directions and local/remote are the VM's, as Hyper-V's extended port ACLs
have them: "in" is traffic toward the VM, local_* its side of the packet.
Pure functions and frozen values, like vswitchd.config; compiling rules for
the fast path is vswitchd.policy's job.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from vswitchd.config_values import (
    VLAN_MAX,
    VLAN_MIN,
    boolean,
    check_keys,
    err,
    get_key,
    int_in,
    one_of,
    show,
)

IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network

DIRECTIONS = ("in", "out", "both")
ACTIONS = ("allow", "deny", "meter")
DEFAULT_ACTIONS = ("allow", "deny")
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}
PORT_PROTOCOLS = (6, 17, 132, 136)      # protocols whose header starts with ports
ICMP_PROTOCOLS = (1, 58)
MATCH_KEYS = ("local_mac", "remote_mac", "local_ip", "remote_ip", "protocol",
              "local_port", "remote_port", "icmp_type", "vlan", "ethertype")
RULE_KEYS = ("name", "weight", "direction", "action", "stateful", "idle_timeout_s",
             *MATCH_KEYS)
ACL_SET_KEYS = ("rules",)
POLICY_PORT_KEYS = ("acls", "acl_default", "max_bandwidth_out", "max_bandwidth_in",
                    "max_burst")
WEIGHT_MAX = 65535
DEFAULT_IDLE_TIMEOUT_S = 300
MAX_RULES_PER_PORT = 10_000
BPS_MIN, BPS_MAX = 8_000, 400_000_000_000
BURST_MIN, BURST_MAX = 3028, 1 << 30
# The default bucket depth: 10 ms at the rate, and at least two of the
# largest frames a port can be charged for (a 64 KiB GSO super-frame with
# its headers repeated per segment, vswitchd/policy.py).
BURST_DEFAULT_S = 0.010
BURST_FLOOR = 140_000

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_RANGE_RE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_RATE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(bit|bit/s|bps)?")
_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(i?)(B)?")
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


@dataclass(frozen=True)
class AclRule:
    """One rule of one set, checked.  None = the field matches anything."""

    acl: str
    name: str
    weight: int
    direction: str
    action: str
    stateful: bool = False
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S
    local_mac: str | None = None
    remote_mac: str | None = None
    local_ip: IpNet | None = None
    remote_ip: IpNet | None = None
    protocol: int | None = None
    local_port: tuple[int, int] | None = None
    remote_port: tuple[int, int] | None = None
    icmp_type: int | None = None
    vlan: int | None = None
    ethertype: int | None = None

    @property
    def directions(self) -> tuple[str, ...]:
        return ("in", "out") if self.direction == "both" else (self.direction,)

    @property
    def ip_version(self) -> int | None:
        for net in (self.local_ip, self.remote_ip):
            if net is not None:
                return net.version
        return None

    def match_text(self) -> str:
        """The match fields as `key=value` words, for `vswitchctl acl show`."""
        words = []
        for key in MATCH_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if key == "protocol":
                value = PROTOCOL_NAMES.get(value, value)
            elif key in ("local_port", "remote_port"):
                value = str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"
            elif key == "ethertype":
                value = f"0x{value:04x}"
            words.append(f"{key}={value}")
        return " ".join(words) or "any"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "weight": self.weight,
                               "direction": self.direction, "action": self.action}
        if self.stateful:
            out["stateful"] = True
            out["idle_timeout_s"] = self.idle_timeout_s
        for key in MATCH_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if key in ("local_ip", "remote_ip"):
                value = str(value)
            elif key in ("local_port", "remote_port"):
                value = str(value[0]) if value[0] == value[1] else f"{value[0]}-{value[1]}"
            out[key] = value
        return out


@dataclass(frozen=True)
class AclSet:
    name: str
    rules: tuple[AclRule, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"rules": [r.to_dict() for r in self.rules]}


# --- Rule sets --------------------------------------------------------------------

def parse_acl_sets(data: object) -> dict[str, AclSet]:
    """Validate the [acls] section: NAME -> AclSet."""
    if not isinstance(data, dict):
        raise err("acls", f"{show(data)} is not a table (one [acls.NAME] per rule set)")
    sets = {}
    for name, table in data.items():
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise err("acls", f"{show(name)} is not a valid ACL set name "
                       "(1-64 of A-Z a-z 0-9 _ . -)")
        sets[name] = parse_acl_set(name, table)
    return sets


def parse_acl_set(name: str, table: object) -> AclSet:
    base = f"acls.{name}"
    t = check_keys(table, base, ACL_SET_KEYS)
    rules = t.get("rules", [])
    if not isinstance(rules, list):
        raise err(f"{base}.rules", f"{show(rules)} is not a list of rule tables")
    parsed: list[AclRule] = []
    for i, raw in enumerate(rules):
        rule = parse_rule(name, raw, f"{base}.rules[{i}]")
        if any(r.name == rule.name for r in parsed):
            raise err(f"{base}.rules[{i}].name", f"{show(rule.name)} is used by another rule "
                       "of this set (names are unique within a set)")
        parsed.append(rule)
    return AclSet(name, tuple(parsed))


def parse_rule(acl: str, raw: object, path: str) -> AclRule:
    t = check_keys(raw, path, RULE_KEYS)
    for key in ("name", "weight", "direction", "action"):
        if key not in t:
            raise err(f"{path}.{key}", "required key is missing")
    name = t["name"]
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise err(f"{path}.name", f"{show(name)} is not a valid rule name "
                   "(1-64 of A-Z a-z 0-9 _ . -)")
    action = one_of(ACTIONS)(t["action"], f"{path}.action")
    stateful = get_key(t, path, "stateful", False, boolean)
    if stateful and action != "allow":
        raise err(f"{path}.stateful", f'only an "allow" rule can be stateful, '
                   f'this one is "{action}"')
    if "idle_timeout_s" in t and not stateful:
        raise err(f"{path}.idle_timeout_s", "only for stateful rules (set stateful = true)")
    protocol = get_key(t, path, "protocol", None, _protocol)
    rule = AclRule(
        acl=acl, name=name,
        weight=int_in(0, WEIGHT_MAX)(t["weight"], f"{path}.weight"),
        direction=one_of(DIRECTIONS)(t["direction"], f"{path}.direction"),
        action=action, stateful=stateful,
        idle_timeout_s=get_key(t, path, "idle_timeout_s", DEFAULT_IDLE_TIMEOUT_S,
                               int_in(1, 30 * 86_400)),
        local_mac=get_key(t, path, "local_mac", None, _mac),
        remote_mac=get_key(t, path, "remote_mac", None, _mac),
        local_ip=get_key(t, path, "local_ip", None, _ip_net),
        remote_ip=get_key(t, path, "remote_ip", None, _ip_net),
        protocol=protocol,
        local_port=get_key(t, path, "local_port", None, _port_range),
        remote_port=get_key(t, path, "remote_port", None, _port_range),
        icmp_type=get_key(t, path, "icmp_type", None, int_in(0, 255)),
        vlan=get_key(t, path, "vlan", None, int_in(VLAN_MIN, VLAN_MAX)),
        ethertype=get_key(t, path, "ethertype", None, _ethertype),
    )
    _check_consistent(rule, path)
    return rule


def _check_consistent(rule: AclRule, path: str) -> None:
    """Fields that cannot be true of one packet are an error, not a rule
    that silently never matches."""
    for key in ("local_port", "remote_port"):
        if getattr(rule, key) is not None and rule.protocol not in PORT_PROTOCOLS:
            raise err(f"{path}.{key}", 'needs protocol "tcp" or "udp" (or 132, 136)')
    if rule.icmp_type is not None and rule.protocol not in ICMP_PROTOCOLS:
        raise err(f"{path}.icmp_type", 'needs protocol "icmp" or "icmpv6"')
    if (rule.local_ip is not None and rule.remote_ip is not None
            and rule.local_ip.version != rule.remote_ip.version):
        raise err(f"{path}.remote_ip", f"is IPv{rule.remote_ip.version} but local_ip is "
                   f"IPv{rule.local_ip.version}")
    version = rule.ip_version
    implied = {4: 0x0800, 6: 0x86DD}.get(version or 0)
    if implied is not None and rule.ethertype not in (None, implied):
        raise err(f"{path}.ethertype", f"0x{rule.ethertype:04x} contradicts the rule's "
                   f"IPv{version} addresses (0x{implied:04x})")
    if rule.protocol is not None and rule.ethertype not in (None, 0x0800, 0x86DD):
        raise err(f"{path}.protocol", f"needs an IP ethertype, not 0x{rule.ethertype:04x}")


def _protocol(value: Any, key: str) -> int:
    if isinstance(value, str) and value.lower() in PROTOCOLS:
        return PROTOCOLS[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    raise err(key, f"{show(value)} is not a protocol (tcp, udp, icmp, icmpv6 or 0-255)")


def _mac(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
        raise err(key, f"{show(value)} is not a MAC address")
    return value.lower()


def _ip_net(value: Any, key: str) -> IpNet:
    if isinstance(value, str):
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            pass
    raise err(key, f"{show(value)} is not an address or CIDR")


def _port_range(value: Any, key: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _RANGE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match:
        lo, hi = int(match[1]), int(match[2] or match[1])
        if lo <= hi <= 65535:
            return lo, hi
        if lo > hi:
            raise err(key, f"{show(value)} is backwards (N-M with N <= M)")
    raise err(key, f"{show(value)} is not a port or port range (N or N-M within 0-65535)")


def _ethertype(value: Any, key: str) -> int:
    if isinstance(value, str):
        try:
            value = int(value, 0)
        except ValueError:
            pass
    if isinstance(value, int) and not isinstance(value, bool) and 0x0600 <= value <= 0xFFFF:
        return value
    raise err(key, f"{show(value)} is not an EtherType (0x0600-0xffff, like \"0x0800\")")


# --- A port's policy keys ---------------------------------------------------------

def acl_names(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(key, f'{show(value)} is not a list of ACL set names (like ["web"])')
    for i, name in enumerate(value):
        if name in value[:i]:
            raise err(key, f"{show(name)} is listed twice")
    return tuple(value)


def bandwidth(value: Any, key: str) -> int:
    """"500Mbit" -> 500_000_000 bit/s (k, M, G are powers of 1000, as
    Hyper-V's MaximumBandwidth); a bare integer is bit/s."""
    bps: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        bps = value
    elif isinstance(value, str):
        match = _RATE_RE.fullmatch(value.strip())
        if match:
            bps = float(match[1]) * _SI[match[2].lower()]
    if bps is None:
        raise err(key, f'{show(value)} is not a rate (like "500Mbit", "1Gbit", "100kbit")')
    if not BPS_MIN <= bps <= BPS_MAX:
        raise err(key, f"{show(value)} is not within 8kbit-400Gbit")
    return int(bps)


def byte_size(value: Any, key: str) -> int:
    """"256KiB" -> 262144 bytes (KiB/MiB powers of 1024, KB/MB of 1000)."""
    size: float | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.strip())
        if match and (match[4] or not match[2]):
            table = _BINARY if match[3] else _SI
            size = float(match[1]) * table[match[2].lower()]
    if size is None:
        raise err(key, f'{show(value)} is not a size in bytes (like "256KiB", "1MB", 65536)')
    if not BURST_MIN <= size <= BURST_MAX:
        raise err(key, f"{show(value)} is not within {BURST_MIN} bytes-1GiB "
                   "(at least two full-size frames)")
    return int(size)


def default_burst(bps: int) -> int:
    return max(int(bps / 8 * BURST_DEFAULT_S), BURST_FLOOR)


def format_rate(bps: int) -> str:
    for unit, scale in (("Gbit", 10**9), ("Mbit", 10**6), ("kbit", 10**3)):
        if bps % scale == 0 or bps >= scale * 10:
            value = bps / scale
            return f"{value:g}{unit}"
    return f"{bps}bit"


# --- Resolving a port's rules -----------------------------------------------------

def port_rules(port_name: str, acls: tuple[str, ...],
               sets: Mapping[str, AclSet]) -> tuple[AclRule, ...]:
    """Every rule of the port's sets, in evaluation order (weight descending,
    then as listed); raises for a set that does not exist and for two rules
    with the same weight and direction."""
    path = f"ports.{port_name}.acls"
    rules: list[AclRule] = []
    for name in acls:
        if name not in sets:
            known = ", ".join(sorted(sets)) or "none"
            raise err(path, f'no ACL set "{name}" (defined: {known})')
        rules.extend(sets[name].rules)
    if len(rules) > MAX_RULES_PER_PORT:
        raise err(path, f"{len(rules)} rules are too many (at most {MAX_RULES_PER_PORT} a port)")
    seen: dict[tuple[int, str], AclRule] = {}
    for rule in rules:
        for direction in rule.directions:
            other = seen.get((rule.weight, direction))
            if other is not None:
                raise err(path, f"rules {other.acl}.{other.name} and {rule.acl}.{rule.name} "
                           f'both have weight {rule.weight} in direction "{direction}" '
                           "(weights order the rules: make them differ)")
            seen[(rule.weight, direction)] = rule
    return tuple(sorted(rules, key=lambda r: -r.weight))


def check_ports_acls(ports: Iterable[Any], sets: Mapping[str, AclSet]) -> None:
    for port in ports:
        port_rules(port.name, port.acls, sets)
