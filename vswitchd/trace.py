"""`vswitchctl trace PORT FLOW | --hex FRAME`: what the switch would do.

FLOW uses Open vSwitch's field names (``ovs-ofctl``'s flow syntax), e.g.
``dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,dl_vlan=10,ip,
nw_src=10.0.0.1,nw_dst=10.0.0.2,tcp,tp_dst=22``; fields left out get
defaults that make a valid frame.  The frame is built here, then run
through the C pipeline in record-only mode (csrc/vs_trace.h): this module
only builds frames and words the result.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vswitchd.errors import VswitchError
from vswitchd.fastpath import Switch, mac_to_bytes
from vswitchd.fastpath_observe import TraceResult, trace

PROTOCOLS: dict[str, tuple[int, int | None]] = {   # shorthand -> (dl_type, nw_proto)
    "ip": (0x0800, None), "icmp": (0x0800, 1), "tcp": (0x0800, 6), "udp": (0x0800, 17),
    "arp": (0x0806, None),
    "ipv6": (0x86DD, None), "icmp6": (0x86DD, 58), "tcp6": (0x86DD, 6), "udp6": (0x86DD, 17),
}
FIELDS = ("dl_src", "dl_dst", "dl_vlan", "dl_vlan_pcp", "dl_type", "nw_src", "nw_dst",
          "nw_proto", "nw_tos", "nw_ttl", "ipv6_src", "ipv6_dst", "tp_src", "tp_dst",
          "icmp_type", "icmp_code", "arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha")
DEFAULTS: dict[str, str] = {
    "dl_src": "02:00:00:00:00:01", "dl_dst": "02:00:00:00:00:02", "nw_src": "10.0.0.1",
    "nw_dst": "10.0.0.2", "ipv6_src": "fd00::1", "ipv6_dst": "fd00::2", "nw_ttl": "64",
    "tp_src": "40000", "tp_dst": "80", "icmp_type": "8", "icmp_code": "0", "arp_op": "1",
}


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def parse_flow(text: str) -> dict[str, str]:
    """FLOW -> {field: value}; a protocol shorthand sets dl_type/nw_proto."""
    fields: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            if key not in PROTOCOLS:
                raise VswitchError(f"flow: unknown field or protocol {key!r} (protocols: "
                                   f"{', '.join(PROTOCOLS)}; fields: {', '.join(FIELDS)})")
            dl_type, proto = PROTOCOLS[key]
            fields["dl_type"] = str(dl_type)
            if proto is not None:
                fields["nw_proto"] = str(proto)
            continue
        if key not in FIELDS:
            raise VswitchError(f"flow: unknown field {key!r} (fields: {', '.join(FIELDS)})")
        fields[key] = value.strip()
    return fields


def _int(fields: Mapping[str, str], key: str, lo: int, hi: int) -> int:
    raw = fields.get(key, DEFAULTS.get(key, "0"))
    try:
        value = int(raw, 0)
    except ValueError:
        raise VswitchError(f"flow: {key}={raw}: not an integer") from None
    if not lo <= value <= hi:
        raise VswitchError(f"flow: {key}={raw}: not in {lo}-{hi}")
    return value


def _addr(fields: Mapping[str, str], key: str, version: int) -> bytes:
    raw = fields.get(key, DEFAULTS.get(key, ""))
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise VswitchError(f"flow: {key}={raw}: not an IPv{version} address") from None
    if ip.version != version:
        raise VswitchError(f"flow: {key}={raw}: not an IPv{version} address")
    return ip.packed


def _mac(fields: Mapping[str, str], key: str, default: str) -> bytes:
    raw = fields.get(key, default)
    try:
        return mac_to_bytes(raw)
    except ValueError:
        raise VswitchError(f"flow: {key}={raw}: not a MAC address") from None


def _l4(fields: Mapping[str, str], proto: int, pseudo: bytes) -> bytes:
    if proto in (1, 58):
        hdr = struct.pack("!BBHI", _int(fields, "icmp_type", 0, 255),
                          _int(fields, "icmp_code", 0, 255), 0, 0x00010001) + b"\0" * 16
        data = (pseudo + hdr) if proto == 58 else hdr
        return hdr[:2] + struct.pack("!H", _csum(data)) + hdr[4:]
    if proto == 6:
        hdr = struct.pack("!HHIIBBHHH", _int(fields, "tp_src", 0, 65535),
                          _int(fields, "tp_dst", 0, 65535), 1, 0, 5 << 4, 0x02, 64240, 0, 0)
        return hdr[:16] + struct.pack("!H", _csum(pseudo + hdr)) + hdr[18:]
    if proto == 17:
        body = b"\0" * 8
        hdr = struct.pack("!HHHH", _int(fields, "tp_src", 0, 65535),
                          _int(fields, "tp_dst", 0, 65535), 8 + len(body), 0)
        return hdr[:6] + struct.pack("!H", _csum(pseudo + hdr + body) or 0xFFFF) + body
    return b"\0" * 8


def build_frame(fields: Mapping[str, str]) -> bytes:
    """The Ethernet frame FLOW describes, padded to 60 bytes."""
    dst = _mac(fields, "dl_dst", DEFAULTS["dl_dst"])
    src = _mac(fields, "dl_src", DEFAULTS["dl_src"])
    tag = b""
    if "dl_vlan" in fields:
        vid = _int(fields, "dl_vlan", 0, 4095)
        tag = struct.pack("!HH", 0x8100, (_int(fields, "dl_vlan_pcp", 0, 7) << 13) | vid)
    dl_type = _int(fields, "dl_type", 0, 0xFFFF) if "dl_type" in fields else 0x0800
    proto = _int(fields, "nw_proto", 0, 255)
    if dl_type == 0x0800:
        s, d = _addr(fields, "nw_src", 4), _addr(fields, "nw_dst", 4)
        l4 = _l4(fields, proto, s + d + struct.pack("!BBH", 0, proto, 0))
        if proto not in (1, 6, 17):
            l4 = b""
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, _int(fields, "nw_tos", 0, 255), 20 + len(l4),
                         1, 0x4000, _int(fields, "nw_ttl", 0, 255), proto, 0, s, d)
        if proto in (6, 17):   # the pseudo-header's length was unknown above
            l4 = _l4(fields, proto, s + d + struct.pack("!BBH", 0, proto, len(l4)))
        payload = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:] + l4
    elif dl_type == 0x86DD:
        s, d = _addr(fields, "ipv6_src", 6), _addr(fields, "ipv6_dst", 6)
        probe = _l4(fields, proto, b"")
        l4 = _l4(fields, proto, s + d + struct.pack("!IxxxB", len(probe), proto))
        if proto not in (6, 17, 58):
            l4 = b""
        payload = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto or 59,
                              _int(fields, "nw_ttl", 0, 255), s, d) + l4
    elif dl_type == 0x0806:
        spa = _addr(dict(fields, nw_src=fields.get("arp_spa", DEFAULTS["nw_src"])), "nw_src", 4)
        tpa = _addr(dict(fields, nw_dst=fields.get("arp_tpa", DEFAULTS["nw_dst"])), "nw_dst", 4)
        sha = _mac(fields, "arp_sha", fields.get("dl_src", DEFAULTS["dl_src"]))
        tha = _mac(fields, "arp_tha", "00:00:00:00:00:00")
        payload = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, _int(fields, "arp_op", 0, 65535),
                              sha, spa, tha, tpa)
    else:
        payload = b""
    frame = dst + src + tag + struct.pack("!H", dl_type) + payload
    return frame + b"\0" * max(0, 60 - len(frame))


def parse_hex(text: str) -> bytes:
    clean = re.sub(r"[\s:.]", "", text)
    try:
        frame = bytes.fromhex(clean)
    except ValueError:
        raise VswitchError("--hex: not a hexadecimal frame") from None
    if not 14 <= len(frame) <= 65535:
        raise VswitchError(f"--hex: {len(frame)} bytes; a frame has 14-65535")
    return frame


def run(fast: Switch, port_id: int, names: Mapping[int, str], frame: bytes,
        mirror_names: Mapping[int, str] | None = None, vnet: bytes = b"",
        rules: Mapping[int, Sequence[str]] | None = None) -> dict[str, Any]:
    """Traces ``frame`` (virtio-net header ``vnet``, none by default) on port
    ``port_id``; the `trace` command's reply.  ``names``, ``mirror_names``
    and ``rules`` (port id -> its ACL rules as "set.rule", in evaluation
    order) turn the C ids in the notes into names."""
    t: TraceResult = trace(fast, port_id, frame, vnet, now_s=int(time.monotonic()))
    mirrors = mirror_names or {}
    acl_rules = rules or {}

    def rule_name(m: re.Match[str]) -> str:
        order = acl_rules.get(int(m.group(1)), ())
        i = int(m.group(3))
        return f"port {m.group(1)} {m.group(2)}: rule " + (order[i] if i < len(order)
                                                           else f"#{i}")

    def named(text: str) -> str:
        text = re.sub(r"\bport (\d+) (in|out): rule #(\d+)", rule_name, text)
        text = re.sub(r"\bport (\d+)\b",
                      lambda m: f"port {names.get(int(m.group(1)), m.group(1))}", text)
        return re.sub(r"\bmirror (\d+)\b",
                      lambda m: f"mirror {mirrors.get(int(m.group(1)), m.group(1))}", text)

    egress = [names.get(p, str(p)) for p, _ in t.egress]
    stages = [{"stage": s, "detail": named(d)} for s, d in t.notes]
    stages += [{"stage": "offload", "detail": f"port {names.get(p, p)}: segmented into {n} "
                                              "frames"} for p, n in t.egress if n > 1]
    drops = [{"port": names.get(p, str(p)), "reason": r} for p, r in t.drops]
    drop_reason = t.drop_reason or (drops[0]["reason"] if drops and not egress else None)
    return {
        "port": names.get(port_id, str(port_id)), "frame": frame.hex(), "length": len(frame),
        "stages": stages,
        "egress_ports": egress,
        "egress_frames": {names.get(p, str(p)): n for p, n in t.egress},
        "drops": drops,
        "verdict": "forwarded" if egress else "dropped",
        "drop_reason": drop_reason,
    }

