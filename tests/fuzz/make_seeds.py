"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/).

    .venv/bin/python tests/fuzz/make_seeds.py

Seeds are the frames a switch meets, good and bad: tagged and untagged ARP,
IPv4/IPv6 TCP GSO super-frames with NEEDS_CSUM (one, two and no VLAN tags,
IPv4 options, IPv6 destination options), UDP with a partial checksum, UDP
GSO, runts, QinQ and bogus virtio-net headers.  The output is
deterministic, so re-running it changes nothing in git.

corpus/gso/NAME:      10-byte virtio-net header + frame (fuzz_gso.c)
corpus/pipeline/NAME: records [port index][be16 length][vnet header + frame]
                      (fuzz_pipeline.c documents the selector bits)
"""

from __future__ import annotations

import hashlib
import pathlib
import socket
import struct

from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

HERE = pathlib.Path(__file__).resolve().parent

NEEDS_CSUM = 1
DATA_VALID = 2
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 3, 4, 5
GSO_ECN = 0x80

A = "02:00:00:00:00:0a"
B = "02:00:00:00:00:0b"
C = "02:00:00:00:00:0c"
BCAST = "ff:ff:ff:ff:ff:ff"

# Port indexes of fuzz_pipeline.c and their virtio-net header sizes.
P_ACCESS10_MRG, P_ACCESS20, P_TRUNK_NATIVE, P_TRUNK, P_ACCESS10_MTU, P_VXLAN = range(6)
VNET_LEN = {0: 12, 1: 10, 2: 0, 3: 10, 4: 10, 5: 0}
POLL = 0x08


def vnet(flags: int = 0, gso: int = GSO_NONE, hdr_len: int = 0,
         gso_size: int = 0, csum_start: int = 0, csum_offset: int = 0) -> bytes:
    """A 10-byte legacy virtio-net header, little-endian (x86 host order)."""
    return struct.pack("<BBHHHH", flags, gso, hdr_len, gso_size, csum_start,
                       csum_offset)


def l2(frame: bytes) -> int:
    """Offset of the L3 header: past up to two VLAN tags."""
    off, typ = 14, struct.unpack("!H", frame[12:14])[0]
    while typ in (0x8100, 0x88A8):
        typ = struct.unpack("!H", frame[off + 2:off + 4])[0]
        off += 4
    return off


def partial(pkt, proto: str) -> tuple[bytes, int, int]:
    """Builds 'pkt' with its L4 checksum field holding only the folded
    pseudo-header sum, as Linux leaves it for CHECKSUM_PARTIAL.  Returns
    (frame, csum_start, csum_offset)."""
    plen = len(bytes(pkt[proto]))
    raw = bytes(pkt)
    start = len(raw) - plen
    off = 16 if proto == "TCP" else 6
    ip = pkt["IP"] if pkt.haslayer("IP") else pkt["IPv6"]
    if pkt.haslayer("IP"):
        src = bytes(map(int, ip.src.split(".")))
        dst = bytes(map(int, ip.dst.split(".")))
        words = src + dst + struct.pack("!BBH", 0, 6 if proto == "TCP" else 17, plen)
    else:
        src = socket.inet_pton(socket.AF_INET6, ip.src)
        dst = socket.inet_pton(socket.AF_INET6, ip.dst)
        words = src + dst + struct.pack("!IxxxB", plen, 6 if proto == "TCP" else 17)
    s = sum(struct.unpack(f"!{len(words) // 2}H", words))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    raw = raw[:start + off] + struct.pack("!H", s) + raw[start + off + 2:]
    return raw, start, off


def tcp_super(eth, ip, mss: int = 1448, payload: int = 4000, opts=None,
              flags: str = "PA") -> tuple[bytes, bytes]:
    """A TCP GSO super-frame: (vnet header, frame)."""
    tcp = TCP(sport=40000, dport=5201, seq=1000, flags=flags,
              options=opts or [])
    pkt = eth / ip / tcp / Raw(bytes(range(256)) * (payload // 256)
                               + bytes(payload % 256))
    frame, start, off = partial(pkt, "TCP")
    gso = GSO_TCPV6 if pkt.haslayer("IPv6") else GSO_TCPV4
    hdr_len = start + len(bytes(tcp)) - len(bytes(tcp.payload))
    return vnet(NEEDS_CSUM, gso, hdr_len, mss, start, off), frame


def udp_partial(eth, ip, payload: int = 300, gso_size: int = 0):
    pkt = eth / ip / UDP(sport=5353, dport=5353) / Raw(b"u" * payload)
    frame, start, off = partial(pkt, "UDP")
    if gso_size:
        return vnet(NEEDS_CSUM, GSO_UDP_L4, start + 8, gso_size, start, off), frame
    return vnet(NEEDS_CSUM, GSO_NONE, 0, 0, start, off), frame


def arp(src: str, vid: int | None = None, vid2: int | None = None) -> bytes:
    e = Ether(src=src, dst=BCAST)
    if vid2 is not None:
        e = Ether(src=src, dst=BCAST, type=0x88A8) / Dot1AD(vlan=vid2)
    if vid is not None:
        e = e / Dot1Q(vlan=vid)
    return bytes(e / ARP(hwsrc=src, psrc="10.0.0.1", pdst="10.0.0.2"))


def v4(src: str = A, dst: str = B, vid: int | None = None, **kw):
    e = Ether(src=src, dst=dst)
    if vid is not None:
        e = e / Dot1Q(vlan=vid)
    return e, IP(src="10.0.0.1", dst="10.0.0.2", id=7, **kw)


def v6(src: str = A, dst: str = B, vid: int | None = None):
    e = Ether(src=src, dst=dst)
    if vid is not None:
        e = e / Dot1Q(vlan=vid)
    return e, IPv6(src="fd00::1", dst="fd00::2")


def gso_seeds() -> dict[str, bytes]:
    s: dict[str, bytes] = {}

    def put(name: str, hdr_frame: tuple[bytes, bytes]) -> None:
        s[name] = hdr_frame[0] + hdr_frame[1]

    put("tcp4_gso", tcp_super(*v4()))
    put("tcp4_gso_tagged", tcp_super(*v4(vid=10), mss=1000, payload=3001))
    put("tcp4_gso_options", tcp_super(*v4(options=[IPOption_NOP()] * 4),
                                      opts=[("MSS", 1460), ("NOP", None),
                                            ("NOP", None), ("SAck", (1, 2))]))
    put("tcp4_gso_fin", tcp_super(*v4(), mss=100, payload=250, flags="FPA"))
    put("tcp4_gso_no_payload", tcp_super(*v4(), payload=0))
    put("tcp4_gso_mss1", tcp_super(*v4(), mss=1, payload=40))
    put("tcp6_gso", tcp_super(*v6(), mss=1220, payload=5000))
    put("tcp6_gso_tagged", tcp_super(*v6(vid=20), mss=500, payload=1200))
    e, ip = v6()
    put("tcp6_gso_dstopts", tcp_super(e, ip / IPv6ExtHdrDestOpt(), mss=700))
    e = Ether(src=A, dst=B, type=0x88A8) / Dot1AD(vlan=100) / Dot1Q(vlan=10)
    put("tcp4_gso_qinq", tcp_super(e, IP(src="10.0.0.1", dst="10.0.0.2"),
                                   mss=600, payload=1300))
    put("udp4_partial", udp_partial(*v4()))
    put("udp6_partial", udp_partial(*v6(), payload=77))
    put("udp4_gso_l4", udp_partial(*v4(), payload=3000, gso_size=1200))
    put("udp6_gso_l4", udp_partial(*v6(vid=10), payload=2000, gso_size=700))
    h, f = tcp_super(*v4())
    put("tcp4_gso_ecn", (h[:1] + bytes([GSO_TCPV4 | GSO_ECN]) + h[2:], f))
    put("ufo", (vnet(NEEDS_CSUM, GSO_UDP, 42, 1400, 34, 6),
                udp_partial(*v4(), payload=3000)[1]))
    put("bad_flags", (vnet(0xff, GSO_TCPV4, 54, 1448, 34, 16), f))
    put("bad_csum_start", (vnet(NEEDS_CSUM, GSO_TCPV4, 54, 1448, 0xfff0, 16), f))
    put("bad_gso_size0", (vnet(NEEDS_CSUM, GSO_TCPV4, 54, 0, 34, 16), f))
    put("bad_hdr_len", (vnet(NEEDS_CSUM, GSO_TCPV4, 0xffff, 1448, 34, 16), f))
    put("gso_non_ip", (vnet(NEEDS_CSUM, GSO_TCPV4, 0, 100, 14, 16),
                       arp(A) + bytes(64)))
    put("runt", (vnet(), b"\x02\x00\x00"))
    put("empty", (vnet(), b""))
    # An IPv4 total length that overruns the frame.
    g = bytearray(f)
    g[l2(f) + 2:l2(f) + 4] = b"\xff\xff"
    put("tcp4_gso_tot_len_overrun", (h, bytes(g)))
    return s


def rec(port: int, hdr: bytes, frame: bytes, flags: int = POLL) -> bytes:
    """One pipeline record; the header is cut to the port's vnet size."""
    body = hdr[:VNET_LEN[port]] + (bytes(2) if VNET_LEN[port] == 12 else b"") + frame
    if VNET_LEN[port] == 0:
        body = frame
    return bytes([port | flags]) + struct.pack("!H", len(body)) + body


