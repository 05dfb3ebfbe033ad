"""The vxlan port kind in the real C pipeline, without root.

The VTEP's rx socket is a UDP socket on 127.0.0.1; the "remote VTEP" is a
UDP socket of the test on 127.0.0.1 too.  In place of the raw socket the
daemon sends with, the VTEP gets a plain UDP socket: the datagrams then
arrive at the remote VTEP with the outer UDP header the fast path wrote as
the first 8 bytes of their payload, which is what we want to check.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import replace

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from tests.unit.harness import Harness
from tests.unit.test_forwarding_offloads import super_frame, vnet_bytes
from vswitchd import fastpath
from vswitchd.fastpath import PortParams

VX = 9          # the vxlan port's id
VMAC = "02:00:00:00:00:0a"     # a VM on port 0 (VLAN 10)
RMAC = "02:00:00:00:00:0b"     # a VM behind the remote VTEP


class VxlanHarness(Harness):
    def __init__(self, learning: bool = True, mtu: int = 1450) -> None:
        super().__init__()
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.setblocking(False)
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.remote = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # the other VTEP
        self.remote.bind(("127.0.0.1", 0))
        self.remote.setblocking(False)
        self.vx = fastpath.Vxlan(local_ip="127.0.0.1", dstport=self.remote.getsockname()[1],
                                 src_ports=(32768, 61000), learning=learning,
                                 tx_fd=self.tx.fileno(), vlan_vni={10: 5010, 20: 5020})
        self.vtep = self.vx.add_vtep("127.0.0.1", flood=True)
        self.vx_params = PortParams(id=VX, fds=(self.rx.fileno(),), kind="vxlan", mode="trunk",
                                    allowed=((10, 10), (20, 20)), mtu=mtu, vxlan=self.vx)
        self.add(0, mode="access", access_vlan=10)
        self.add(1, mode="access", access_vlan=20)

    def use_udp_pool(self, n: int = 4) -> list[int]:
        """Re-creates the VTEP with a UDP send pool of ``n`` sockets on
        127.0.0.1; returns their ports."""
        self.pool = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
        for s in self.pool:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in self.pool]
        old = self.vx
        self.vx = fastpath.Vxlan(local_ip="127.0.0.1", dstport=self.remote.getsockname()[1],
                                 src_ports=(1, 65535), learning=True, tx_fd=self.tx.fileno(),
                                 vlan_vni={10: 5010, 20: 5020},
                                 udp_pool=[(s.fileno(), s.getsockname()[1]) for s in self.pool])
        self.vtep = self.vx.add_vtep("127.0.0.1", flood=True)
        self.vx_params = replace(self.vx_params, vxlan=self.vx)
        self.publish()
        old.free()
        return ports

    def publish(self) -> None:
        params = [p.params for p in self.ports.values()]
        if hasattr(self, "vx_params"):
            params.append(self.vx_params)
        self.switch.publish(params)

    def from_overlay(self, payload: bytes) -> dict[int, list[bytes]]:
        self.remote.sendto(payload, self.rx.getsockname())
        self.run()
        return {pid: p.received() for pid, p in self.ports.items()}

    def overlay_received(self, with_source: bool = False) -> list:
        out = []
        while True:
            try:
                data, src = self.remote.recvfrom(70000)
            except BlockingIOError:
                return out
            out.append((data, src[1]) if with_source else data)

    def close(self) -> None:
        super().close()
        self.vx.free()
        for s in (self.rx, self.tx, self.remote, *getattr(self, "pool", ())):
            s.close()


@pytest.fixture
def h():
    harness = VxlanHarness()
    yield harness
    harness.close()


def vxlan_hdr(vni: int, flags: int = 0x08, reserved: bytes = b"\0\0\0", last: int = 0) -> bytes:
    return bytes([flags]) + reserved + vni.to_bytes(3, "big") + bytes([last])


def frame(src: str = VMAC, dst: str = "ff:ff:ff:ff:ff:ff", sport: int = 1000,
          size: int = 0) -> bytes:
    pkt = Ether(src=src, dst=dst) / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport,
                                                                            dport=7)
    return bytes(pkt / (b"x" * size))


def test_broadcast_from_a_vm_is_encapsulated_with_its_vlans_vni_to_each_peer(h):
    f = frame()
    h.inject(0, f)
    got = h.overlay_received()
    assert len(got) == 1
    udp, vx, inner = got[0][:8], got[0][8:16], got[0][16:]
    sport, dport, length, csum = struct.unpack("!HHHH", udp)
    assert 32768 <= sport <= 61000
    assert dport == h.remote.getsockname()[1]
    assert length == len(got[0]) and csum == 0
    assert vx == vxlan_hdr(5010)
    assert inner == f                                   # untagged, byte for byte
    assert h.vx.vteps()[0].counters["tx_packets"] == 1


def test_a_tagged_frame_from_a_trunk_is_sent_untagged_in_its_vni(h):
    h.add(2, mode="trunk", allowed=((1, 100),))
    f = Ether(src="02:00:00:00:00:0c", dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=20) / IP() / UDP()
    h.inject(2, bytes(f))
    (got,) = h.overlay_received()
    assert got[8:16] == vxlan_hdr(5020)
    assert Dot1Q not in Ether(got[16:])


def test_decapsulated_frame_is_delivered_in_its_vlan_and_its_mac_learned_at_the_vtep(h):
    f = frame(src=RMAC)
    got = h.from_overlay(vxlan_hdr(5010) + f)
    assert got[0] == [f] and got[1] == []               # VLAN 10 only, untagged
    entries = [e for e in h.switch.macs.dump() if e.mac == RMAC]
    assert [(e.vlan, fastpath.mac_port(e.port), fastpath.mac_vtep(e.port))
            for e in entries] == [(10, VX, h.vtep)]
    assert h.vx.vteps()[0].counters["rx_packets"] == 1
    # Known now: a unicast to it goes to that VTEP only, not flooded.
    h.inject(0, frame(dst=RMAC))
    assert len(h.overlay_received()) == 1
    assert h.counters(0)["flooded"] == 0


def test_a_frame_from_the_overlay_is_never_sent_back_into_it(h):
    h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))    # broadcast: floods locally only
    assert h.overlay_received() == []
    # A unicast from the overlay to a MAC behind the overlay: split horizon.
    h.from_overlay(vxlan_hdr(5010) + frame(src="02:00:00:00:00:0d"))
    h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC, dst="02:00:00:00:00:0d"))
    assert h.overlay_received() == []
    assert h.counters(VX)["same_port"] == 1


@pytest.mark.parametrize("payload, reason", [
    (vxlan_hdr(5010)[:6], "vxlan_short"),
    (vxlan_hdr(5010) + b"\0" * 13, "vxlan_short"),
    (vxlan_hdr(5010, flags=0) + frame(src=RMAC), "vxlan_no_vni_flag"),
    (vxlan_hdr(5010, flags=0x0c) + frame(src=RMAC), "vxlan_reserved"),
    (vxlan_hdr(5010, reserved=b"\0\1\0") + frame(src=RMAC), "vxlan_reserved"),
    (vxlan_hdr(5010, last=1) + frame(src=RMAC), "vxlan_reserved"),
    (vxlan_hdr(7777) + frame(src=RMAC), "vxlan_unknown_vni"),
])
def test_malformed_vxlan_is_dropped_and_counted_by_reason(h, payload, reason):
    got = h.from_overlay(payload)
    assert got[0] == [] and got[1] == []
    c = h.counters(VX)
    assert c[reason] == 1 and c["rx_packets"] == 1
    assert sum(c[r] for r in fastpath.DROP_REASONS) == 1
    # The switch keeps forwarding.
    assert h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))[0] != []


def test_without_learning_a_vtep_outside_the_flood_list_is_dropped():
    h = VxlanHarness(learning=False)
    try:
        h.vx.set_flood(h.vtep, False)
        assert h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))[0] == []
        assert h.counters(VX)["vxlan_unknown_vtep"] == 1
        h.vx.set_flood(h.vtep, True)
        assert h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))[0] != []
        assert not [e for e in h.switch.macs.dump() if e.mac == RMAC]     # not learned
    finally:
        h.close()


def test_outer_source_port_follows_the_inner_flow(h):
    ports = []
    for sport in (1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1000):
        h.inject(0, frame(sport=sport))
        (got,) = h.overlay_received()
        ports.append(struct.unpack("!H", got[:2])[0])
    assert ports[0] == ports[-1]                        # same flow, same port
    assert len(set(ports)) >= 4                         # different flows spread


def test_a_frame_that_would_exceed_the_underlay_mtu_is_dropped_as_oversize(h):
    h.inject(0, frame(size=1450 - 28))                  # L3 1450 = 1500 - 50: fits
    assert len(h.overlay_received()) == 1
    h.inject(0, frame(size=1450 - 28 + 1))
    assert h.overlay_received() == []
    assert h.counters(VX)["oversize"] == 1


def test_remote_entries_go_with_the_vxlan_port_flush(h):
    h.inject(0, frame())
    h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))
    assert h.switch.macs.flush(port=VX) == 1
    assert h.switch.macs.lookup(10, VMAC) is not None   # local entries stay
    assert h.switch.macs.flush(port=0) == 1


def test_a_gso_super_frame_is_segmented_and_each_segment_encapsulated():
    h = VxlanHarness(mtu=1400)
    try:
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        sf = super_frame(mss=1348, paylen=5000)          # 20 + 32 + 1348 = 1400
        h.inject(3, sf.raw, vnet_bytes(sf.vh))
        got = h.overlay_received()
        assert len(got) == 4
        data = b""
        for d in got:
            inner = Ether(d[16:])
            assert d[8:16] == vxlan_hdr(5010)
            assert len(inner[IP]) <= 1400
            ip = IP(bytes(inner[IP]))
            sent_sum = ip[TCP].chksum
            del ip[TCP].chksum
            assert IP(bytes(ip))[TCP].chksum == sent_sum      # headers and payload covered
            data += bytes(inner[TCP].payload)
        assert data == bytes(Ether(sf.raw)[TCP].payload)
        assert len({d[:2] for d in got}) == 1           # one flow, one source port
        assert h.counters(VX)["segmented"] == 1
    finally:
        h.close()


def test_super_frame_whose_segments_exceed_the_vxlan_mtu_is_dropped():
    h = VxlanHarness(mtu=1400)
    try:
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        sf = super_frame(mss=1448, paylen=5000)
        h.inject(3, sf.raw, vnet_bytes(sf.vh))
        assert h.overlay_received() == []
        assert h.counters(VX)["oversize"] == 1
    finally:
        h.close()


def test_with_a_udp_pool_a_flow_leaves_from_one_pool_port_and_super_frames_as_udp_gso():
    h = VxlanHarness(mtu=1400)
    try:
        ports = h.use_udp_pool()
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        h.inject(0, frame())
        ((small, sport),) = h.overlay_received(with_source=True)
        assert small[:8] == vxlan_hdr(5010) and small[8:] == frame()   # no UDP header of ours
        assert sport in ports
        sf = super_frame(mss=1348, paylen=5000)
        h.inject(3, sf.raw, vnet_bytes(sf.vh))
        got = h.overlay_received(with_source=True)
        assert len(got) == 4                            # the kernel cut the GSO batch
        assert len({s for _, s in got}) == 1 and got[0][1] in ports
        data = b""
        for d, _ in got:
            assert d[:8] == vxlan_hdr(5010)
            inner = Ether(d[8:])
            assert len(inner[IP]) <= 1400
            ip = IP(bytes(inner[IP]))
            sent_sum = ip[TCP].chksum
            del ip[TCP].chksum
            assert IP(bytes(ip))[TCP].chksum == sent_sum      # headers and payload covered
            data += bytes(inner[TCP].payload)
        assert data == bytes(Ether(sf.raw)[TCP].payload)
        c = h.counters(VX)
        assert c["tx_packets"] == 5 and c["tx_error"] == 0
        assert h.vx.vteps()[0].counters["tx_packets"] == 5
    finally:
        h.close()


def tcp_seg(seq: int, payload: bytes, flags: str = "A", sport: int = 40000) -> bytes:
    return bytes(Ether(src=RMAC, dst=VMAC) / IP(src="10.0.0.2", dst="10.0.0.1", id=seq & 0xffff)
                 / TCP(sport=sport, dport=5201, seq=seq, ack=7, flags=flags, window=500)
                 / payload)


def test_a_burst_of_one_flows_segments_reaches_a_tso_port_as_one_super_frame():
    h = VxlanHarness()
    try:
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        h.inject(3, frame(src=VMAC))                    # VMAC lives on port 3
        payloads = [bytes([i]) * 1000 for i in range(3)] + [b"z" * 300]
        seq = 1000
        for p in payloads:
            h.remote.sendto(vxlan_hdr(5010) + tcp_seg(seq, p), h.rx.getsockname())
            seq += len(p)
        h.run()
        (got,) = h.ports[3].received()
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = struct.unpack(
            "<BBHHHH", got[:10])
        assert (flags, gso_type, gso_size) == (1, 1, 1000)        # NEEDS_CSUM, TCPv4
        assert (csum_start, csum_offset, hdr_len) == (34, 16, 54)
        pkt = Ether(got[12:])
        assert bytes(pkt[TCP].payload) == b"".join(payloads)
        assert pkt[IP].len == 20 + 20 + 3300 and pkt[TCP].seq == 1000
        assert IP(bytes(pkt[IP]))[IP].chksum == pkt[IP].chksum    # a valid IP checksum
    finally:
        h.close()


@pytest.mark.parametrize("breaker", ["gap", "psh_first", "other_flow", "bad_csum"])
def test_segments_that_do_not_continue_a_run_are_left_alone(breaker):
    h = VxlanHarness()
    try:
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        h.inject(3, frame(src=VMAC))
        a = tcp_seg(1000, b"a" * 500, flags="PA" if breaker == "psh_first" else "A")
        b = tcp_seg(1500 + (1 if breaker == "gap" else 0), b"b" * 500,
                    sport=40001 if breaker == "other_flow" else 40000)
        if breaker == "bad_csum":
            b = b[:-1] + b"\x00"
        for seg in (a, b):
            h.remote.sendto(vxlan_hdr(5010) + seg, h.rx.getsockname())
        h.run()
        got = h.ports[3].received()
        assert len(got) == 2
        assert all(g[:10] == bytes(10) for g in got)              # no offload claimed
    finally:
        h.close()


SOL_UDP, UDP_SEGMENT, UDP_GRO = 17, 103, 104


def send_as_one_gso_batch(h: VxlanHarness, datagrams: list[bytes]) -> None:
    """One UDP GSO sendmsg() of equal-sized VXLAN datagrams (the last may
    be shorter), as a peer vswitchd sends a super-frame; with UDP_GRO on
    the VTEP's socket it arrives as one datagram and its segment size."""
    size = len(datagrams[0])
    assert all(len(d) == size for d in datagrams[:-1]) and len(datagrams[-1]) <= size
    h.remote.sendmsg([b"".join(datagrams)], [(SOL_UDP, UDP_SEGMENT, struct.pack("H", size))],
                     0, h.rx.getsockname())


