"""Internet checksums (csrc/vs_csum.c) against RFC 1071 and scapy."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from vswitchd._fastpath import ffi, lib

from tests.unit.counter_enum import reason


def rfc1071(data: bytes, init: int = 0) -> int:
    """The classic algorithm: 16-bit big-endian words, end-around carry,
    folded, not complemented."""
    if len(data) % 2:
        data += b"\0"
    s = init + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def buf(data) -> "ffi.CData":
    return ffi.from_buffer("uint8_t[]", data)


def partial(data: bytes, init: int = 0) -> int:
    return lib.vs_csum_partial(buf(data), len(data), init)


def vnet(**fields):
    return ffi.new("struct vs_vnet_hdr *", fields)


# Basics.


def test_partial_matches_rfc1071_example():
    # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert partial(data) == 0xDDF2
    assert lib.vs_csum_fold(partial(data)) == 0x220D


def test_partial_of_nothing_and_zeros_is_zero():
    assert partial(b"") == 0
    assert partial(bytes(1000)) == 0
    assert partial(b"", 0x1234) == 0x1234


def test_partial_all_ones_is_negative_zero_not_zero():
    assert partial(b"\xff" * 64) == 0xFFFF
    assert partial(b"\xff\xff") == 0xFFFF


def test_partial_odd_length_pads_last_byte_as_high_byte():
    assert partial(b"\x12") == 0x1200
    assert partial(b"\x00\x01\x12") == 0x1201


def test_partial_chains_over_even_splits():
    data = bytes(range(256)) * 7 + b"\x99"
    for cut in (0, 2, 8, 30, 64, 1000, len(data) - 1):
        assert partial(data[cut:], partial(data[:cut])) == partial(data)


def test_partial_folds_unfolded_initial_sum():
    assert partial(b"\x00\x01", 0xFFFFFFFF) == rfc1071(b"\x00\x01", 0xFFFFFFFF)


def test_fold_complements_and_folds():
    assert lib.vs_csum_fold(0) == 0xFFFF
    assert lib.vs_csum_fold(0xFFFF) == 0
    assert lib.vs_csum_fold(0x1FFFE) == 0
    assert lib.vs_csum_fold(0x12345678) == (~(0x1234 + 0x5678) & 0xFFFF)


def test_pseudo_headers_match_rfc():
    src, dst = bytes([10, 0, 0, 1]), bytes([192, 168, 1, 2])
    expect = rfc1071(src + dst + b"\x00\x06" + struct.pack("!H", 1480))
    assert rfc1071(b"", lib.vs_csum_pseudo_v4(buf(src), buf(dst), 6, 1480)) == expect

    src6 = bytes(range(16))
    dst6 = bytes(range(100, 116))
    expect6 = rfc1071(src6 + dst6 + struct.pack("!IxxxB", 70000, 17))
    got6 = lib.vs_csum_pseudo_v6(buf(src6), buf(dst6), 17, 70000)
    assert rfc1071(b"", got6) == expect6


# Offload completion.


def _partial_frame(pkt, l4cls):
    """Raw bytes of 'pkt' as Linux hands over a CHECKSUM_PARTIAL frame: the
    L4 checksum field holds the folded pseudo-header sum, and the virtio-net
    header that goes with it.  Also returns scapy's own checksum."""
    raw = bytearray(bytes(pkt))
    expect = Ether(bytes(raw))[l4cls].chksum
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    l3 = len(raw) - len(bytes(ip))
    l4 = len(raw) - len(bytes(pkt[l4cls]))
    l4_len = len(raw) - l4
    proto = 6 if l4cls is TCP else 17
    if IP in pkt:
        addrs = raw[l3 + 12 : l3 + 20]
        pseudo = rfc1071(bytes(addrs) + struct.pack("!HH", proto, l4_len))
    else:
        addrs = raw[l3 + 8 : l3 + 40]
        pseudo = rfc1071(bytes(addrs) + struct.pack("!IxxxB", l4_len, proto))
    off = 16 if l4cls is TCP else 6
    struct.pack_into("!H", raw, l4 + off, pseudo)
    vh = vnet(flags=lib.VS_VNET_F_NEEDS_CSUM, csum_start=l4, csum_offset=off)
    return raw, vh, l4 + off, expect


ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@pytest.mark.parametrize(
    "pkt, l4cls",
    [
        (
            ETH
            / IP(src="10.0.0.1", dst="10.0.0.2")
            / TCP(sport=1234, dport=80, flags="PA")
            / (b"x" * 101),
            TCP,
        ),
        (
            ETH
            / Dot1Q(vlan=10)
            / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00")
            / TCP(options=[("MSS", 1460), ("NOP", None), ("WScale", 7)])
            / bytes(range(200)),
            TCP,
        ),
        (ETH / IP(src="10.1.2.3", dst="8.8.8.8") / UDP(sport=53, dport=5353) / (b"hello" * 3), UDP),
        (ETH / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(flags="S") / b"", TCP),
        (ETH / IPv6(src="fe80::1", dst="ff02::1") / UDP() / bytes(range(255)), UDP),
    ],
    ids=["tcp4", "tcp4-vlan-options", "udp4", "tcp6-empty", "udp6-odd"],
)
def test_complete_matches_scapy_checksum(pkt, l4cls):
    raw, vh, field, expect = _partial_frame(pkt, l4cls)
    before = bytes(ffi.buffer(vh))
    assert lib.vs_csum_complete(buf(raw), len(raw), vh) == 0
    assert struct.unpack_from("!H", raw, field)[0] == expect
    assert bytes(ffi.buffer(vh)) == before  # 'vh' is not modified


