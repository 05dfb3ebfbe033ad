"""`vswitchctl capture`: the daemon's side of a live capture.

A capture takes the management connection over (a streaming command,
vswitchd.control.StreamHandler): the request is checked (port, direction,
filter compiled by libpcap, snaplen, count), a C capture is added to the
published snapshot, and the reply line is followed by the pcapng stream in
chunks, each a 4-byte big-endian length and that many bytes; a zero length
ends the stream, followed by one JSON line of totals:

    {"frames": N, "captured": N, "dropped": N, "filtered": N}

Nothing here blocks the event loop or a worker: the rings are drained every
POLL_S while the client's socket buffer has room; a client that stops
reading lets the rings fill, and the workers drop (and count) copies.  A
client that goes away (EOF, Ctrl-C, a closed pipe) ends the capture, as
does reaching ``count`` frames.  The capture leaves the snapshot before its
rings are freed.  What a stalled client has not read by the end (or by
shutdown) is thrown away with the connection, so it never holds the
daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

from vswitchd import pcapng
from vswitchd.errors import VswitchError
from vswitchd.fastpath_observe import (
    CAP_DROPS,
    CAP_RX,
    CAP_TX,
    MAX_CAPTURES,
    Capture,
    CapturedFrame,
)
from vswitchd.pcapfilter import compile_filter
from vswitchd.protocol import encode_ok
from vswitchd.switch import VSwitch

log = logging.getLogger(__name__)

POLL_S = 0.02
HIGH_WATER = 1 << 20            # bytes queued to a client before we stop draining
END_DRAIN_S = 5.0               # how long the end of a capture waits for its client
DEFAULT_SNAPLEN = 262144
DIRECTIONS = {"rx": CAP_RX, "tx": CAP_TX, "both": CAP_RX | CAP_TX}
_FLAGS = {"rx": pcapng.INBOUND, "tx": pcapng.OUTBOUND, "drop": pcapng.INBOUND}


@dataclass(frozen=True)
class CaptureRequest:
    port: str
    direction: str = "both"
    filter: str | None = None
    snaplen: int = 0
    count: int = 0
    drops: bool = False

    @classmethod
    def from_args(cls, a: dict[str, Any]) -> CaptureRequest:
        port = a.get("port")
        if not isinstance(port, str) or not port:
            raise VswitchError("port: a port name is required")
        direction = a.get("direction", "both")
        if direction not in DIRECTIONS:
            raise VswitchError(f"--direction: {direction!r} is not one of rx, tx, both")
        filt = a.get("filter")
        if filt is not None and not isinstance(filt, str):
            raise VswitchError("--filter: a tcpdump filter expression is required")
        out = []
        for key, hi in (("snaplen", 65535), ("count", 1 << 40)):
            v = a.get(key, 0) or 0
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= hi:
                raise VswitchError(f"--{key}: {v!r} is not an integer in 0-{hi}")
            out.append(v)
        return cls(port, direction, filt or None, out[0], out[1], bool(a.get("drops")))


def _frame_block(f: CapturedFrame) -> bytes:
    comment = f"dropped: {f.reason}" if f.direction == "drop" else None
    return pcapng.enhanced_packet(0, f.ts_ns, f.data, f.wire_len, _FLAGS[f.direction], comment)


def _chunk(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


async def serve(switch: VSwitch, request_id: Any, args: dict[str, Any],
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The `capture` streaming command (see the module docstring)."""
    req = CaptureRequest.from_args(args)
    port = switch.port_by_name(req.port)
    assert port is not None
    if len(switch.captures) >= MAX_CAPTURES:
        raise VswitchError(f"capture: at most {MAX_CAPTURES} captures at once")
    snaplen = req.snaplen or DEFAULT_SNAPLEN
    prog = compile_filter(req.filter, snaplen) if req.filter else []
    dirs = DIRECTIONS[req.direction] | (CAP_DROPS if req.drops else 0)
    cap = Capture(switch.fast, port.id, dirs, req.snaplen, prog)
    switch.add_capture(cap)
    log.info("capture on %s started (direction %s, filter %r, drops %s)", req.port,
             req.direction, req.filter, req.drops)
    frames = 0
    gone: asyncio.Future[bytes] = asyncio.ensure_future(reader.read(1))
    try:
        writer.write(encode_ok(request_id, {"port": req.port, "direction": req.direction,
                                            "filter": req.filter, "snaplen": snaplen}))
        writer.write(_chunk(pcapng.section_header()
                            + pcapng.interface_description(req.port, snaplen,
                                                           f"vswitchd port {req.port}")))
        while not gone.done() and not writer.is_closing():
            if switch.ports.get(req.port) is not port:
                log.info("capture on %s: the port is gone", req.port)
                break
            if not req.count or frames < req.count:
                if writer.transport.get_write_buffer_size() < HIGH_WATER:
                    got = cap.read()
                    if req.count:
                        got = got[:req.count - frames]
                    if got:
                        writer.write(_chunk(b"".join(_frame_block(f) for f in got)))
                        frames += len(got)
            if req.count and frames >= req.count:
                break
            await asyncio.wait([gone], timeout=POLL_S)
    except asyncio.CancelledError:
        # Shutting down: what a stalled client has not read must not hold
        # the connection's close (and the daemon's exit) forever.
        writer.transport.abort()
        raise
    finally:
        switch.remove_capture(cap)
        stats = cap.stats()
        cap.free()
        gone.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await gone
        log.info("capture on %s ended: %d frames written, %d dropped (buffer full), "
                 "%d filtered out", req.port, frames, stats.dropped, stats.filtered)
    totals = {"frames": frames, "captured": stats.captured, "dropped": stats.dropped,
              "filtered": stats.filtered}
    try:
        now = time.time_ns()
        writer.write(_chunk(pcapng.interface_statistics(0, now, stats.captured + stats.dropped,
                                                        stats.dropped, stats.captured)))
        writer.write(_chunk(b"") + json.dumps(totals).encode() + b"\n")
        await asyncio.wait_for(writer.drain(), END_DRAIN_S)
    except (ConnectionError, TimeoutError, OSError):
        # A client that does not read its end in time (or is gone) loses it.
        writer.transport.abort()