def test_a_udp_gro_datagram_is_split_and_its_tcp_segments_merged_into_one_super_frame():
    h = VxlanHarness()
    try:
        h.rx.setsockopt(SOL_UDP, UDP_GRO, 1)
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        h.inject(3, frame(src=VMAC))
        payloads = [bytes([i]) * 1000 for i in range(40)] + [b"z" * 300]
        segs, seq = [], 1000
        for p in payloads:
            segs.append(vxlan_hdr(5010) + tcp_seg(seq, p))
            seq += len(p)
        send_as_one_gso_batch(h, segs)
        h.run()
        got = h.ports[3].received()
        # 41 segments, more than a burst (32): one run all the same.
        assert len(got) == 1
        data = b"".join(bytes(Ether(g[12:])[TCP].payload) for g in got)
        assert data == b"".join(payloads)
        assert h.vx.vteps()[h.vtep - 1].counters["rx_packets"] == 41
    finally:
        h.close()


def test_more_frames_in_one_gro_datagram_than_a_burst_are_all_delivered_in_order(h):
    h.rx.setsockopt(SOL_UDP, UDP_GRO, 1)
    frames = [frame(src=RMAC, dst=VMAC, sport=1000 + i, size=100) for i in range(50)]
    h.inject(0, frame(src=VMAC))                         # VMAC lives on port 0
    send_as_one_gso_batch(h, [vxlan_hdr(5010) + f for f in frames])
    h.run()
    got = h.ports[0].received()
    assert [Ether(g)[UDP].sport for g in got] == [1000 + i for i in range(50)]


