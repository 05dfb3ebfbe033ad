"""Port policy at run time: compiling each port's ACL, its sessions, its
bandwidth limits, and what `vswitchctl acl ...` and the exporter report.

``Policies`` belongs to the switch and to the event loop thread.  Before
every publication the switch calls ``prepare()``: a port whose effective
policy (its rules resolved from its sets, its default, its limits) changed
gets a freshly compiled ``fastpath_acl.Acl``; ``c_fields()`` gives the
fields its PortParams carry.  After the publication ``published()`` frees
the ACLs no worker can still see, and drops the sessions of rules that are
gone (a reload keeps sessions whose rule, by set and name, still exists).

Counters belong to a compiled ACL, so a recompiled port would start from
zero: ``prepare()`` carries each rule's counts over by (set, rule name), and
the default action's by direction, so Prometheus counters never go down.

The exporter runs in its own thread and must not read an ACL the event
loop may free: it reads ``report``, a snapshot the timer refreshes every
second (``refresh()``), as the rx ring counters are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vswitchd.acl_config import (
    PROTOCOL_NAMES,
    AclRule,
    AclSet,
    default_burst,
    format_rate,
    port_rules,
)
from vswitchd.config import PortConfig
from vswitchd.errors import ConfigError, VswitchError
from vswitchd.fastpath_acl import Acl, Session, Sessions, rule_id

log = logging.getLogger(__name__)

SESSION_DROP_REASONS = ("full", "expired", "flushed", "rule_removed")


@dataclass(frozen=True)
class PortPolicy:
    """Everything the fast path enforces for one port."""

    rules: tuple[AclRule, ...] = ()
    default: str = "allow"
    max_bps_out: int = 0
    max_bps_in: int = 0
    burst_bytes: int = 0

    @property
    def has_acl(self) -> bool:
        return bool(self.rules) or self.default != "allow"

    @property
    def stateful_ids(self) -> tuple[int, ...]:
        return tuple(rule_id(r) for r in self.rules if r.stateful)


def port_policy(acls: Mapping[str, AclSet], pc: PortConfig) -> PortPolicy:
    rates = [r for r in (pc.max_bandwidth_out, pc.max_bandwidth_in) if r]
    burst = pc.max_burst or (default_burst(max(rates)) if rates else 0)
    return PortPolicy(rules=port_rules(pc.name, pc.acls, acls), default=pc.acl_default,
                      max_bps_out=pc.max_bandwidth_out or 0,
                      max_bps_in=pc.max_bandwidth_in or 0, burst_bytes=burst)


@dataclass
class _PortState:
    policy: PortPolicy
    acl: Acl | None
    # Counts of earlier compilations: (set, rule) -> [packets, bytes], and
    # direction -> [packets, bytes] for the default action.
    carried: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    carried_default: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class RuleReport:
    acl: str
    rule: str
    weight: int
    direction: str
    action: str
    stateful: bool
    match: str
    packets: int
    bytes: int


@dataclass(frozen=True)
class PortReport:
    port: str
    rules: tuple[RuleReport, ...]
    default_action: str
    default: dict[str, tuple[int, int]]          # direction -> (packets, bytes)
    sessions: int
    max_bandwidth_out: int
    max_bandwidth_in: int
    max_burst: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "rules": [vars(r) for r in self.rules],
            "default": {"action": self.default_action,
                        **{d: {"packets": p, "bytes": b} for d, (p, b) in self.default.items()}},
            "sessions": self.sessions,
            "max_bandwidth_out": format_rate(self.max_bandwidth_out) if self.max_bandwidth_out
            else None,
            "max_bandwidth_in": format_rate(self.max_bandwidth_in) if self.max_bandwidth_in
            else None,
            "max_burst": self.max_burst or None,
        }


def _add(into: dict[Any, list[int]], key: Any, packets: int, nbytes: int) -> None:
    slot = into.setdefault(key, [0, 0])
    slot[0] += packets
    slot[1] += nbytes


class Policies:
    def __init__(self, n_ctx: int, sessions: Sessions) -> None:
        self.n_ctx = n_ctx
        self.sessions = sessions
        self._ports: dict[str, _PortState] = {}
        self._retired: list[Acl] = []
        self._prune: dict[str, tuple[int, ...]] = {}
        # Sessions removed by the control plane: (port, reason) -> count.
        self.removed: dict[tuple[str, str], int] = {}
        self.report: tuple[PortReport, ...] = ()

    # Publication.

    def prepare(self, acls: Mapping[str, AclSet], ports: Iterable[PortConfig]) -> None:
        """Compiles what changed for ``ports`` (the ports about to be
        published), resolving their sets in ``acls``, and forgets ports
        that are gone.  Raises VswitchError, changing nothing, if an ACL
        cannot be compiled."""
        wanted: dict[str, PortPolicy] = {}
        for pc in ports:
            try:
                wanted[pc.name] = port_policy(acls, pc)
            except ConfigError:
                # Mid-reload, a port not yet moved to its new config may not
                # resolve against the new sets: it keeps what it has until
                # the reload reaches it (the config was validated whole).
                state = self._ports.get(pc.name)
                wanted[pc.name] = state.policy if state is not None else PortPolicy()
        fresh: dict[str, Acl | None] = {}
        try:
            for name, policy in wanted.items():
                state = self._ports.get(name)
                if state is None or state.policy != policy:
                    if state is not None and state.policy.rules == policy.rules \
                            and state.policy.default == policy.default:
                        continue            # only the limits changed: same ACL
                    fresh[name] = (Acl(policy.rules, policy.default, self.n_ctx)
                                   if policy.has_acl else None)
        except VswitchError:
            for acl in fresh.values():
                if acl is not None:
                    acl.free()
            raise
        for name in list(self._ports):
            if name not in wanted:
                self._retire(self._ports.pop(name))
        for name, policy in wanted.items():
            existing = self._ports.get(name)
            if existing is None:
                if name not in fresh:
                    continue
                state = self._ports[name] = _PortState(policy, None)
            else:
                state = existing
            if name in fresh:
                if existing is not None:
                    self._retire(state)
                    if set(state.policy.stateful_ids) - set(policy.stateful_ids):
                        self._prune[name] = policy.stateful_ids
                state.acl = fresh[name]
                if fresh[name] is not None:
                    log.info("port %s: ACL of %d rules compiled (default %s)", name,
                             len(policy.rules), policy.default)
            state.policy = policy

    def _retire(self, state: _PortState) -> None:
        """Keeps the counts of ``state``'s ACL and queues it for freeing."""
        acl = state.acl
        if acl is None:
            return
        counts = acl.counters()
        for rule, (packets, nbytes) in zip(acl.rules, counts.rules, strict=True):
            _add(state.carried, (rule.acl, rule.name), packets, nbytes)
        for direction, (packets, nbytes) in counts.default.items():
            _add(state.carried_default, direction, packets, nbytes)
        self._retired.append(acl)
        state.acl = None

    def c_fields(self, name: str) -> dict[str, Any]:
        """PortParams fields for port ``name`` (after prepare())."""
        state = self._ports.get(name)
        if state is None:
            return {}
        p = state.policy
        return {"acl": state.acl.c_acl if state.acl is not None else None,
                "max_bps_out": p.max_bps_out, "max_bps_in": p.max_bps_in,
                "max_burst_bytes": p.burst_bytes}

    def published(self, ids: Mapping[str, int]) -> None:
        """After a publication: frees retired ACLs, drops sessions of rules
        that are gone."""
        for acl in self._retired:
            acl.free()
        self._retired.clear()
        for name, keep in self._prune.items():
            if name in ids:
                n = self.sessions.prune(ids[name], keep)
                if n:
                    self._count_removed(name, "rule_removed", n)
                    log.info("port %s: %d sessions of removed rules dropped", name, n)
        self._prune.clear()

    def port_closed(self, name: str, port_id: int) -> None:
        """Port ``name`` (id ``port_id``) is gone from the fast path: its
        sessions go too, before the id can be reused."""
        self.sessions.flush(port_id)

    # Timers.

    def expire(self, names: Mapping[int, str], now_ns: int | None = None) -> None:
        gone = self.sessions.expire(time.monotonic_ns() if now_ns is None else now_ns)
        for port_id, n in gone.items():
            if port_id in names:
                self._count_removed(names[port_id], "expired", n)

    def _count_removed(self, name: str, reason: str, n: int) -> None:
        self.removed[(name, reason)] = self.removed.get((name, reason), 0) + n

    def refresh(self, ids: Mapping[str, int]) -> None:
        """Takes the snapshot the exporter reads (event loop thread)."""
        self.report = tuple(self.port_report(name, ids[name]) for name in sorted(ids)
                            if name in self._ports)

    # Reporting.

    def port_report(self, name: str, port_id: int) -> PortReport:
        state = self._ports[name]
        counts = state.acl.counters() if state.acl is not None else None
        rules = []
        for i, rule in enumerate(state.policy.rules):
            base = state.carried.get((rule.acl, rule.name), [0, 0])
            live = counts.rules[i] if counts is not None else (0, 0)
            rules.append(RuleReport(rule.acl, rule.name, rule.weight, rule.direction,
                                    rule.action, rule.stateful, rule.match_text(),
                                    base[0] + live[0], base[1] + live[1]))
        default = {}
        for direction in ("in", "out"):
            base = state.carried_default.get(direction, [0, 0])
            live = counts.default[direction] if counts is not None else (0, 0)
            default[direction] = (base[0] + live[0], base[1] + live[1])
        p = state.policy
        return PortReport(name, tuple(rules), p.default, default,
                          self.sessions.count(0).get(port_id, 0),
                          p.max_bps_out, p.max_bps_in, p.burst_bytes)

    def rule_order(self, name: str) -> list[str]:
        """Port ``name``'s rules as "set.rule", in the order the C ACL holds them."""
        state = self._ports.get(name)
        if state is None or state.acl is None:
            return []
        return [f"{r.acl}.{r.name}" for r in state.acl.rules]

    def has(self, name: str) -> bool:
        return name in self._ports

    def rule_names(self, name: str) -> dict[int, str]:
        state = self._ports.get(name)
        if state is None:
            return {}
        return {rule_id(r): f"{r.acl}.{r.name}" for r in state.policy.rules}

    def flush(self, ids: Mapping[str, int], name: str | None = None) -> int:
        gone = self.sessions.flush(None if name is None else ids[name])
        by_id = {v: k for k, v in ids.items()}
        for port_id, n in gone.items():
            if port_id in by_id:
                self._count_removed(by_id[port_id], "flushed", n)
        return sum(gone.values())


def session_state(s: Session) -> str:
    """A session's state as an operator reads it."""
    if s.protocol != 6:
        return "active"
    flags = set(s.tcp)
    if "rst" in flags:
        return "reset"
    if {"fin_out", "fin_in"} <= flags:
        return "closing"
    if "fin_out" in flags or "fin_in" in flags:
        return "half-closed"
    syns = flags & {"syn_out", "syn_in"}
    if len(syns) == 1:
        return "opening"
    return "established"


def session_dict(s: Session, port: str, rule: str) -> dict[str, Any]:
    return {
        "port": port, "protocol": PROTOCOL_NAMES.get(s.protocol, s.protocol),
        "local": f"{s.local_ip}:{s.local_port}" if s.protocol in (6, 17) else s.local_ip,
        "remote": f"{s.remote_ip}:{s.remote_port}" if s.protocol in (6, 17) else s.remote_ip,
        "direction": s.direction, "state": session_state(s), "rule": rule,
        "age_s": round(s.age_s, 1), "idle_s": round(s.idle_s, 1), "timeout_s": s.timeout_s,
    }
