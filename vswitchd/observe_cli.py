"""vswitchctl's `mirror show`, `trace` and `capture` (issue 11).

`capture` is the one streaming command: after its reply line the daemon
sends pcapng in length-prefixed chunks (see vswitchd/capture.py), which
this writes to FILE or stdout as they come, so
``vswitchctl capture vm1 -w - | tcpdump -n -r -`` shows frames live.
Ctrl-C or a closed pipe closes the connection, which ends the capture.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from vswitchd.errors import VswitchError
from vswitchd.protocol import Request, decode_reply, encode_request


def format_mirrors(result: list[dict[str, Any]]) -> str:
    if not result:
        return "no mirrors"
    lines = []
    for m in result:
        vlans = ",".join(map(str, m["select_vlans"])) or "all"
        state = "" if m["active"] else " (output port absent)"
        lines.append(f"mirror {m['name']}: output {m['output_port']}{state}, snaplen "
                     f"{m['snaplen'] or 'whole frame'}")
        lines.append(f"  select src: {', '.join(m['select_src_ports']) or '-'}  "
                     f"dst: {', '.join(m['select_dst_ports']) or '-'}  vlans: {vlans}")
        lines.append(f"  packets {m['packets']}  dropped {m['dropped']}")
    return "\n".join(lines)


def format_trace(result: dict[str, Any]) -> str:
    lines = [f"Frame: {result['length']} bytes on port {result['port']}"]
    width = max([len(s["stage"]) for s in result["stages"]] + [7])
    lines += [f"  {s['stage']:<{width}}  {s['detail']}" for s in result["stages"]]
    if result["verdict"] == "forwarded":
        verdict = f"forwarded to {', '.join(result['egress_ports'])}"
        left = [f"{d['port']} ({d['reason']})" for d in result["drops"]]
        if left:
            verdict += f"; dropped for {', '.join(left)}"
    else:
        verdict = f"dropped: {result['drop_reason'] or 'no destination'}"
    lines.append(f"Verdict: {verdict}")
    return "\n".join(lines)


FORMATTERS: dict[str, Callable[[Any], str]] = {
    "mirror/show": format_mirrors,
    "trace": format_trace,
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def add_parsers(sub: Any, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    """Adds the subcommands to vswitchctl's parser; ``leaf`` is cli._leaf."""
    mirror = sub.add_parser("mirror", help="port mirrors").add_subparsers(
        dest="mirror_cmd", metavar="{show}", required=True)
    leaf(mirror, "show", "mirror/show", "list mirrors with their counters")

    p = leaf(sub, "trace", "trace", "run a frame through the pipeline, changing nothing",
             lambda ns: {"port": ns.port, "flow": ns.flow, "hex": ns.hex})
    p.add_argument("port", metavar="PORT")
    p.add_argument("flow", metavar="FLOW", nargs="?",
                   help="Open vSwitch flow syntax, e.g. dl_dst=02:00:00:00:00:02,dl_vlan=10,ip")
    p.add_argument("--hex", metavar="FRAME", help="a whole Ethernet frame in hexadecimal")

    p = leaf(sub, "capture", "capture", "capture a port's frames as pcapng",
             lambda ns: {"port": ns.port, "direction": ns.direction, "filter": ns.filter,
                         "snaplen": ns.snaplen, "count": ns.count, "drops": ns.drops})
    p.add_argument("port", metavar="PORT")
    p.add_argument("--direction", choices=("rx", "tx", "both"), default="both")
    p.add_argument("--filter", metavar="EXPR", help="tcpdump filter expression")
    p.add_argument("--snaplen", metavar="N", type=_positive, default=0)
    p.add_argument("-c", dest="count", metavar="COUNT", type=_positive, default=0,
                   help="stop after COUNT frames")
    p.add_argument("--drops", action="store_true",
                   help="also the frames the switch drops on the port, with the reason in "
                        "the packet comment (a frame refused on arrival is there once, as "
                        "dropped)")
    p.add_argument("-w", dest="write", metavar="FILE", required=True,
                   help="pcapng output file, - for stdout")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise VswitchError("vswitchd closed the capture before its end")
        buf += chunk
    return bytes(buf)


def _recv_line(sock: socket.socket) -> bytes:
    buf = bytearray()
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise VswitchError("vswitchd closed the connection without replying")
        buf += chunk
    return bytes(buf)


def run_capture(path: str, ns: argparse.Namespace) -> int:
    """Runs `vswitchctl capture`; returns the exit status."""
    out: BinaryIO | None = None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(path)
        except OSError as e:
            raise VswitchError(f"cannot connect to {path}: {e.strerror or e} "
                               "(is vswitchd running?)") from None
        sock.sendall(encode_request(Request(1, "capture", ns.build_args(ns))))
        reply = decode_reply(_recv_line(sock))
        if not reply.ok:
            raise VswitchError(reply.error)
        out = sys.stdout.buffer if ns.write == "-" else open(ns.write, "wb")
        while True:
            (n,) = struct.unpack("!I", _recv_exact(sock, 4))
            if not n:
                totals = json.loads(_recv_line(sock))
                print(f"vswitchctl: {totals['frames']} frames captured, {totals['dropped']} "
                      f"dropped (capture buffer full), {totals['filtered']} filtered out",
                      file=sys.stderr)
                return 0
            out.write(_recv_exact(sock, n))
            out.flush()
    except VswitchError as e:
        print(f"vswitchctl: {e}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, BrokenPipeError):
        return 0
    except OSError as e:
        print(f"vswitchctl: capture: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        sock.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