def test_a_stream_over_many_gro_datagrams_is_merged_within_64k_and_arrives_intact():
    h = VxlanHarness()
    try:
        h.rx.setsockopt(SOL_UDP, UDP_GRO, 1)
        h.add(3, mode="access", access_vlan=10, vnet_hdr_len=12, offload_csum=True,
              offload_tso=True)
        h.inject(3, frame(src=VMAC))
        seq, sent, got = 1000, [], []
        for batch in range(4):          # 4 x 44 x 1400 bytes: runs must stop at 64 KB
            if batch == 2:              # two at a time fit a default receive buffer
                h.run()
                got += h.ports[3].received()
            segs = []
            for k in range(44):
                p = bytes([(batch * 44 + k) % 251]) * 1400
                segs.append(vxlan_hdr(5010) + tcp_seg(seq, p))
                sent.append(p)
                seq += len(p)
            send_as_one_gso_batch(h, segs)
        h.run()
        got += h.ports[3].received()
        assert all(len(g) - 12 - 14 <= 65535 for g in got)
        assert len(got) < 20
        data = b"".join(bytes(Ether(g[12:])[TCP].payload) for g in got)
        assert data == b"".join(sent)
    finally:
        h.close()


def test_a_mirror_of_the_vxlan_port_copies_frames_entering_the_overlay_untagged(h):
    from vswitchd.fastpath_observe import MirrorParams
    h.add(2, mode="access", access_vlan=10)             # the mirror's output
    m = MirrorParams(id=0, output_port=2, dst_ports=(VX,))
    h.switch.publish([p.params for p in h.ports.values()] + [h.vx_params], mirrors=[m])
    f = frame(src=VMAC)
    got = h.inject(0, f)
    assert got[2] == [f]
    assert len(h.overlay_received()) == 1
    # From a trunk: tagged on the way in, untagged into the overlay and in the copy.
    h.add(4, mode="trunk", allowed=((10, 10),))
    h.switch.publish([p.params for p in h.ports.values()] + [h.vx_params], mirrors=[m])
    src = "02:00:00:00:00:0c"
    untagged = bytes(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / IP() / UDP())
    got = h.inject(4, bytes(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / Dot1Q(vlan=10) / IP()
                            / UDP()))
    assert got[2] == [untagged]
    assert len(h.overlay_received()) == 1


