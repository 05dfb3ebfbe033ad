"""Capture in the workers: cBPF filters from libpcap run by the C
interpreter, rx/tx/drop taps, bounded rings that drop (and count) rather
than slow forwarding, and pcapng that tcpdump reads."""

from __future__ import annotations

import ctypes
import random
import shutil
import struct
import subprocess

import pytest

from tests.frames import BROADCAST, eth, mac
from tests.unit.harness import Harness
from vswitchd import pcapfilter, pcapng
from vswitchd.fastpath_observe import CAP_DROPS, CAP_RX, CAP_TX, Capture, bpf_run


def ipv4(proto: int, src: str = "10.0.0.1", dst: str = "10.0.0.2", l4: bytes = b"") -> bytes:
    l4 = l4 or b"\x08\x00" + b"\x00" * 6
    s, d = (bytes(int(x) for x in a.split(".")) for a in (src, dst))
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, s, d) + l4


ICMP = ipv4(1)
UDP = ipv4(17, l4=struct.pack("!HHHH", 1000, 53, 8, 0))


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def _publish(h: Harness, *caps: Capture) -> None:
    h.switch.publish([p.params for p in h.ports.values()], captures=list(caps))


def test_filter_runs_in_the_fast_path_and_keeps_only_matching_frames(h):
    h.add(0, mode="access", access_vlan=10)
    h.add(1, mode="access", access_vlan=10)
    cap = Capture(h.switch, 0, CAP_RX | CAP_TX, 0, pcapfilter.compile_filter("icmp"))
    _publish(h, cap)
    sent = [eth(BROADCAST, mac(1), payload=ICMP), eth(BROADCAST, mac(1), payload=UDP),
            eth(mac(1), mac(2), payload=ICMP)]
    h.inject(0, sent[0])
    h.inject(0, sent[1])
    h.inject(1, sent[2])
    got = cap.read()
    assert [(f.direction, f.data, f.wire_len) for f in got] == [
        ("rx", sent[0], len(sent[0])), ("tx", sent[2], len(sent[2]))]
    assert cap.stats().captured == 2 and cap.stats().filtered == 1
    _publish(h)
    cap.free()


def test_tx_capture_shows_the_frame_tagged_as_it_leaves(h):
    h.add(0, mode="access", access_vlan=10)
    h.add(1, mode="trunk", allowed=((1, 100),))
    cap = Capture(h.switch, 1, CAP_TX, 0)
    _publish(h, cap)
    h.inject(0, eth(BROADCAST, mac(1), payload=ICMP))
    (f,) = cap.read()
    assert f.data == eth(BROADCAST, mac(1), vid=10, payload=ICMP)
    _publish(h)
    cap.free()


def test_drops_are_captured_with_their_reason(h):
    h.add(0, mode="trunk", allowed=((1, 5),))
    h.add(1, mode="trunk", allowed=((1, 5),))
    cap = Capture(h.switch, 0, CAP_DROPS, 64)
    _publish(h, cap)
    bad = eth(BROADCAST, mac(1), vid=99, payload=ICMP)
    h.inject(0, bad)
    h.inject(0, eth(BROADCAST, mac(1), vid=5, payload=ICMP))
    (f,) = cap.read()
    assert (f.direction, f.reason, f.data) == ("drop", "vlan_not_allowed", bad[:64])
    _publish(h)
    cap.free()


def test_a_full_ring_drops_copies_and_counts_them_never_the_frames(h):
    h.add(0, mode="access", access_vlan=10)
    h.add(1, mode="access", access_vlan=10)
    cap = Capture(h.switch, 0, CAP_RX, 0)
    _publish(h, cap)
    big = eth(BROADCAST, mac(1), payload=b"\x45" + b"\x00" * 1485)
    n = 0
    for _ in range(15):             # 15 x 64 frames of 1.5 KB: more than a 1 MiB ring
        for _ in range(64):
            h.ports[0].send(big)
        h.run()
        n += len(h.ports[1].received())
    assert n == 15 * 64
    s = cap.stats()
    assert s.dropped > 0 and s.captured + s.dropped == 15 * 64
    assert len(cap.read()) == s.captured
    _publish(h)
    cap.free()


