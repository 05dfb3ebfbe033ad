"""The C fast path's observation API: mirrors, captures and trace
(csrc/vs_mirror.h, vs_capture.h, vs_trace.h).

The second half of ``vswitchd.fastpath`` (kept apart so the port and
switch bindings stay one screenful each): like it, the only place these C
functions are called, checking arguments, owning the C objects and turning
return codes into exceptions.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vswitchd._fastpath import ffi, lib
from vswitchd.fastpath import COUNTER_NAMES, MAX_PORTS, FastpathError, Switch, _check

MAX_MIRRORS: int = lib.VS_MAX_MIRRORS
MAX_CAPTURES: int = lib.VS_MAX_CAPTURES
CAP_RX: int = lib.VS_CAP_RX
CAP_TX: int = lib.VS_CAP_TX
CAP_DROPS: int = lib.VS_CAP_DROPS
TRACE_STAGES: tuple[str, ...] = tuple(
    ffi.string(lib.vs_trace_stage_name(i)).decode() for i in range(lib.VS_TRACE_N_STAGES))

_DIRECTIONS = {CAP_RX: "rx", CAP_TX: "tx", CAP_DROPS: "drop"}
_RECORD = struct.Struct("=IIIHBxiIQ")       # struct vs_cap_record
assert _RECORD.size == ffi.sizeof("struct vs_cap_record")


def _bits(ids: Iterable[int], words: int, what: str) -> list[int]:
    out = [0] * words
    for i in ids:
        if not 0 <= i < words * 64:
            raise FastpathError(f"{what}: {i} is out of range")
        out[i >> 6] |= 1 << (i & 63)
    return out


@dataclass(frozen=True)
class MirrorParams:
    """One mirror as the fast path sees it (struct vs_mirror_params)."""

    id: int                              # slot, 0 .. MAX_MIRRORS - 1
    output_port: int
    src_ports: tuple[int, ...] = ()
    dst_ports: tuple[int, ...] = ()
    vlans: tuple[int, ...] = ()          # () = every VLAN
    snaplen: int = 0                     # 0 = whole frames

    def to_c(self) -> object:
        m = ffi.new("struct vs_mirror_params *")
        if not 0 <= self.id < MAX_MIRRORS:
            raise FastpathError(f"mirror slot {self.id} is not in 0-{MAX_MIRRORS - 1}")
        m.id = self.id
        m.output_port = self.output_port
        m.snaplen = self.snaplen
        m.all_vlans = int(not self.vlans)
        for i, w in enumerate(_bits(self.vlans, 64, "mirror VLAN")):
            m.vlans[i] = w
        words = MAX_PORTS // 64
        for i, w in enumerate(_bits(self.src_ports, words, "mirror source port")):
            m.src_ports[i] = w
        for i, w in enumerate(_bits(self.dst_ports, words, "mirror destination port")):
            m.dst_ports[i] = w
        return m


@dataclass(frozen=True)
class MirrorStats:
    packets: int = 0
    dropped: int = 0


def mirror_stats(switch: Switch, slot: int) -> MirrorStats:
    s = ffi.new("struct vs_mirror_stats *")
    _check(lib.vs_switch_mirror_stats(switch._sw, slot, s), f"mirror slot {slot}")
    return MirrorStats(int(s.packets), int(s.dropped))


# Captures.

BpfInsn = tuple[int, int, int, int]     # (code, jt, jf, k), as struct bpf_insn


@dataclass(frozen=True)
class CapturedFrame:
    port_id: int
    direction: str                       # "rx", "tx" or "drop"
    ts_ns: int                           # CLOCK_REALTIME
    wire_len: int
    data: bytes                          # the first caplen bytes
    reason: str | None = None            # drops: the drop reason


@dataclass(frozen=True)
class CaptureStats:
    captured: int = 0
    dropped: int = 0
    filtered: int = 0


def _c_prog(prog: Sequence[BpfInsn]) -> object:
    c = ffi.new("struct vs_bpf_insn[]", max(1, len(prog)))
    for i, (code, jt, jf, k) in enumerate(prog):
        c[i].code, c[i].jt, c[i].jf, c[i].k = code, jt, jf, k
    return c


def bpf_run(prog: Sequence[BpfInsn], frame: bytes) -> int:
    """Runs classic BPF ``prog`` on ``frame`` with the workers' interpreter:
    0 refuses, else the bytes to keep.  Raises on a program it refuses."""
    c = _c_prog(prog)
    if lib.vs_bpf_check(c, len(prog)):
        raise FastpathError("invalid BPF program")
    return int(lib.vs_bpf_run(c, len(prog), frame, len(frame)))


class Capture:
    """A capture of one port: rings the workers fill, drained by ``read()``.

    Publish it with ``Switch.publish(..., captures=[...])``; ``free()`` it
    only once a config without it has been published.
    """

    _READ_BYTES = 1 << 20
    _READS_PER_CALL = 4

    def __init__(self, switch: Switch, port_id: int, dirs: int, snaplen: int = 0,
                 prog: Sequence[BpfInsn] = ()) -> None:
        ptr = lib.vs_capture_new(switch._sw, port_id, dirs, snaplen, _c_prog(prog), len(prog))
        if ptr == ffi.NULL:
            raise FastpathError("cannot create the capture (bad filter or out of memory)")
        self._c: object | None = ptr
        self.port_id = port_id
        self._buf = ffi.new("uint8_t[]", self._READ_BYTES)

    @property
    def c_capture(self) -> object:
        if self._c is None:
            raise FastpathError("capture used after free")
        return self._c

    def read(self) -> list[CapturedFrame]:
        """Takes the frames the rings hold, up to a few MiB (a busy port
        must not keep the caller here forever).  One reader at a time."""
        out: list[CapturedFrame] = []
        for _ in range(self._READS_PER_CALL):
            n = int(lib.vs_capture_read(self.c_capture, self._buf, self._READ_BYTES))
            if not n:
                break
            raw = ffi.buffer(self._buf, n)[:]
            off = 0
            while off < n:
                rec_len, caplen, wire, port, d, reason, _, ts = _RECORD.unpack_from(raw, off)
                data = raw[off + _RECORD.size: off + _RECORD.size + caplen]
                out.append(CapturedFrame(port, _DIRECTIONS.get(d, "rx"), ts, wire, data,
                                         COUNTER_NAMES[reason] if reason >= 0 else None))
                off += rec_len
        return out

    def stats(self) -> CaptureStats:
        s = ffi.new("struct vs_capture_stats *")
        lib.vs_capture_get_stats(self.c_capture, s)
        return CaptureStats(int(s.captured), int(s.dropped), int(s.filtered))

    def free(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            lib.vs_capture_free(c)


# Trace.

@dataclass(frozen=True)
class TraceResult:
    """What running one frame through the pipeline in record-only mode found."""

    notes: tuple[tuple[str, str], ...]           # (stage, what was decided), in order
    egress: tuple[tuple[int, int], ...]          # (port id, frames), in send order
    drop_reason: str | None                      # dropped on ingress: why
    drops: tuple[tuple[int, str], ...]           # every (port id, drop reason) hit


def trace(switch: Switch, port_id: int, frame: bytes, vnet: bytes = b"",
          now_s: int = 0) -> TraceResult:
    """Runs ``frame`` through the pipeline as received on port ``port_id``,
    changing nothing.  Control thread only, like ``publish()``."""
    res = ffi.new("struct vs_trace_result *")
    rc = lib.vs_switch_trace(switch._sw, port_id, frame, len(frame), vnet or ffi.NULL,
                             len(vnet), now_s, res)
    _check(rc, f"trace on port {port_id}")
    text = ffi.string(res.text, res.text_len).decode(errors="replace")
    notes = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if "\t" in line)
    return TraceResult(
        notes=notes,  # type: ignore[arg-type]
        egress=tuple((int(res.egress[i]), int(res.egress_frames[i]))
                     for i in range(res.n_egress)),
        drop_reason=COUNTER_NAMES[res.drop_reason] if res.drop_reason >= 0 else None,
        drops=tuple((int(res.drop_port[i]), COUNTER_NAMES[res.drop_counter[i]])
                    for i in range(res.n_drops)))