def test_a_vtep_in_one_vnis_flood_list_gets_only_that_vnis_floods():
    h = VxlanHarness(learning=False)
    try:
        h.vx.set_flood(h.vtep, False)
        h.vx.set_flood_vni(h.vtep, 5010, True)          # an EVPN type-3 route for 5010
        h.inject(0, frame(src=VMAC))                     # VLAN 10 = VNI 5010
        assert len(h.overlay_received()) == 1
        h.inject(1, frame(src="02:00:00:00:00:0c"))      # VLAN 20 = VNI 5020
        assert h.overlay_received() == []
        # Learning off: it may send us VNI 5010's frames, not 5020's.
        assert h.from_overlay(vxlan_hdr(5010) + frame(src=RMAC))[0] != []
        assert h.from_overlay(vxlan_hdr(5020) + frame(src=RMAC))[1] == []
        assert h.counters(VX)["vxlan_unknown_vtep"] == 1
        assert h.vx.vteps()[h.vtep - 1].flood
        h.vx.set_flood_vni(h.vtep, 5010, False)          # the route withdrawn
        h.inject(0, frame(src=VMAC, sport=2))
        assert h.overlay_received() == []
        assert not h.vx.vteps()[h.vtep - 1].flood
        with pytest.raises(fastpath.FastpathError):
            h.vx.set_flood_vni(h.vtep, 7777, True)        # a VNI the port does not carry
    finally:
        h.close()
