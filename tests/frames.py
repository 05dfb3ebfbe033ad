"""Frame factories shared by the tests: raw Ethernet/802.1Q bytes, no scapy
needed for the common cases (scapy builds the L3/L4 known-answer frames)."""

from __future__ import annotations

import struct


def mac(n: int) -> bytes:
    """A locally administered unicast MAC numbered ``n``: 02:00:00:00:xx:xx."""
    return bytes([0x02, 0, 0, 0, (n >> 8) & 0xFF, n & 0xFF])


BROADCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes, *, vid: int | None = None, pcp: int = 0,
        ethertype: int = 0x0800, payload: bytes = b"\x45" + b"\x00" * 45) -> bytes:
    """An Ethernet frame; tagged with 802.1Q VID ``vid`` when given."""
    tag = b"" if vid is None else struct.pack("!HH", 0x8100, (pcp << 13) | vid)
    return dst + src + tag + struct.pack("!H", ethertype) + payload


def parse_vlan(frame: bytes) -> int | None:
    """The 802.1Q VID of ``frame``, or None when untagged."""
    if frame[12:14] == b"\x81\x00":
        return struct.unpack("!H", frame[14:16])[0] & 0xFFF
    return None


def untag(frame: bytes) -> bytes:
    return frame[:12] + frame[16:] if parse_vlan(frame) is not None else frame
