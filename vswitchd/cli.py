"""vswitchctl: talk to a running vswitchd over its management socket.

    vswitchctl [--socket PATH] [--json] [--timeout S] COMMAND ...

Each subcommand maps to one daemon command (`fdb show` -> "fdb/show").  The
global options are also accepted after the subcommand (`vswitchctl fdb show
--json`).  Exit status: 0 success, 1 any error (one line on stderr), 2 usage.

The text output of every command comes from a small pure `format_*`
function so it can be golden-tested; `--json` prints the daemon's result
verbatim (indent 2, sorted keys).  A result of unexpected shape is printed as
JSON rather than crashing.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from vswitchd import acl_format, observe_cli, vxlan_report
from vswitchd.errors import VswitchError
from vswitchd.protocol import (
    DEFAULT_SOCKET,
    SOCKET_ENV,
    Request,
    decode_reply,
    encode_request,
)

DEFAULT_TIMEOUT_S = 30.0

ArgsBuilder = Callable[[argparse.Namespace], dict[str, Any]]

# Client.


def call(path: str, command: str, args: dict[str, Any], timeout_s: float | None) -> Any:
    """Send one request to the daemon at `path`; return its result or raise VswitchError."""
    deadline = None if not timeout_s else time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s or None)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise VswitchError(
                f"cannot connect to {path}: no such file (is vswitchd running?)"
            ) from None
        except ConnectionRefusedError:
            raise VswitchError(
                f"cannot connect to {path}: connection refused (is vswitchd running?)"
            ) from None
        except PermissionError:
            raise VswitchError(
                f"cannot connect to {path}: permission denied (are you in the socket's group?)"
            ) from None
        except TimeoutError:
            raise VswitchError(
                f"cannot connect to {path}: timed out after {timeout_s:g} s"
            ) from None
        except OSError as e:
            raise VswitchError(f"cannot connect to {path}: {e.strerror or e}") from None
        try:
            sock.sendall(encode_request(Request(1, command, args)))
            line = _read_line(sock, deadline)
        except TimeoutError:
            raise VswitchError(
                f"no reply from vswitchd on {path} within {timeout_s:g} s"
            ) from None
        except OSError as e:
            raise VswitchError(
                f"lost connection to vswitchd on {path}: {e.strerror or e}"
            ) from None
    reply = decode_reply(line)
    if not reply.ok:
        raise VswitchError(reply.error)
    return reply.result


def _read_line(sock: socket.socket, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while True:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise VswitchError("vswitchd closed the connection without replying")
        chunks.append(chunk)
        if b"\n" in chunk:
            return b"".join(chunks).split(b"\n", 1)[0]


# Text formatting: pure functions, result -> text without trailing newline.


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    cells = [list(headers)] + [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def format_vlan_ranges(vlans: Iterable[int]) -> str:
    """[1, 2, 3, 5] -> "1-3,5"."""
    out: list[str] = []
    ordered = sorted(set(vlans))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def _port_vlans(port: dict[str, Any]) -> str:
    if port.get("mode") == "access":
        return str(port.get("vlan"))
    vlans = port.get("vlans")
    if vlans is None:
        text = "all"
    else:
        text = vlans if isinstance(vlans, str) else format_vlan_ranges(vlans)
    if port.get("native_vlan") is not None:
        text += f" (native {port['native_vlan']})"
    return text


def format_show(result: dict[str, Any]) -> str:
    sw = result["switch"]
    lines = [
        f"vswitchd: {sw['workers']} workers, {sw['mac_entries']}/{sw['mac_table_size']} MAC "
        f"entries, aging {sw['mac_aging_s']} s, config generation {sw['config_generation']}"
    ]
    headers = ["PORT", "TYPE", "IFNAME", "LINK", "MODE", "VLANS", "QUEUES", "RX_RING",
               "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "DROPS"]
    rows = []
    for p in result["ports"]:
        ifname = p["ifname"] if not p.get("netns") else f"{p['ifname']}@{p['netns']}"
        rows.append([p["name"], p["type"], ifname, p["link"], p["mode"], _port_vlans(p),
                     p["queues"], p.get("rx_ring"), p["rx_packets"], p["rx_bytes"],
                     p["tx_packets"], p["tx_bytes"], p["drops"]])
    lines += _table(headers, rows) if rows else ["no ports"]
    lines += [_ring_line(p) for p in result["ports"] if p.get("rx_ring_stats")]
    lines += [f'port {p["name"]}: attached_by = "{p["attached_by"]}"'
              for p in result["ports"] if p.get("attached_by")]
    lines += [_vhost_line(p) for p in result["ports"] if p.get("vhost")]
    return "\n".join(lines)


def _vhost_line(port: dict[str, Any]) -> str:
    """One line per vhost-user port: socket, connection, queues, features."""
    v = port["vhost"]
    feats = ",".join(v["features"]) or "-"
    proto = ",".join(v["protocol_features"]) or "-"
    broken = ", BROKEN (a queue was stopped: see vhost_ring_broken)" if v["broken"] else ""
    return (f"vhost-user {port['name']}: {v['socket']} ({v['socket_mode']}), {v['state']}, "
            f"queues {v['queues']}/{v['max_queues']}, features {feats}, "
            f"protocol {proto}{broken}")


# What an operator looks at first: is the ring carrying frames, is the
# kernel dropping them because it is full, are frames clamped.  A counter
# the daemon adds later is printed after these.
_RING_FIELDS = ("frames", "blocks", "kernel_packets", "kernel_drops", "kernel_freezes",
                "truncated", "vlan_restored")


def _ring_line(port: dict[str, Any]) -> str:
    """One line per port with an rx ring: its counters summed over its
    queues, named as in --json and the metrics."""
    stats = port["rx_ring_stats"]
    names = [k for k in _RING_FIELDS if k in stats] + sorted(set(stats) - set(_RING_FIELDS))
    fields = ", ".join(f"{k} {stats[k]}" for k in names)
    return f"rx ring {port['name']} ({port['rx_ring']}): {fields}"


def format_fdb(result: list[dict[str, Any]]) -> str:
    """Like `ovs-appctl fdb/show`, sorted by VLAN then MAC."""
    entries = sorted(result, key=lambda e: (e["vlan"], e["mac"]))
    width = max([5] + [len(str(e["port"])) for e in entries])
    remote = any(e.get("vtep") for e in entries)    # a VTEP column only when there are any
    lines = [f"{'port':>{width}}  VLAN  {'MAC':<17}  Age" + ("  VTEP" if remote else "")]
    for e in entries:
        age = "-" if e.get("age_s") is None else e["age_s"]
        line = f"{e['port']:>{width}}  {e['vlan']:>4}  {e['mac']:<17}  {age:>3}"
        if remote:
            line += f"  {e.get('vtep') or '-'}"
        lines.append(line)
    return "\n".join(lines)


def format_flush(result: dict[str, Any]) -> str:
    return f"flushed {int(result['flushed'])} entries"


def format_message(result: dict[str, Any]) -> str:
    return str(result["message"])


def _percent(ratio: float) -> str:
    return f"{float(ratio) * 100:.1f}%"


def format_workers(result: list[dict[str, Any]]) -> str:
    rows = []
    for w in result:
        queues = ", ".join(
            f"{q['port']}/{q['queue']} ({_percent(q['busy_ratio'])})" for q in w["rx_queues"]
        )
        rows.append([w["worker"], w.get("cpu"), _percent(w["busy_ratio"]), queues or "-"])
    return "\n".join(_table(["WORKER", "CPU", "BUSY", "RX_QUEUES"], rows))


def format_stats(result: dict[str, Any]) -> str:
    """Counters in the daemon's order (it defines them once, in a stable order).

    Values share one column across the whole listing so ports compare at a glance.
    """
    rows: list[tuple[str, Any]] = []  # (label, value); value None: a heading
    for port in result["ports"]:
        rows.append((f"port {port['name']}:", None))
        rows += [(f"  {k}", v) for k, v in port["counters"].items()]
        drops = port.get("drops") or {}
        rows.append(("  drops:" if drops else "  drops: none", None))
        rows += [(f"    {k}", v) for k, v in drops.items()]
    if "mac_table" in result:
        rows.append(("mac table:", None))
        rows += [(f"  {k}", v) for k, v in result["mac_table"].items()]
    width = max((len(label) for label, v in rows if v is not None), default=0)
    return "\n".join(label if v is None else f"{label:<{width}}  {v}" for label, v in rows)


def format_commands(result: list[dict[str, Any]]) -> str:
    rows = [[c["name"], c.get("usage", ""), c.get("help", "")] for c in result]
    return "\n".join(_table(["COMMAND", "USAGE", "HELP"], rows))


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "show": format_show,
    "fdb/show": format_fdb,
    "fdb/flush": format_flush,
    "port/add": format_message,
    "port/del": format_message,
    "port/set": format_message,
    "reload": format_message,
    "rebalance": format_message,
    "workers": format_workers,
    "stats": format_stats,
    "list-commands": format_commands,
    "acl/show": acl_format.format_acl_show,
    "acl/sessions": acl_format.format_acl_sessions,
    "acl/flush": acl_format.format_acl_flush,
    **observe_cli.FORMATTERS,
    "vxlan/show": vxlan_report.format_show,
    "evpn/show": vxlan_report.format_evpn,
}


def format_json(result: Any) -> str:
    return json.dumps(result, indent=2, sort_keys=True)


def format_result(command: str, result: Any) -> str:
    """Text for `result` of `command`; pretty JSON when its shape is not the expected one."""
    if result is None:
        return ""
    formatter = FORMATTERS.get(command)
    if formatter is None and isinstance(result, dict) and set(result) == {"message"}:
        formatter = format_message
    if formatter is not None:
        try:
            return formatter(result)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            pass
    return format_json(result)


# Command line.


def _vlan(text: str) -> int:
    try:
        vlan = int(text)
    except ValueError:
        vlan = 0
    if not 1 <= vlan <= 4094:
        raise argparse.ArgumentTypeError(f"VLAN must be an integer 1..4094, got {text!r}")
    return vlan


def _pair(text: str) -> str:
    key, sep, _ = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return text


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"timeout must be seconds >= 0 (0: wait forever), "
                                         f"got {text!r}")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Subcommand parsers get the same options with SUPPRESS defaults, so that
    # `--json` is honoured after the subcommand without resetting one given before it.
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--socket", metavar="PATH", default=default(None),
                        help=f"management socket (default: ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the result as JSON")
    parser.add_argument("--timeout", metavar="S", type=_timeout, default=default(DEFAULT_TIMEOUT_S),
                        help=f"seconds to wait for the daemon (default {DEFAULT_TIMEOUT_S:g})")


def _leaf(subparsers: Any, name: str, command: str, help: str,
          build: ArgsBuilder = lambda ns: {}) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help, description=help)
    _add_global_options(parser, top=False)
    parser.set_defaults(command=command, build_args=build)
    return parser


def _filters(ns: argparse.Namespace) -> dict[str, Any]:
    return {"vlan": ns.vlan, "port": ns.port}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vswitchctl",
                                     description="Control a running vswitchd.")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="cmd", metavar="COMMAND", required=True)

    _leaf(sub, "show", "show", "show the switch and its ports")

    fdb = sub.add_parser("fdb", help="MAC learning table").add_subparsers(
        dest="fdb_cmd", metavar="{show,flush}", required=True)
    for name, help in (("show", "list learned MAC addresses"),
                       ("flush", "forget learned MAC addresses")):
        p = _leaf(fdb, name, f"fdb/{name}", help, _filters)
        p.add_argument("--vlan", type=_vlan, metavar="N", help="only VLAN N (1..4094)")
        p.add_argument("--port", metavar="P", help="only port P")

    port = sub.add_parser("port", help="add, delete or change ports").add_subparsers(
        dest="port_cmd", metavar="{add,del,set}", required=True)
    p = _leaf(port, "add", "port/add", "add a port",
              lambda ns: {"name": ns.name, "pairs": ns.pairs})
    p.add_argument("name", metavar="NAME")
    p.add_argument("pairs", metavar="key=value", nargs="*", type=_pair)
    p = _leaf(port, "del", "port/del", "delete a port", lambda ns: {"name": ns.name})
    p.add_argument("name", metavar="NAME")
    p = _leaf(port, "set", "port/set", "change a port's settings",
              lambda ns: {"name": ns.name, "pairs": ns.pairs})
    p.add_argument("name", metavar="NAME")
    p.add_argument("pairs", metavar="key=value", nargs="+", type=_pair)

    _leaf(sub, "reload", "reload", "re-read the configuration file and apply changes")
    _leaf(sub, "workers", "workers", "show worker threads and their rx queues")
    p = _leaf(sub, "stats", "stats", "show port and MAC table counters",
              lambda ns: {"port": ns.port})
    p.add_argument("--port", metavar="P", help="only port P")
    _leaf(sub, "rebalance", "rebalance", "redistribute rx queues across workers")

    acl = sub.add_parser("acl", help="port ACLs and their sessions").add_subparsers(
        dest="acl_cmd", metavar="{show,sessions,flush}", required=True)
    for name, help in (("show", "list each port's rules in evaluation order, with counters"),
                       ("sessions", "list stateful sessions with their age and state"),
                       ("flush", "remove stateful sessions")):
        p = _leaf(acl, name, f"acl/{name}", help, lambda ns: {"port": ns.port})
        p.add_argument("--port", metavar="P", help="only port P")
    vxlan = sub.add_parser("vxlan", help="VXLAN ports").add_subparsers(
        dest="vxlan_cmd", metavar="{show}", required=True)
    _leaf(vxlan, "show", "vxlan/show", "show VTEPs, VNIs and per-VTEP counters")
    evpn = sub.add_parser("evpn", help="BGP EVPN").add_subparsers(
        dest="evpn_cmd", metavar="{show}", required=True)
    _leaf(evpn, "show", "evpn/show", "show BGP EVPN sessions and routes")
    _leaf(sub, "list-commands", "list-commands", "list the daemon's commands")
    observe_cli.add_parsers(sub, _leaf)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed
        return e.code if isinstance(e.code, int) else 2
    path = ns.socket or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET
    if ns.command == "capture":
        return observe_cli.run_capture(path, ns)
    try:
        result = call(path, ns.command, ns.build_args(ns), ns.timeout)
    except VswitchError as e:
        print(f"vswitchctl: {e}", file=sys.stderr)
        return 1
    text = format_json(result) if ns.json else format_result(ns.command, result)
    if text:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