def test_complete_udp_zero_result_is_sent_as_ffff():
    # Tune two payload bytes so that the UDP checksum comes out as 0.
    pkt = ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"\0\0abcd"
    raw, vh, field, _ = _partial_frame(pkt, UDP)
    l4 = vh.csum_start
    s = rfc1071(bytes(raw[l4:]))
    struct.pack_into("!H", raw, l4 + 8, 0xFFFF - s)
    assert rfc1071(bytes(raw[l4:])) == 0xFFFF  # i.e. checksum 0
    assert lib.vs_csum_complete(buf(raw), len(raw), vh) == 0
    assert struct.unpack_from("!H", raw, field)[0] == 0xFFFF
    assert Ether(bytes(raw))[UDP].chksum == 0xFFFF


def test_complete_without_needs_csum_does_nothing():
    raw = bytearray(bytes(ETH / IP() / ICMP()))
    before = bytes(raw)
    vh = vnet(flags=0, csum_start=5000, csum_offset=5000)
    assert lib.vs_csum_complete(buf(raw), len(raw), vh) == 0
    assert bytes(raw) == before


@pytest.mark.parametrize(
    "start, offset", [(60, 0), (59, 0), (58, 1), (0, 59), (61, 0), (65535, 65535)]
)
def test_complete_rejects_field_outside_frame(start, offset):
    raw = bytearray(60)
    vh = vnet(flags=lib.VS_VNET_F_NEEDS_CSUM, csum_start=start, csum_offset=offset)
    assert lib.vs_csum_complete(buf(raw), 60, vh) == reason("DROP_BAD_VNET_HDR")
    assert raw == bytearray(60)


def test_complete_field_at_the_very_end():
    raw = bytearray(b"\x12\x34" * 30)
    vh = vnet(flags=lib.VS_VNET_F_NEEDS_CSUM, csum_start=58, csum_offset=0)
    assert lib.vs_csum_complete(buf(raw), 60, vh) == 0
    assert raw[58:] == struct.pack("!H", ~0x1234 & 0xFFFF)


# Properties.


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=3000), shift=st.integers(0, 15), init=st.integers(0, 0xFFFFFFFF))
def test_partial_equals_rfc1071_for_any_data_alignment_and_initial_sum(data, shift, init):
    backing = bytearray(shift) + bytearray(data)
    p = ffi.from_buffer("uint8_t[]", backing) + shift
    assert lib.vs_csum_partial(p, len(data), init) == rfc1071(data, init)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=200),
    start=st.integers(0, 0xFFFF),
    offset=st.integers(0, 0xFFFF),
    flags=st.integers(0, 0xFF),
)
def test_complete_never_writes_outside_the_frame(data, start, offset, flags):
    raw = bytearray(data)
    vh = vnet(flags=flags, csum_start=start, csum_offset=offset)
    rc = lib.vs_csum_complete(buf(raw) if raw else ffi.NULL, len(raw), vh)
    if rc == 0 and flags & lib.VS_VNET_F_NEEDS_CSUM:
        assert start + offset + 2 <= len(data)
        # The rest of the frame is untouched, and the frame now sums right.
        f = start + offset
        assert raw[:f] == data[:f] and raw[f + 2 :] == data[f + 2 :]
        # What was summed (the pseudo-header sum in the field included) plus
        # what was stored is -0: the receiver's check adds up.
        if offset % 2 == 0:
            stored = struct.unpack_from("!H", raw, f)[0]
            assert rfc1071(data[start:], stored) == 0xFFFF
    elif rc == 0:
        assert raw == data
    else:
        assert rc == reason("DROP_BAD_VNET_HDR") and raw == data
