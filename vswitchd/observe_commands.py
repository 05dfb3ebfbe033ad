"""Management commands that let an operator see what the switch does
(issue 11): `mirror/show`, `trace` and the streaming `capture`.

Registered by vswitchd.commands.register(); reply shapes are the ones
vswitchd.cli formats (format_mirrors, vswitchd.trace.format_trace) and
``--json`` prints.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vswitchd import capture, trace
from vswitchd.control import ControlServer
from vswitchd.errors import VswitchError
from vswitchd.switch import VSwitch


def _trace(switch: VSwitch, a: dict[str, Any]) -> dict[str, Any]:
    name = a.get("port")
    if not isinstance(name, str) or not name:
        raise VswitchError("port: a port name is required")
    port = switch.port_by_name(name)
    assert port is not None
    flow, hexframe = a.get("flow"), a.get("hex")
    if (flow is None) == (hexframe is None):
        raise VswitchError("trace: give a FLOW or --hex FRAME (one of them)")
    if hexframe is not None:
        if not isinstance(hexframe, str):
            raise VswitchError("--hex: a hexadecimal frame is required")
        frame = trace.parse_hex(hexframe)
    else:
        if not isinstance(flow, str):
            raise VswitchError("flow: a flow such as dl_dst=...,ip is required")
        frame = trace.build_frame(trace.parse_flow(flow))
    names = {p.id: n for n, p in switch.ports.items()}
    rules = {p.id: switch.policy.rule_order(n) for n, p in switch.ports.items()}
    result = trace.run(switch.fast, port.id, names, frame, switch.mirrors.names(),
                       rules=rules)
    if flow is not None:
        result["flow"] = flow
    return result


def register(server: ControlServer, switch: VSwitch) -> None:
    async def serve_capture(request_id: Any, args: dict[str, Any],
                            reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await capture.serve(switch, request_id, args, reader, writer)

    server.register("mirror/show",
                    lambda a: switch.mirrors.show(switch.fast, switch.config.mirrors,
                                                  switch.ports),
                    "", "List mirrors with their counters")
    server.register("trace", lambda a: _trace(switch, a), "PORT FLOW | PORT --hex FRAME",
                    "Run a frame through the pipeline, changing nothing, and show each stage")
    server.register_stream("capture", serve_capture,
                           "PORT [--direction rx|tx|both] [--filter EXPR] [--snaplen N] "
                           "[-c COUNT] [--drops]", "Capture a port's frames as pcapng")
