"""What `vswitchctl acl show | sessions | flush` return: plain data, the
shapes vswitchd.cli formats and `--json` prints."""

from __future__ import annotations

import time
from typing import Any

from vswitchd.policy import session_dict
from vswitchd.switch import VSwitch


def _ports(switch: VSwitch, port: str | None) -> dict[str, int]:
    ids = switch.port_ids()
    if port is not None:
        switch.port_by_name(port)       # raises for an unknown port
        return {port: ids[port]}
    return ids


def acl_show(switch: VSwitch, port: str | None = None) -> list[dict[str, Any]]:
    """Each port's effective rules in evaluation order, with counters."""
    return [switch.policy.port_report(name, port_id).to_dict()
            for name, port_id in sorted(_ports(switch, port).items())
            if switch.policy.has(name)]


def acl_sessions(switch: VSwitch, port: str | None = None) -> list[dict[str, Any]]:
    """Live stateful sessions with their age and state."""
    ids = _ports(switch, port)
    names = {v: k for k, v in switch.port_ids().items()}
    now = time.monotonic_ns()
    out = []
    for s in switch.policy.sessions.dump(now, None if port is None else ids[port]):
        name = names.get(s.port)
        if name is None:
            continue
        rule = switch.policy.rule_names(name).get(s.rule_id, f"{s.rule_id:016x}")
        out.append(session_dict(s, name, rule))
    out.sort(key=lambda d: (d["port"], d["age_s"]))
    return out


def acl_flush(switch: VSwitch, port: str | None = None) -> dict[str, int]:
    ids = _ports(switch, port)
    return {"flushed": switch.policy.flush(switch.port_ids(), port if port in ids else None)}
