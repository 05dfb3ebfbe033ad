"""Prometheus families for port policy: ACL rule and default-action
counters, sessions, and bandwidth-limit drops (names in docs/operations.md).

Built from what a scrape may read without touching a compiled ACL: the
policy snapshot the event loop refreshes every second (vswitchd/policy.py)
and the ports' C counters the collector reads anyway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from vswitchd.policy import SESSION_DROP_REASONS, PortReport

NS = "vswitchd"
RULE_LABELS = ("port", "acl", "rule", "direction", "action")
# C counters (csrc/vs_counters.h) the policy families export instead of the
# generic per-port ones.
QOS_COUNTERS = {"out": ("qos_out", "qos_dropped_out_bytes", "qos_held_out"),
                "in": ("qos_in", "qos_dropped_in_bytes", "qos_held_in")}
POLICY_TRAFFIC_COUNTERS = tuple(n for c in QOS_COUNTERS.values() for n in c[1:])


def policy_families(reports: Sequence[PortReport],
                    removed: Mapping[tuple[str, str], int],
                    counters: Iterable[tuple[str, Mapping[str, int]]]) -> list[Metric]:
    """``counters``: (port name, its C counters) for every port scraped."""
    matches = CounterMetricFamily(f"{NS}_acl_rule_matches",
                                  "Frames that matched the ACL rule (meters: counted and "
                                  "passed on; allow/deny: decided)", labels=RULE_LABELS)
    match_bytes = CounterMetricFamily(f"{NS}_acl_rule_matches_bytes",
                                      "Bytes of the frames that matched the ACL rule",
                                      labels=RULE_LABELS)
    default = CounterMetricFamily(f"{NS}_acl_default",
                                  "Frames that matched no ACL rule of the port and got its "
                                  "acl_default", labels=("port", "direction", "action"))
    sessions = GaugeMetricFamily(f"{NS}_acl_sessions", "Live stateful ACL sessions of the port",
                                 labels=("port",))
    dropped = CounterMetricFamily(f"{NS}_acl_sessions_dropped",
                                  "Stateful sessions refused (full: the table was full) or "
                                  "removed (expired, flushed, rule_removed by a reload)",
                                  labels=("port", "reason"))
    qos_packets = CounterMetricFamily(f"{NS}_qos_dropped_packets",
                                      "Frames dropped by the port's bandwidth limit "
                                      "(out: from the VM, in: toward it)",
                                      labels=("port", "direction"))
    qos_bytes = CounterMetricFamily(f"{NS}_qos_dropped_bytes",
                                    "Wire bytes dropped by the port's bandwidth limit",
                                    labels=("port", "direction"))
    qos_held = CounterMetricFamily(f"{NS}_qos_held_packets",
                                   "Frames held back (and sent later) to keep within the "
                                   "port's bandwidth limit", labels=("port", "direction"))
    for r in reports:
        for rule in r.rules:
            labels = [r.port, rule.acl, rule.rule, rule.direction, rule.action]
            matches.add_metric(labels, rule.packets)
            match_bytes.add_metric(labels, rule.bytes)
        for direction, (packets, _) in r.default.items():
            default.add_metric([r.port, direction, r.default_action], packets)
        sessions.add_metric([r.port], r.sessions)
    reported = {r.port for r in reports}
    for name, c in counters:
        if name in reported:
            for reason in SESSION_DROP_REASONS:
                value = c["acl_sessions_full"] if reason == "full" else removed.get(
                    (name, reason), 0)
                dropped.add_metric([name, reason], value)
        for direction, (n_packets, n_bytes, n_held) in QOS_COUNTERS.items():
            qos_packets.add_metric([name, direction], c[n_packets])
            qos_bytes.add_metric([name, direction], c[n_bytes])
            qos_held.add_metric([name, direction], c[n_held])
    return [matches, match_bytes, default, sessions, dropped, qos_packets, qos_bytes, qos_held]