def pipeline_seeds() -> dict[str, bytes]:
    z = vnet()
    s: dict[str, bytes] = {}
    # Learning, then unicast back: A floods from access 10, B answers.
    s["arp_then_unicast"] = (
        rec(P_ACCESS10_MRG, z, arp(A))
        + rec(P_TRUNK_NATIVE, z, arp(B))
        + rec(P_ACCESS10_MRG, z, bytes(Ether(src=A, dst=B) / IP() / UDP()))
    )
    s["arp_tagged_trunk"] = (
        rec(P_TRUNK, z, arp(C, vid=20)) + rec(P_ACCESS20, z, arp(A))
        + rec(P_TRUNK, z, arp(C, vid=4000)) + rec(P_TRUNK, z, arp(C))
    )
    s["priority_tag"] = rec(P_ACCESS20, z, arp(A, vid=0))
    s["qinq"] = (rec(P_TRUNK_NATIVE, z, arp(A, vid=10, vid2=30))
                 + rec(P_TRUNK, z, arp(B, vid=10, vid2=30)))
    s["double_dot1q"] = rec(P_TRUNK, z,
                            bytes(Ether(src=A, dst=BCAST) / Dot1Q(vlan=10)
                                  / Dot1Q(vlan=20) / ARP()))
    # Super-frames in from the offloading port, out to ports that segment.
    for name, (h, f) in {
        "tcp4_gso": tcp_super(*v4(dst=BCAST)),
        "tcp6_gso": tcp_super(*v6(dst=BCAST), mss=1220, payload=5000),
        "udp4_partial": udp_partial(*v4(dst=BCAST)),
        "udp_gso_l4": udp_partial(*v4(dst=BCAST), payload=3000, gso_size=1200),
    }.items():
        s[name] = rec(P_ACCESS10_MRG, h, f)
    h, f = tcp_super(*v4(dst=BCAST, vid=10), mss=800, payload=2500)
    s["tcp4_gso_from_trunk"] = rec(P_TRUNK, h, f)
    h, f = udp_partial(*v4(dst=BCAST, vid=30))
    s["udp_partial_tagged"] = rec(P_TRUNK, h, f)
    # Known unicast to the offloading access port from a tagged trunk: the
    # partial checksum passes through, its offsets moved back by the tag.
    h, f = udp_partial(*v4(src=C, dst=A, vid=10))
    s["unicast_partial_to_offload"] = (rec(P_ACCESS10_MRG, z, arp(A))
                                       + rec(P_TRUNK, h, f))
    h, f = tcp_super(*v4(src=C, dst=A, vid=10), mss=500, payload=1400)
    s["unicast_gso_to_tso"] = rec(P_ACCESS10_MRG, z, arp(A)) + rec(P_TRUNK, h, f)
    # The same with an MSS whose segments (20 + 20 + 1480 bytes) do not fit
    # the TSO port's MTU of 1500: dropped, never passed whole.
    h, f = tcp_super(*v4(src=C, dst=A, vid=10), mss=1480, payload=4000)
    s["unicast_gso_over_tso_mtu"] = (rec(P_ACCESS10_MRG, z, arp(A))
                                     + rec(P_TRUNK, h, f))
    # Bursts: several frames before one poll, clock jumps, aging, flushing.
    burst = b"".join(rec(P_ACCESS10_MRG, z, arp(f"02:00:00:00:01:{i:02x}"), 0)
                     for i in range(40))
    s["burst_40"] = burst + rec(P_TRUNK_NATIVE, z, arp(B), POLL | 0x30 | 0x40)
    s["age_and_flush"] = (rec(P_ACCESS10_MRG, z, arp(A))
                          + rec(P_ACCESS10_MTU, z, arp(B), POLL | 0x30 | 0x40)
                          + rec(P_ACCESS10_MRG, z, arp(A), POLL | 0x80))
    # Runts, bogus headers, an oversized frame for the MTU port.
    s["runts"] = (rec(P_ACCESS10_MRG, z, b"\x02" * 5) + rec(P_TRUNK_NATIVE, z, b"")
                  + rec(P_TRUNK, z, bytes(Ether(src=A, dst=B, type=0x8100))))
    s["bad_vnet"] = rec(P_ACCESS10_MRG, vnet(0xff, 9, 1, 1, 9999, 9999), arp(A))
    s["big_to_mtu_port"] = rec(P_ACCESS10_MRG, z,
                               bytes(Ether(src=A, dst=BCAST) / IP() / Raw(bytes(1400))))
    s["src_multicast_zero"] = (rec(P_ACCESS20, z, arp("01:00:5e:00:00:01"))
                               + rec(P_ACCESS20, z, arp("00:00:00:00:00:00")))
    # Policy: the trunk's stateful firewall (VLAN 20 reaches the access-20
    # port): a TCP SYN out, its answer in, an unsolicited one refused.
    s["stateful_tcp"] = (
        rec(P_TRUNK, z, arp(C, vid=20)) + rec(P_ACCESS20, z, arp(A))
        + rec(P_TRUNK, z, bytes(Ether(src=C, dst=A) / Dot1Q(vlan=20)
                                / IP(src="10.0.0.3", dst="10.0.0.1")
                                / TCP(sport=40000, dport=80, flags="S")))
        + rec(P_ACCESS20, z, bytes(Ether(src=A, dst=C) / IP(src="10.0.0.1", dst="10.0.0.3")
                                   / TCP(sport=80, dport=40000, flags="SA")))
        + rec(P_ACCESS20, z, bytes(Ether(src=A, dst=C) / IP(src="10.0.0.1", dst="10.0.0.3")
                                   / TCP(sport=81, dport=40000, flags="SA"))))
    # The many-rule ACL of the MTU port: UDP to its port 7 (denied), to 8,
    # and a fragment, from rule addresses 10.1.x and fd00::5.
    s["acl_many_rules"] = b"".join(
        rec(P_ACCESS10_MRG, z, bytes(Ether(src=A, dst=BCAST) / ip / UDP(sport=5, dport=dp)))
        for ip, dp in ((IP(src="10.1.0.1", dst="10.0.0.4"), 7),
                       (IP(src="10.1.0.1", dst="10.0.0.4"), 8),
                       (IP(src="10.2.0.1", dst="10.0.0.4", frag=4), 7),
                       (IPv6(src="fd00::5", dst="fd00::4"), 700)))
    # Bandwidth limits: a burst past the access-20 port's out bucket.
    s["qos_burst"] = b"".join(
        rec(P_ACCESS20, z, bytes(Ether(src=A, dst=BCAST) / IP() / UDP() / Raw(bytes(1200))), 0)
        for _ in range(12)) + rec(P_ACCESS20, z, arp(A), POLL | 0x10)
    # The vxlan port: records into it are VXLAN datagrams.  Decapsulate,
    # learn at the VTEP, answer by unicast encapsulation; floods into the
    # overlay; every decapsulation drop reason; a super-frame to encapsulate.
    def vxh(vni: int, flags: int = 0x08) -> bytes:
        return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\0"
    s["vxlan_learn_and_answer"] = (rec(P_VXLAN, z, vxh(5010) + arp(C))
                                   + rec(P_ACCESS10_MRG, z,
                                         bytes(Ether(src=A, dst=C) / IP() / UDP())))
    s["vxlan_flood_in"] = rec(P_TRUNK, z, arp(A, vid=20)) + rec(P_ACCESS10_MRG, z, arp(B))
    s["vxlan_bad"] = (rec(P_VXLAN, z, vxh(5010)[:5]) + rec(P_VXLAN, z, vxh(5010, 0) + arp(C))
                      + rec(P_VXLAN, z, vxh(5010, 0x0c) + arp(C))
                      + rec(P_VXLAN, z, vxh(4242) + arp(C)))
    h, f = tcp_super(*v4(dst=BCAST), mss=1348, payload=6000)
    s["vxlan_gso_out"] = rec(P_ACCESS10_MRG, h, f)
    # A run of one flow's segments in one burst: merged (vs_vxlan_gro.c).
    segs = [bytes(Ether(src=C, dst=A) / IP(src="10.0.0.3", dst="10.0.0.1")
                  / TCP(sport=1, dport=2, seq=1000 + 700 * i, flags="A") / Raw(bytes([i]) * 700))
            for i in range(4)]
    s["vxlan_gro_run"] = (rec(P_ACCESS10_MRG, z, arp(A))
                          + b"".join(rec(P_VXLAN, z, vxh(5010) + seg, 0) for seg in segs)
                          + rec(P_VXLAN, z, vxh(5010) + segs[0]))
    return s


def write(kind: str, seeds: dict[str, bytes]) -> None:
    d = HERE / "corpus" / kind
    d.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(seeds.items()):
        # Seed names say what they are; merged entries are libFuzzer's hashes.
        (d / f"seed_{name}").write_bytes(data)
    print(f"{d.relative_to(HERE)}: {len(seeds)} seeds, "
          f"{hashlib.sha1(b''.join(seeds.values())).hexdigest()[:12]}")


if __name__ == "__main__":
    write("gso", gso_seeds())
    write("pipeline", pipeline_seeds())
