"""Management commands: the names ``vswitchctl`` sends, bound to the switch.

Each command is registered with its usage and help text (``vswitchctl
list-commands`` prints them).  Handlers validate their arguments and raise
VswitchError with one line naming what is wrong; the reply shapes are the
ones ``vswitchd.cli`` formats and ``--json`` prints.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from vswitchd import acl_reports, observe_commands, reports, vxlan_report
from vswitchd.control import ControlServer
from vswitchd.errors import VswitchError
from vswitchd.switch import VSwitch


def _vlan(args: dict[str, Any]) -> int | None:
    vlan = args.get("vlan")
    if vlan is None:
        return None
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
        raise VswitchError(f"--vlan: {vlan!r} is not in 1-4094")
    return vlan


def _str(args: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = args.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise VswitchError(f"{key}: a non-empty string is required")
    return value


def _pairs(args: dict[str, Any]) -> list[str]:
    pairs = args.get("pairs") or []
    if not isinstance(pairs, list) or not all(isinstance(p, str) for p in pairs):
        raise VswitchError("pairs: a list of key=value strings is required")
    return pairs


def register(server: ControlServer, switch: VSwitch,
             reload: Callable[[], Awaitable[str]]) -> None:
    """Registers every management command of ``switch`` on ``server``;
    ``reload`` re-reads the config file and applies it."""

    async def port_add(a: dict[str, Any]) -> dict[str, str]:
        return {"message": await switch.port_add(_str(a, "name", True) or "", _pairs(a))}

    async def port_del(a: dict[str, Any]) -> dict[str, str]:
        return {"message": await switch.port_del(_str(a, "name", True) or "")}

    async def port_set(a: dict[str, Any]) -> dict[str, str]:
        return {"message": await switch.port_set(_str(a, "name", True) or "", _pairs(a))}

    async def do_reload(a: dict[str, Any]) -> dict[str, str]:
        return {"message": await reload()}

    server.register("show", lambda a: reports.show(switch), "",
                    "Show every port: type, interface, VLANs, link, queues, counters")
    server.register("fdb/show", lambda a: reports.fdb_show(switch, _vlan(a), _str(a, "port")),
                    "[--vlan N] [--port P]", "List learned MAC addresses with their age")
    server.register("fdb/flush", lambda a: switch.fdb_flush(_vlan(a), _str(a, "port")),
                    "[--vlan N] [--port P]", "Forget learned MAC addresses")
    server.register("port/add", port_add, "NAME key=value...",
                    "Attach a port (same keys as the config file)")
    server.register("port/del", port_del, "NAME", "Detach a port")
    server.register("port/set", port_set, "NAME key=value...", "Change a port in place")
    server.register("reload", do_reload, "", "Re-read the config file and apply the difference")
    server.register("workers", lambda a: reports.workers(switch), "",
                    "Show each worker's CPU, busy ratio and rx queues")
    server.register("rebalance", lambda a: {"message": switch.rebalance(force=True)}, "",
                    "Reassign rx queues to workers by their measured load now")
    server.register("vxlan/show", lambda a: vxlan_report.show(switch), "",
                    "Show each vxlan port's VTEPs, VNIs and per-VTEP counters")
    server.register("stats", lambda a: reports.stats(switch, _str(a, "port")), "[--port P]",
                    "Show every counter and drop reason per port, and MAC table events")
    server.register("acl/show", lambda a: acl_reports.acl_show(switch, _str(a, "port")),
                    "[--port P]", "List each port's ACL rules in evaluation order, with counters")
    server.register("acl/sessions", lambda a: acl_reports.acl_sessions(switch, _str(a, "port")),
                    "[--port P]", "List stateful ACL sessions with their age and state")
    server.register("acl/flush", lambda a: acl_reports.acl_flush(switch, _str(a, "port")),
                    "[--port P]", "Remove stateful ACL sessions")
    observe_commands.register(server, switch)