def test_a_filter_that_does_not_compile_is_refused_with_libpcaps_message():
    with pytest.raises(Exception, match="--filter: can't parse filter expression: syntax error"):
        pcapfilter.compile_filter("icmp and and")


class _Hdr(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long), ("caplen", ctypes.c_uint32),
                ("len", ctypes.c_uint32)]


def test_c_interpreter_agrees_with_libpcap_on_random_frames():
    lib = pcapfilter._libpcap()
    lib.pcap_offline_filter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p]
    rng = random.Random(3)
    filters = ["icmp", "udp port 53", "vlan 10 and icmp", "ether host 02:00:00:00:00:01",
               "ip src 10.0.0.1 and not tcp", "ether broadcast", "len > 100", "ip[8] = 64",
               "tcp[tcpflags] & tcp-syn != 0", "arp or (vlan and ip)"]
    for expr in filters:
        prog = pcapfilter.compile_filter(expr)
        c_prog = pcapfilter._BpfProgram(len(prog), (pcapfilter._BpfInsn * len(prog))(*prog))
        for _ in range(100):
            l3 = rng.choice([ICMP, UDP, ipv4(6, l4=bytes(rng.randrange(256) for _ in range(20))),
                             bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))])
            frame = eth(rng.choice([BROADCAST, mac(1), mac(2)]), rng.choice([mac(1), mac(3)]),
                        vid=rng.choice([None, 10, 20]),
                        ethertype=rng.choice([0x0800, 0x0806, 0x86DD]), payload=l3)
            hdr = _Hdr(0, 0, len(frame), len(frame))
            want = lib.pcap_offline_filter(ctypes.byref(c_prog), ctypes.byref(hdr), frame)
            assert (bpf_run(prog, frame) != 0) == (want != 0), (expr, frame.hex())


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_pcapng_blocks_are_read_by_tcpdump(tmp_path):
    frame = eth(mac(2), mac(1), payload=ICMP)
    path = tmp_path / "x.pcapng"
    path.write_bytes(pcapng.section_header() + pcapng.interface_description("vm1", 262144)
                     + pcapng.enhanced_packet(0, 1_700_000_000_123_456_789, frame, len(frame),
                                              pcapng.INBOUND, "dropped: vlan_not_allowed")
                     + pcapng.interface_statistics(0, 1_700_000_001_000_000_000, 1, 0, 1))
    r = subprocess.run(["tcpdump", "-n", "-tt", "--nano", "-r", str(path)], capture_output=True,
                       text=True, check=True)
    assert "1700000000.123456789" in r.stdout and "10.0.0.1 > 10.0.0.2: ICMP" in r.stdout


def test_a_frame_refused_on_arrival_is_captured_once(h):
    h.add(0, mode="trunk", allowed=((1, 5),))
    h.add(1, mode="trunk", allowed=((1, 5),))
    both = Capture(h.switch, 0, CAP_RX | CAP_DROPS, 0)
    rx_only = Capture(h.switch, 0, CAP_RX, 0)
    _publish(h, both, rx_only)
    bad = eth(BROADCAST, mac(1), vid=99, payload=ICMP)
    good = eth(BROADCAST, mac(1), vid=5, payload=ICMP)
    h.inject(0, bad)
    h.inject(0, good)
    assert [(f.direction, f.reason, f.data) for f in both.read()] == [
        ("drop", "vlan_not_allowed", bad), ("rx", None, good)]
    assert [(f.direction, f.reason) for f in rx_only.read()] == [("rx", None), ("rx", None)]
    _publish(h)
    both.free()
    rx_only.free()
