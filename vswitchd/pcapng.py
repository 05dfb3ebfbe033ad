"""pcapng blocks, as tcpdump -r and Wireshark read them (RFC draft
draft-ietf-opsawg-pcapng): a section header, one interface description per
captured port (nanosecond timestamps), enhanced packet blocks with the
direction in epb_flags and an optional comment, interface statistics at the
end.  Little-endian, pure functions returning bytes."""

from __future__ import annotations

import struct

SHB, IDB, EPB, ISB = 0x0A0D0D0A, 0x00000001, 0x00000006, 0x00000005
LINKTYPE_ETHERNET = 1
OPT_END, OPT_COMMENT = 0, 1
SHB_USERAPPL = 4
IF_NAME, IF_DESCRIPTION, IF_TSRESOL = 2, 3, 9
EPB_FLAGS = 2
ISB_STARTTIME, ISB_ENDTIME, ISB_IFRECV, ISB_IFDROP, ISB_FILTERACCEPT = 2, 3, 4, 5, 6
INBOUND, OUTBOUND = 1, 2            # epb_flags bits 0-1


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def _options(opts: list[tuple[int, bytes]]) -> bytes:
    if not opts:
        return b""
    out = b"".join(struct.pack("<HH", code, len(v)) + _pad4(v) for code, v in opts)
    return out + struct.pack("<HH", OPT_END, 0)


def _block(kind: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", kind, total) + body + struct.pack("<I", total)


def section_header(app: str = "vswitchd") -> bytes:
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    return _block(SHB, body + _options([(SHB_USERAPPL, app.encode())]))


def interface_description(name: str, snaplen: int, description: str = "") -> bytes:
    opts = [(IF_NAME, name.encode()), (IF_TSRESOL, b"\x09")]
    if description:
        opts.append((IF_DESCRIPTION, description.encode()))
    body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen)
    return _block(IDB, body + _options(opts))


def enhanced_packet(if_id: int, ts_ns: int, data: bytes, wire_len: int, direction: int = 0,
                    comment: str | None = None) -> bytes:
    opts: list[tuple[int, bytes]] = []
    if direction:
        opts.append((EPB_FLAGS, struct.pack("<I", direction)))
    if comment:
        opts.append((OPT_COMMENT, comment.encode()))
    body = struct.pack("<IIIII", if_id, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(data), wire_len)
    return _block(EPB, body + _pad4(data) + _options(opts))


def interface_statistics(if_id: int, ts_ns: int, received: int, dropped: int,
                         accepted: int) -> bytes:
    opts = [(ISB_IFRECV, struct.pack("<Q", received)), (ISB_IFDROP, struct.pack("<Q", dropped)),
            (ISB_FILTERACCEPT, struct.pack("<Q", accepted))]
    body = struct.pack("<III", if_id, ts_ns >> 32, ts_ns & 0xFFFFFFFF)
    return _block(ISB, body + _options(opts))
