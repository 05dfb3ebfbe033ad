"""`vswitchctl trace` FLOW syntax (Open vSwitch field names) -> frames,
checked against libpcap's own reading of them (a tcpdump filter compiled
by pcap_compile and run by the workers' interpreter)."""

from __future__ import annotations

import struct

import pytest

from vswitchd.errors import VswitchError
from vswitchd.fastpath_observe import bpf_run
from vswitchd.pcapfilter import compile_filter
from vswitchd.trace import _csum, build_frame, parse_flow, parse_hex


def matches(expr: str, frame: bytes) -> bool:
    return bpf_run(compile_filter(expr), frame) != 0


@pytest.mark.parametrize("flow, expr", [
    ("dl_src=02:00:00:00:00:01,dl_dst=02:00:00:00:00:02,dl_vlan=10,ip,nw_src=10.0.0.1,"
     "nw_dst=10.0.0.2,tcp,tp_dst=22",
     "vlan 10 and src host 10.0.0.1 and dst host 10.0.0.2 and tcp dst port 22 "
     "and ether src 02:00:00:00:00:01 and ether dst 02:00:00:00:00:02"),
    ("udp,tp_src=68,tp_dst=67,dl_dst=ff:ff:ff:ff:ff:ff", "udp src port 68 and udp dst port 67"),
    ("icmp,icmp_type=0", "icmp[icmptype] = icmp-echoreply"),
    ("arp,arp_op=2,arp_tpa=10.1.1.1", "arp and arp[6:2] = 2 and arp[24:4] = 0x0a010101"),
    ("tcp6,ipv6_dst=fd00::9,tp_dst=443", "ip6 and dst host fd00::9 and tcp dst port 443"),
    ("dl_vlan=5,dl_vlan_pcp=3,icmp6", "vlan 5 and icmp6"),
])
def test_flows_build_the_frames_tcpdump_filters_recognise(flow, expr):
    frame = build_frame(parse_flow(flow))
    assert len(frame) >= 60
    assert matches(expr, frame), frame.hex()


def test_ipv4_header_and_tcp_checksums_are_valid():
    frame = build_frame(parse_flow("ip,nw_src=10.0.0.1,nw_dst=10.0.0.2,tcp,tp_dst=22"))
    ip = frame[14:34]
    assert _csum(ip) == 0
    tcp = frame[34:54]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    assert _csum(pseudo + tcp) == 0


@pytest.mark.parametrize("flow, msg", [
    ("nw_bogus=1", "flow: unknown field 'nw_bogus'"),
    ("sctp", "flow: unknown field or protocol 'sctp'"),
    ("dl_src=zz", "flow: dl_src=zz: not a MAC address"),
    ("ip,nw_src=fd00::1", "flow: nw_src=fd00::1: not an IPv4 address"),
    ("tcp,tp_dst=70000", "flow: tp_dst=70000: not in 0-65535"),
])
def test_bad_flows_are_refused_in_one_line(flow, msg):
    with pytest.raises(VswitchError, match="^" + msg.replace("(", r"\(")):
        build_frame(parse_flow(flow))


def test_hex_frames_accept_separators_and_refuse_nonsense():
    assert parse_hex("ff:ff:ff:ff:ff:ff 020000000001 0800") == bytes.fromhex(
        "ffffffffffff0200000000010800")
    with pytest.raises(VswitchError, match="not a hexadecimal frame"):
        parse_hex("xyz")
