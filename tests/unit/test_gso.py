"""virtio-net header checks and GSO segmentation (csrc/vs_gso.c).

Super-frames are built with scapy the way a Linux guest hands them over
(NEEDS_CSUM, the folded pseudo-header sum in the L4 checksum field), cut by
the C segmenter, and every segment is checked against scapy's own idea of
its lengths and checksums.
"""

import struct
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw
from vswitchd._fastpath import ffi, lib

from tests.unit.counter_enum import reason

NEEDS_CSUM = lib.VS_VNET_F_NEEDS_CSUM
DATA_VALID = lib.VS_VNET_F_DATA_VALID
TCPV4, TCPV6 = lib.VS_VNET_GSO_TCPV4, lib.VS_VNET_GSO_TCPV6
UDP_L4, ECN = lib.VS_VNET_GSO_UDP_L4, lib.VS_VNET_GSO_ECN

FIN, PSH, CWR = 0x01, 0x08, 0x80



RUNT = reason("DROP_RUNT")
OVERSIZE = reason("DROP_OVERSIZE")
BAD = reason("DROP_BAD_VNET_HDR")
UNSUPPORTED = reason("DROP_UNSUPPORTED_GSO")


def rfc1071(data: bytes, init: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    s = init + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def vnet(**fields):
    return ffi.new("struct vs_vnet_hdr *", fields)


@dataclass
class Super:
    """A super-frame as a guest sends it."""

    raw: bytes
    vh: "ffi.CData"
    l3: int  # offset of the IP header
    l4: int  # offset of the TCP/UDP header
    hdr_len: int  # all headers
    payload: bytes


ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def make_super(l3pkt, payload: bytes, mss: int, *, l2=ETH, gso_type=None, ecn=False) -> Super:
    """'l2' / 'l3pkt' / 'payload' with the L4 checksum left partial."""
    pkt = l2 / l3pkt / Raw(payload)
    raw = bytearray(bytes(pkt))
    is_udp = UDP in pkt
    l4cls = UDP if is_udp else TCP
    l4 = len(raw) - len(bytes(pkt[l4cls]))
    hdr_len = len(raw) - len(payload)
    l4_len = len(raw) - l4
    proto = 17 if is_udp else 6
    if IP in pkt:
        l3 = len(raw) - len(bytes(pkt[IP]))
        pseudo = rfc1071(bytes(raw[l3 + 12 : l3 + 20]) + struct.pack("!HH", proto, l4_len))
        default_type = TCPV4
    else:
        l3 = len(raw) - len(bytes(pkt[IPv6]))
        pseudo = rfc1071(bytes(raw[l3 + 8 : l3 + 40]) + struct.pack("!IxxxB", l4_len, proto))
        default_type = TCPV6
    off = 6 if is_udp else 16
    struct.pack_into("!H", raw, l4 + off, pseudo)
    if gso_type is None:
        gso_type = UDP_L4 if is_udp else default_type
    vh = vnet(
        flags=NEEDS_CSUM,
        gso_type=gso_type | (ECN if ecn else 0),
        hdr_len=hdr_len,
        gso_size=mss,
        csum_start=l4,
        csum_offset=off,
    )
    return Super(bytes(raw), vh, l3, l4, hdr_len, payload)


def segment(frame: bytes, vh, max_segs: int = 2048):
    """Runs vs_gso_segment_to_buffer(): (return code, [segments])."""
    out_len = max(len(frame) * 2 + 64 * max_segs, 1)
    out = ffi.new("uint8_t[]", out_len)
    lens = ffi.new("uint32_t[]", max_segs)
    src = ffi.from_buffer("uint8_t[]", frame) if frame else ffi.NULL
    n = lib.vs_gso_segment_to_buffer(src, len(frame), vh, out, out_len, lens, max_segs)
    segs, pos = [], 0
    for i in range(max(n, 0)):
        segs.append(bytes(ffi.buffer(out + pos, lens[i])))
        pos += lens[i]
    return n, segs


def rebuilt(seg: bytes) -> Ether:
    """'seg' with scapy recomputing every length and checksum."""
    p = Ether(seg)
    for layer in (IP, TCP, UDP):
        if layer in p:
            del p[layer].chksum
            if layer in (IP, UDP):
                del p[layer].len
    if IPv6 in p:
        del p[IPv6].plen
    return Ether(bytes(p))


def check_segments(sf: Super, segs: list[bytes]) -> None:
    """Everything a receiver could complain about, segment by segment."""
    orig = Ether(sf.raw)
    mss = sf.vh.gso_size
    is_udp = UDP in orig
    expect_n = max(1, -(-len(sf.payload) // mss))
    assert len(segs) == expect_n
    joined = b""
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        p, ref = Ether(seg), rebuilt(seg)
        # Headers: the same length, byte for byte the same L2.
        assert seg[: sf.l3] == sf.raw[: sf.l3]
        chunk = seg[sf.hdr_len :]
        assert len(chunk) == (len(sf.payload) - i * mss if last else mss)
        joined += chunk
        if IP in orig:
            assert p[IP].len == len(seg) - sf.l3 == ref[IP].len
            assert p[IP].id == (orig[IP].id + i) & 0xFFFF
            assert p[IP].chksum == ref[IP].chksum
            assert p[IP].options == orig[IP].options
            assert p[IP].flags == orig[IP].flags and p[IP].ttl == orig[IP].ttl
        else:
            assert p[IPv6].plen == len(seg) - sf.l3 - 40 == ref[IPv6].plen
            assert p[IPv6].src == orig[IPv6].src and p[IPv6].dst == orig[IPv6].dst
        # Independent of scapy: the L4 checksum covers pseudo-header + L4.
        l4_len = len(seg) - sf.l4
        proto = 17 if is_udp else 6
        if IP in orig:
            pseudo = seg[sf.l3 + 12 : sf.l3 + 20] + struct.pack("!HH", proto, l4_len)
        else:
            pseudo = seg[sf.l3 + 8 : sf.l3 + 40] + struct.pack("!IxxxB", l4_len, proto)
        assert rfc1071(pseudo + seg[sf.l4 :]) == 0xFFFF
        if is_udp:
            assert p[UDP].len == l4_len == ref[UDP].len
            assert p[UDP].chksum == ref[UDP].chksum != 0
            assert (p[UDP].sport, p[UDP].dport) == (orig[UDP].sport, orig[UDP].dport)
        else:
            t, o = p[TCP], orig[TCP]
            assert t.chksum == ref[TCP].chksum
            assert t.seq == (o.seq + i * mss) & 0xFFFFFFFF
            assert (t.ack, t.window, t.options, t.dataofs) == (
                o.ack,
                o.window,
                o.options,
                o.dataofs,
            )
            flags = int(o.flags)
            if not last:
                flags &= ~(FIN | PSH)
            if i:
                flags &= ~CWR
            assert int(t.flags) == flags
    assert joined == sf.payload


def pattern(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


V4 = dict(src="10.0.0.1", dst="10.0.0.2", id=0xFFFE, flags="DF", ttl=63)
V6 = dict(src="2001:db8::1", dst="2001:db8::2", hlim=7)
TCP_OPTS = [("NOP", None), ("NOP", None), ("Timestamp", (12345, 67890))]


# Segmentation: known answers.


@pytest.mark.parametrize(
    "l2",
    [ETH, ETH / Dot1Q(vlan=42, prio=5), ETH / Dot1AD(vlan=7) / Dot1Q(vlan=42)],
    ids=["untagged", "dot1q", "qinq"],
)
@pytest.mark.parametrize(
    "l3",
    [IP(**V4), IP(**V4, options=b"\x01\x01\x01\x00"), IPv6(**V6)],
    ids=["ipv4", "ipv4-options", "ipv6"],
)
@pytest.mark.parametrize(
    "paylen, mss",
    [(4000, 1448), (4344, 1448), (1, 1448), (1448, 1448), (65000, 1448), (301, 7), (50, 1)],
)
def test_tcp_super_frame_is_cut_into_checksummed_segments(l2, l3, paylen, mss):
    tcp = TCP(
        sport=40000, dport=5201, seq=0xFFFFF000, ack=99, flags="FPA", window=502, options=TCP_OPTS
    )
    sf = make_super(l3 / tcp, pattern(paylen), mss, l2=l2)
    n, segs = segment(sf.raw, sf.vh)
    assert n == len(segs) > 0
    check_segments(sf, segs)


def test_ipv4_id_wraps_and_seq_wraps():
    sf = make_super(IP(**V4) / TCP(seq=0xFFFFFFFF - 100, flags="A"), pattern(1000), 100)
    n, segs = segment(sf.raw, sf.vh)
    assert n == 10
    check_segments(sf, segs)
    assert [Ether(s)[IP].id for s in segs[:3]] == [0xFFFE, 0xFFFF, 0]


def test_cwr_only_on_first_and_fin_psh_only_on_last_with_ecn():
    sf = make_super(IP(**V4) / TCP(flags="FPAUEC", urgptr=5), pattern(3000), 1000, ecn=True)
    n, segs = segment(sf.raw, sf.vh)
    assert n == 3
    check_segments(sf, segs)
    assert [str(Ether(s)[TCP].flags) for s in segs] == ["AUEC", "AUE", "FPAUE"]


def test_super_frame_without_payload_gives_one_segment():
    sf = make_super(IPv6(**V6) / TCP(flags="A"), b"", 1000)
    n, segs = segment(sf.raw, sf.vh)
    assert n == 1 and len(segs[0]) == len(sf.raw)
    check_segments(sf, segs)


def test_ipv6_hop_by_hop_and_destination_options_are_carried():
    l3 = IPv6(**V6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
    sf = make_super(l3 / TCP(flags="PA"), pattern(5000), 1400)
    n, segs = segment(sf.raw, sf.vh)
    assert n == 4
    check_segments(sf, segs)
    assert IPv6ExtHdrHopByHop in Ether(segs[0]) and IPv6ExtHdrDestOpt in Ether(segs[0])


def test_trailing_bytes_after_ip_datagram_are_not_payload():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000)
    n, segs = segment(sf.raw + b"\xee" * 6, sf.vh)
    assert n == 3
    check_segments(sf, segs)


@pytest.mark.parametrize("l3", [IP(**V4), IPv6(**V6)], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("paylen, mss", [(3000, 1000), (3001, 1000), (17, 1472)])
def test_udp_l4_super_frame_is_cut_into_datagrams(l3, paylen, mss):
    sf = make_super(l3 / UDP(sport=4433, dport=443), pattern(paylen), mss, l2=ETH / Dot1Q(vlan=3))
    n, segs = segment(sf.raw, sf.vh)
    assert n == len(segs) > 0
    check_segments(sf, segs)


@pytest.mark.parametrize("l3", [IP(**V4), IPv6(**V6)], ids=["ipv4", "ipv6"])
def test_udp_segment_whose_checksum_is_zero_sends_ffff(l3):
    # Three datagrams (8 + 8 + 4 bytes); tune the last one to sum to -0.
    sport, dport = 4433, 443
    payload = bytearray(pattern(20))
    payload[16:18] = b"\0\0"
    addrs = (
        bytes(ETH / l3 / UDP())[14 + 12 : 14 + 20]
        if IP in l3
        else bytes(ETH / l3 / UDP())[14 + 8 : 14 + 40]
    )
    pseudo = struct.pack("!HH", 17, 12) if IP in l3 else struct.pack("!IxxxB", 12, 17)
    rest = rfc1071(addrs + pseudo + struct.pack("!HHHH", sport, dport, 12, 0) + payload[16:])
    struct.pack_into("!H", payload, 16, 0xFFFF - rest)
    sf = make_super(l3 / UDP(sport=sport, dport=dport), bytes(payload), 8)
    n, segs = segment(sf.raw, sf.vh)
    assert n == 3
    check_segments(sf, segs)
    assert Ether(segs[2])[UDP].chksum == 0xFFFF


def test_source_frame_and_header_are_not_modified():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000)
    frame = bytearray(sf.raw)
    vh_before = bytes(ffi.buffer(sf.vh))
    segment(bytes(frame), sf.vh)
    assert bytes(frame) == sf.raw and bytes(ffi.buffer(sf.vh)) == vh_before


# Segmentation: the emit callback and the scratch buffer.


def test_emit_returning_nonzero_stops_and_counts_accepted_segments():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(5000), 1000)
    seen = []

    @ffi.callback("vs_gso_emit_fn")
    def emit(ctx, seg, seg_len):
        seen.append(bytes(ffi.buffer(seg, seg_len)))
        return 1 if len(seen) == 3 else 0

    scratch = ffi.new("uint8_t[]", 2000)
    src = ffi.from_buffer("uint8_t[]", sf.raw)
    assert lib.vs_gso_segment(src, len(sf.raw), sf.vh, scratch, 2000, emit, ffi.NULL) == 2
    assert len(seen) == 3


def test_scratch_must_hold_the_largest_segment():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(5000), 1000)
    calls = []

    @ffi.callback("vs_gso_emit_fn")
    def emit(ctx, seg, seg_len):
        calls.append(seg_len)
        return 0

    src = ffi.from_buffer("uint8_t[]", sf.raw)
    need = sf.hdr_len + 1000
    scratch = ffi.new("uint8_t[]", need)
    assert (
        lib.vs_gso_segment(src, len(sf.raw), sf.vh, scratch, need - 1, emit, ffi.NULL) == -OVERSIZE
    )
    assert calls == []
    assert lib.vs_gso_segment(src, len(sf.raw), sf.vh, scratch, need, emit, ffi.NULL) == 5
    assert calls == [need] * 5


def test_to_buffer_reports_oversize_when_out_is_too_small():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(5000), 1000)
    out = ffi.new("uint8_t[]", 100000)
    lens = ffi.new("uint32_t[]", 4)
    src = ffi.from_buffer("uint8_t[]", sf.raw)
    assert lib.vs_gso_segment_to_buffer(src, len(sf.raw), sf.vh, out, 100000, lens, 4) == -OVERSIZE
    lens = ffi.new("uint32_t[]", 5)
    assert lib.vs_gso_segment_to_buffer(src, len(sf.raw), sf.vh, out, 3000, lens, 5) == -OVERSIZE
    assert lib.vs_gso_segment_to_buffer(src, len(sf.raw), sf.vh, out, 100000, lens, 5) == 5


# The segment size a TSO-capable egress port will produce, checked against its MTU.


def seg_l3_len(sf: Super) -> tuple[int, int]:
    out = ffi.new("uint32_t *")
    return lib.vs_gso_seg_l3_len(sf.raw, len(sf.raw), sf.vh, out), out[0]


@pytest.mark.parametrize(
    "l2, l3, paylen, mss, expect",
    [
        (ETH, IP(**V4), 4000, 1448, 20 + 32 + 1448),          # TCP with timestamps
        (ETH / Dot1Q(vlan=7), IP(**V4), 4000, 1448, 20 + 32 + 1448),
        (ETH, IPv6(**V6), 4000, 1428, 40 + 32 + 1428),
        (ETH, IP(**V4), 300, 1448, 20 + 32 + 300),            # payload below one MSS
    ],
    ids=["ipv4", "ipv4-vlan", "ipv6", "short"],
)
def test_segment_ip_length_is_headers_plus_mss(l2, l3, paylen, mss, expect):
    sf = make_super(l3 / TCP(flags="A", options=TCP_OPTS), pattern(paylen), mss, l2=l2)
    assert seg_l3_len(sf) == (0, expect)


def test_udp_segment_ip_length_counts_the_udp_header():
    sf = make_super(IP(**V4) / UDP(sport=1, dport=2), pattern(3000), 1200)
    assert seg_l3_len(sf) == (0, 20 + 8 + 1200)


def test_segment_ip_length_of_a_malformed_super_frame_is_an_error():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000)
    sf.vh.gso_type = 0
    assert seg_l3_len(sf)[0] == UNSUPPORTED
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000)
    assert lib.vs_gso_seg_l3_len(sf.raw[:40], 40, sf.vh, ffi.new("uint32_t *")) != 0


