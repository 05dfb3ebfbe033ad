"""The C side of port policy: compiled ACLs (csrc/vs_acl.h) and the
switch's session table (csrc/vs_acl_sessions.h).

With ``vswitchd.fastpath`` the only module that touches ``vswitchd._fastpath``:
it turns checked ``AclRule`` values into C rules, owns the compiled objects,
and reads their counters back as plain Python values.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vswitchd._fastpath import ffi, lib
from vswitchd.acl_config import AclRule
from vswitchd.fastpath import MAX_PORTS, FastpathError, _check, mac_to_bytes

IN: int = lib.VS_ACL_IN
OUT: int = lib.VS_ACL_OUT
DIRECTIONS = {"in": IN, "out": OUT}
ACTIONS = {"allow": lib.VS_ACL_ALLOW, "deny": lib.VS_ACL_DENY, "meter": lib.VS_ACL_METER}
TCP_FLAGS = {"syn_out": lib.VS_ACL_TCP_SYN_OUT, "syn_in": lib.VS_ACL_TCP_SYN_IN,
             "fin_out": lib.VS_ACL_TCP_FIN_OUT, "fin_in": lib.VS_ACL_TCP_FIN_IN,
             "rst": lib.VS_ACL_TCP_RST}
_F_IP, _F_IP6, _F_L4 = lib.VS_ACL_F_IP, lib.VS_ACL_F_IP6, lib.VS_ACL_F_L4


def rule_id(rule: AclRule) -> int:
    """A rule's identity across reloads: its set and its name.  Sessions
    opened by a rule live as long as a rule of that name does."""
    digest = hashlib.blake2b(f"{rule.acl}\0{rule.name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _put_net(key: Any, mask: Any, field: str, net: ipaddress.IPv4Network
             | ipaddress.IPv6Network) -> None:
    raw = net.network_address.packed
    bits = net.netmask.packed
    getattr(key, field)[0:len(raw)] = list(raw)
    getattr(mask, field)[0:len(bits)] = list(bits)


def _fill(c: Any, rule: AclRule) -> None:
    key, mask = c.key, c.mask
    c.id = rule_id(rule)
    c.weight = rule.weight
    c.dirs = sum(DIRECTIONS[d] for d in rule.directions)
    c.action = ACTIONS[rule.action]
    c.stateful = int(rule.stateful)
    c.idle_timeout_s = rule.idle_timeout_s
    flags_value = flags_mask = 0
    for field in ("local_mac", "remote_mac"):
        mac = getattr(rule, field)
        if mac is not None:
            getattr(key, field)[0:6] = list(mac_to_bytes(mac))
            getattr(mask, field)[0:6] = [0xFF] * 6
    version = rule.ip_version
    for field in ("local_ip", "remote_ip"):
        net = getattr(rule, field)
        if net is not None:
            _put_net(key, mask, field, net)
    if version is not None:
        flags_mask |= _F_IP | _F_IP6
        flags_value |= _F_IP | (_F_IP6 if version == 6 else 0)
    if rule.protocol is not None:
        key.proto, mask.proto = rule.protocol, 0xFF
        flags_mask |= _F_IP
        flags_value |= _F_IP
    c.local_port_lo, c.local_port_hi = rule.local_port or (0, 65535)
    c.remote_port_lo, c.remote_port_hi = rule.remote_port or (0, 65535)
    if rule.icmp_type is not None:
        key.icmp_type, mask.icmp_type = rule.icmp_type, 0xFF
    if rule.local_port or rule.remote_port or rule.icmp_type is not None:
        flags_mask |= _F_L4
        flags_value |= _F_L4
    if rule.vlan is not None:
        key.vlan, mask.vlan = rule.vlan, 0xFFFF
    if rule.ethertype is not None:
        key.ethertype, mask.ethertype = rule.ethertype, 0xFFFF
    key.flags, mask.flags = flags_value, flags_mask


@dataclass(frozen=True)
class AclCounters:
    rules: tuple[tuple[int, int], ...]          # (packets, bytes) per rule, as given
    default: dict[str, tuple[int, int]]         # "in"/"out" -> (packets, bytes)


class Acl:
    """A compiled ACL for one port.  Published through PortParams.acl and
    freed (``free()``) only after a config without it has been published."""

    def __init__(self, rules: Sequence[AclRule], default_action: str, n_ctx: int) -> None:
        self.rules = tuple(rules)
        c_rules = ffi.new("struct vs_acl_rule[]", max(1, len(self.rules)))
        for i, rule in enumerate(self.rules):
            _fill(c_rules[i], rule)
        out = ffi.new("struct vs_acl **")
        _check(lib.vs_acl_new(c_rules, len(self.rules), ACTIONS[default_action], n_ctx, out),
               "compiling the ACL")
        self._acl: object | None = out[0]

    @property
    def c_acl(self) -> object:
        if self._acl is None:
            raise FastpathError("ACL used after free")
        return self._acl

    def n_tables(self, direction: str) -> int:
        """Hash tables the classifier searches (0: a linear scan)."""
        return int(lib.vs_acl_n_tables(self.c_acl, DIRECTIONS[direction]))

    def counters(self) -> AclCounters:
        n = len(self.rules)
        out = ffi.new("uint64_t[]", 2 * n + 4)
        lib.vs_acl_counters(self.c_acl, out)
        return AclCounters(
            rules=tuple((int(out[2 * i]), int(out[2 * i + 1])) for i in range(n)),
            default={"in": (int(out[2 * n]), int(out[2 * n + 1])),
                     "out": (int(out[2 * n + 2]), int(out[2 * n + 3]))})

    def free(self) -> None:
        acl, self._acl = self._acl, None
        if acl is not None:
            lib.vs_acl_free(acl)


@dataclass(frozen=True)
class Session:
    port: int
    protocol: int
    local_ip: str
    remote_ip: str
    local_port: int
    remote_port: int
    direction: str              # of the frame that opened it
    tcp: tuple[str, ...]        # TCP flags seen (syn_out, fin_in, rst...)
    timeout_s: int
    rule_id: int
    age_s: float
    idle_s: float


def _addr(raw: object, ip6: bool) -> str:
    data = bytes(ffi.buffer(raw, 16))
    return str(ipaddress.IPv6Address(data) if ip6 else ipaddress.IPv4Address(data[:4]))


class Sessions:
    """The switch's stateful session table (owned by the C switch)."""

    def __init__(self, ptr: object) -> None:
        self._t = ptr

    @property
    def capacity(self) -> int:
        return int(lib.vs_acl_sessions_capacity(self._t))

    @property
    def live(self) -> int:
        return int(lib.vs_acl_sessions_live(self._t))

    @staticmethod
    def _per_port(buf: Any) -> dict[int, int]:
        return {i: int(buf[i]) for i in range(MAX_PORTS) if buf[i]}

    def expire(self, now_ns: int) -> dict[int, int]:
        """Removes expired sessions; returns how many went, per port id."""
        buf = ffi.new("uint32_t[]", MAX_PORTS)
        lib.vs_acl_sessions_expire(self._t, now_ns, buf)
        return self._per_port(buf)

    def flush(self, port: int | None = None) -> dict[int, int]:
        buf = ffi.new("uint32_t[]", MAX_PORTS)
        lib.vs_acl_sessions_flush(self._t, -1 if port is None else port, buf)
        return self._per_port(buf)

    def prune(self, port: int, keep_ids: Sequence[int]) -> int:
        """Removes the sessions of ``port`` whose rule id is not kept."""
        ids = ffi.new("uint64_t[]", list(keep_ids) or [0])
        return int(lib.vs_acl_sessions_prune(self._t, port, ids, len(keep_ids), ffi.NULL))

    def count(self, now_ns: int) -> dict[int, int]:
        buf = ffi.new("uint32_t[]", MAX_PORTS)
        lib.vs_acl_sessions_count(self._t, now_ns, buf)
        return self._per_port(buf)

    def dump(self, now_ns: int, port: int | None = None, limit: int = 100_000) -> list[Session]:
        size = max(1, min(limit, self.live + 64))
        buf = ffi.new("struct vs_acl_session_info[]", size)
        n = lib.vs_acl_sessions_dump(self._t, -1 if port is None else port, now_ns, buf, size)
        out = []
        for i in range(n):
            s = buf[i]
            out.append(Session(
                port=s.port, protocol=s.proto, local_ip=_addr(s.local_ip, bool(s.ip6)),
                remote_ip=_addr(s.remote_ip, bool(s.ip6)), local_port=s.local_port,
                remote_port=s.remote_port, direction="out" if s.dir == OUT else "in",
                tcp=tuple(name for name, bit in TCP_FLAGS.items() if s.tcp & bit),
                timeout_s=s.timeout_s, rule_id=int(s.rule_id), age_s=s.age_ns / 1e9,
                idle_s=s.idle_ns / 1e9))
        return out


def classify(acl: Acl, frame: bytes, vlan: int, direction: str,
             type_off: int = 12, counting_as: int | None = None) -> tuple[str, int | None]:
    """What ``acl`` decides for ``frame`` (EtherType at ``type_off``) in
    VLAN ``vlan`` travelling ``direction``: ("allow" or "deny", index of the
    deciding rule or None for the default).  Counts nothing, unless
    ``counting_as`` names a context (tests: the path workers take, through
    that context's decision cache)."""
    key = ffi.new("struct vs_acl_key *")
    lib.vs_acl_parse(frame, len(frame), type_off, vlan, DIRECTIONS[direction], key)
    out = ffi.new("struct vs_acl_verdict *")
    ctx = 0 if counting_as is None else counting_as
    lib.vs_acl_classify(acl.c_acl, DIRECTIONS[direction], key, ctx, len(frame),
                        int(counting_as is not None), out)
    action = "deny" if out.action == lib.VS_ACL_DENY else "allow"
    return action, (None if out.rule < 0 else int(out.rule))
