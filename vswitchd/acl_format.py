"""Text for `vswitchctl acl show | sessions | flush`: pure functions from the
daemon's result to text, golden-testable like the rest of vswitchd.cli."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    from vswitchd.cli import _table as table
    return table(headers, rows)


def format_acl_show(result: list[dict[str, Any]]) -> str:
    """Per port: its rules in evaluation order, then the default action."""
    if not result:
        return "no port has a policy"
    lines: list[str] = []
    for port in result:
        limits = [f"{k} {port[k]}" for k in ("max_bandwidth_out", "max_bandwidth_in", "max_burst")
                  if port.get(k)]
        head = f"port {port['port']}: default {port['default']['action']}, " \
               f"{port['sessions']} sessions"
        lines.append(head + (f", {', '.join(limits)}" if limits else ""))
        rows = [[r["weight"], f"{r['acl']}.{r['rule']}", r["direction"],
                 r["action"] + (" stateful" if r["stateful"] else ""), r["match"],
                 r["packets"], r["bytes"]] for r in port["rules"]]
        for direction in ("in", "out"):
            d = port["default"][direction]
            rows.append(["-", "(default)", direction, port["default"]["action"], "no rule matched",
                         d["packets"], d["bytes"]])
        lines += ["  " + line for line in
                  _table(["WEIGHT", "RULE", "DIR", "ACTION", "MATCH", "PACKETS", "BYTES"], rows)]
    return "\n".join(lines)


def format_acl_sessions(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no sessions"
    rows = [[s["port"], s["protocol"], s["local"], s["remote"], s["direction"], s["state"],
             s["rule"], s["age_s"], s["idle_s"], s["timeout_s"]] for s in result]
    return "\n".join(_table(["PORT", "PROTO", "LOCAL", "REMOTE", "OPENED", "STATE", "RULE",
                             "AGE_S", "IDLE_S", "TIMEOUT_S"], rows))


def format_acl_flush(result: dict[str, Any]) -> str:
    return f"flushed {int(result['flushed'])} sessions"