# Segmentation: what is refused.


def test_non_gso_frame_is_unsupported():
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(500), 1000)
    sf.vh.gso_type = 0
    assert segment(sf.raw, sf.vh)[0] == -UNSUPPORTED


def _broken(mutate):
    """Segments a valid IPv4 super-frame after 'mutate'(raw, sf) broke it."""
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000)
    raw = bytearray(sf.raw)
    mutate(raw, sf)
    return segment(bytes(raw), sf.vh)[0]


@pytest.mark.parametrize(
    "name, mutate, expect",
    [
        ("csum_start not at TCP", lambda r, s: setattr(s.vh, "csum_start", s.l4 + 4), BAD),
        ("csum_offset not TCP's", lambda r, s: setattr(s.vh, "csum_offset", 6), BAD),
        ("TCPV6 on IPv4", lambda r, s: setattr(s.vh, "gso_type", TCPV6), BAD),
        ("UFO", lambda r, s: setattr(s.vh, "gso_type", lib.VS_VNET_GSO_UDP), UNSUPPORTED),
        ("no NEEDS_CSUM", lambda r, s: setattr(s.vh, "flags", 0), BAD),
        ("gso_size 0", lambda r, s: setattr(s.vh, "gso_size", 0), BAD),
        ("IPv4 more fragments", lambda r, s: r.__setitem__(s.l3 + 6, 0x20), BAD),
        ("IPv4 fragment offset", lambda r, s: r.__setitem__(s.l3 + 7, 1), BAD),
        (
            "IPv4 total length past frame",
            lambda r, s: struct.pack_into("!H", r, s.l3 + 2, len(r)),
            BAD,
        ),
        (
            "IPv4 total length inside headers",
            lambda r, s: struct.pack_into("!H", r, s.l3 + 2, 30),
            BAD,
        ),
        ("IPv4 ihl < 5", lambda r, s: r.__setitem__(s.l3, 0x44), BAD),
        ("IPv4 ihl past frame", lambda r, s: r.__setitem__(s.l3, 0x4F), BAD),
        ("IP version 5", lambda r, s: r.__setitem__(s.l3, 0x55), BAD),
        ("UDP inside TCPV4", lambda r, s: r.__setitem__(s.l3 + 9, 17), BAD),
        ("TCP data offset < 5", lambda r, s: r.__setitem__(s.l4 + 12, 0x40), BAD),
        ("not IP", lambda r, s: struct.pack_into("!H", r, 12, 0x0806), BAD),
        ("three VLAN tags", lambda r, s: struct.pack_into("!H", r, 12, 0x8100), BAD),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_tcp4_super_frame_is_refused(name, mutate, expect):
    assert _broken(mutate) == -expect


def test_third_vlan_tag_is_unsupported():
    l2 = ETH / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3)
    sf = make_super(IP(**V4) / TCP(flags="A"), pattern(3000), 1000, l2=l2)
    assert segment(sf.raw, sf.vh)[0] == -UNSUPPORTED


@pytest.mark.parametrize(
    "ext", [IPv6ExtHdrRouting(), IPv6ExtHdrFragment()], ids=["routing", "fragment"]
)
def test_ipv6_routing_and_fragment_headers_are_unsupported(ext):
    sf = make_super(IPv6(**V6) / ext / TCP(flags="A"), pattern(3000), 1000)
    assert segment(sf.raw, sf.vh)[0] == -UNSUPPORTED


def test_ipv6_jumbogram_is_unsupported():
    sf = make_super(IPv6(**V6) / TCP(flags="A"), pattern(3000), 1000)
    raw = bytearray(sf.raw)
    struct.pack_into("!H", raw, sf.l3 + 4, 0)
    assert segment(bytes(raw), sf.vh)[0] == -UNSUPPORTED


def test_truncated_super_frame_is_refused_at_every_length():
    sf = make_super(
        IPv6(**V6) / IPv6ExtHdrHopByHop() / TCP(flags="A", options=TCP_OPTS),
        pattern(300),
        100,
        l2=ETH / Dot1Q(vlan=9),
    )
    for cut in range(len(sf.raw)):
        rc = segment(sf.raw[:cut], sf.vh)[0]
        assert rc in (-BAD, -RUNT), cut


# Header checks.


def _hdr(**kw):
    base = dict(
        flags=NEEDS_CSUM, gso_type=TCPV4, hdr_len=54, gso_size=1448, csum_start=34, csum_offset=16
    )
    base.update(kw)
    return vnet(**base)


FRAME = bytes(200)


@pytest.mark.parametrize(
    "fields, length, expect",
    [
        (dict(), 200, 0),
        (dict(gso_type=TCPV4 | ECN), 200, 0),
        (dict(gso_type=TCPV6), 200, 0),
        (dict(gso_type=UDP_L4, csum_offset=6), 200, 0),
        (dict(flags=0, gso_type=0, gso_size=0, csum_start=0, csum_offset=0, hdr_len=0), 200, 0),
        (dict(flags=DATA_VALID, gso_type=0, gso_size=0), 200, 0),
        (dict(flags=NEEDS_CSUM | DATA_VALID, gso_type=0), 200, 0),
        (dict(flags=0, gso_type=0, hdr_len=14), 14, 0),
        (dict(), 13, RUNT),
        (dict(flags=0, gso_type=0), 0, RUNT),
        (dict(flags=NEEDS_CSUM | 4), 200, BAD),
        (dict(flags=0x80, gso_type=0), 200, BAD),
        (dict(gso_type=0, csum_start=180, csum_offset=19), 200, BAD),
        (dict(gso_type=0, csum_start=182, csum_offset=16), 200, 0),
        (dict(gso_type=0, csum_start=0xFFFF, csum_offset=0xFFFF), 200, BAD),
        (dict(gso_type=2), 200, BAD),
        (dict(gso_type=6), 200, BAD),
        (dict(gso_type=0x7F), 200, BAD),
        (dict(gso_type=lib.VS_VNET_GSO_UDP), 200, UNSUPPORTED),
        (dict(gso_type=ECN, gso_size=0), 200, BAD),
        (dict(gso_type=UDP_L4 | ECN, csum_offset=6), 200, BAD),
        (dict(gso_size=0), 200, BAD),
        (dict(flags=0), 200, BAD),
        (dict(flags=DATA_VALID), 200, BAD),
        (dict(csum_offset=6), 200, BAD),
        (dict(gso_type=UDP_L4, csum_offset=16), 200, BAD),
        (dict(hdr_len=201), 200, BAD),
        (dict(hdr_len=200), 200, 0),
        (dict(flags=0, gso_type=0, hdr_len=0xFFFF), 200, BAD),
    ],
)
def test_vnet_hdr_check(fields, length, expect):
    assert (
        lib.vs_vnet_hdr_check(_hdr(**fields), ffi.from_buffer("uint8_t[]", FRAME), length) == expect
    )


# Properties: hostile input never crashes, valid input always segments right.

vnet_fields = st.fixed_dictionaries(
    dict(
        flags=st.sampled_from([0, 1, 2, 3, 4, 0x81]),
        gso_type=st.sampled_from([0, 1, 3, 4, 5, 0x81, 0x84, 0x85, 0x80, 2, 0xFF]),
        hdr_len=st.integers(0, 0xFFFF),
        gso_size=st.one_of(st.integers(0, 3), st.integers(0, 0xFFFF)),
        csum_start=st.one_of(st.integers(0, 80), st.integers(0, 0xFFFF)),
        csum_offset=st.sampled_from([0, 6, 16, 0xFFFF]),
    )
)


@settings(max_examples=1000, deadline=None)
@given(data=st.binary(max_size=300), fields=vnet_fields)
def test_random_bytes_and_headers_never_crash(data, fields):
    vh = vnet(**fields)
    src = ffi.from_buffer("uint8_t[]", data) if data else ffi.NULL
    rc = lib.vs_vnet_hdr_check(vh, src, len(data))
    assert rc >= 0
    n, segs = segment(data, vh)
    if n >= 0:
        assert rc == 0
        assert all(14 <= len(s) <= len(data) for s in segs)


def _valid_super(draw):
    v6 = draw(st.booleans())
    udp = draw(st.booleans())
    tags = draw(st.integers(0, 2))
    l2 = ETH
    for i in range(tags):
        l2 = l2 / (Dot1AD(vlan=i + 1) if i == 0 and tags == 2 else Dot1Q(vlan=i + 10))
    if v6:
        l3 = IPv6(**V6)
        if draw(st.booleans()):
            l3 = l3 / IPv6ExtHdrHopByHop()
    else:
        opts = draw(st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x01" * 40]))
        l3 = IP(**{**V4, "id": draw(st.integers(0, 0xFFFF))}, options=opts)
    if udp:
        l4 = UDP(sport=draw(st.integers(0, 0xFFFF)), dport=53)
    else:
        l4 = TCP(
            seq=draw(st.integers(0, 0xFFFFFFFF)),
            flags=draw(st.integers(0, 0xFF)),
            options=draw(st.sampled_from([[], TCP_OPTS, [("MSS", 1460), ("SAckOK", b"")]])),
        )
    payload = draw(st.binary(min_size=0, max_size=6000))
    mss = draw(st.one_of(st.integers(1, 64), st.integers(1, 9000)))
    mss = max(mss, len(payload) // 100)  # at most ~100 segments to check
    return make_super(l3 / l4, payload, mss, l2=l2)


valid_super = st.composite(_valid_super)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sf=valid_super())
def test_any_valid_super_frame_segments_correctly(sf):
    assert lib.vs_vnet_hdr_check(sf.vh, ffi.from_buffer("uint8_t[]", sf.raw), len(sf.raw)) == 0
    n, segs = segment(sf.raw, sf.vh, max_segs=8192)
    assert n == len(segs)
    check_segments(sf, segs)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sf=valid_super(),
    flips=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 400),
    fields=st.one_of(st.none(), vnet_fields),
)
def test_mutated_super_frames_never_crash(sf, flips, cut, fields):
    raw = bytearray(sf.raw)
    for pos, val in flips:
        if pos < len(raw):
            raw[pos] = val
    if cut:
        raw = raw[: max(0, len(raw) - cut)] if cut % 2 else raw[:cut]
    vh = vnet(**fields) if fields else sf.vh
    n, segs = segment(bytes(raw), vh, max_segs=8192)
    if n >= 0:
        assert n == len(segs) >= 1
        assert all(14 <= len(s) <= len(raw) for s in segs)
