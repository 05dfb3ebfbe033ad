"""Live capture end to end: `vswitchctl capture` on a running daemon, read
back by `tcpdump -r`; drops with their reason; a client that vanishes ends
its capture.  Issue 11's acceptance."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.daemon_fixture import ROOT, RunningDaemon
from tests.e2e.nsnet import addr, mac_of, ping, ping_loss, run, send_frames
from tests.frames import BROADCAST, eth

Factory = Callable[..., RunningDaemon]


def tap(ns: str, **kw) -> dict:
    return {"type": "tap", "ifname": f"vt{ns[-8:]}", "netns": ns, **kw}


def ifn(ns: str) -> str:
    return f"vt{ns[-8:]}"


def start_capture(d: RunningDaemon, *args: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    started = d.log().count("capture on ")
    proc = subprocess.Popen([sys.executable, "-m", "vswitchd.cli", "--socket", d.socket,
                             "capture", *args], cwd=ROOT, stdout=stdout,
                            stderr=subprocess.PIPE)
    d.wait_log("capture on ", count=started + 1)
    return proc


def pcapng_comments(data: bytes) -> list[str | None]:
    """The opt_comment of every enhanced packet block (None when absent)."""
    out: list[str | None] = []
    off = 0
    while off + 12 <= len(data):
        kind, total = struct.unpack_from("<II", data, off)
        if kind == 6:
            caplen = struct.unpack_from("<I", data, off + 20)[0]
            opt = off + 28 + caplen + (-caplen % 4)
            comment = None
            while opt < off + total - 4:
                code, length = struct.unpack_from("<HH", data, opt)
                if code == 0:
                    break
                if code == 1:
                    comment = data[opt + 4:opt + 4 + length].decode()
                opt += 4 + length + (-length % 4)
            out.append(comment)
        off += total
    return out


def test_capture_with_icmp_filter_writes_exactly_the_icmp_frames_both_ways(
        daemon: Factory, netns, tmp_path: Path) -> None:
    a, b = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, vlan=10)})
    d.wait_ports_up("vm1", "vm2")
    addr(a, ifn(a), "10.79.0.1/24")
    addr(b, ifn(b), "10.79.0.2/24")
    assert ping_loss(ping(a, "10.79.0.2", count=1).stdout) == 0     # ARP settled
    out = tmp_path / "vm1.pcapng"
    cap = start_capture(d, "vm1", "--filter", "icmp", "-c", "20", "-w", str(out))

    # Other traffic on the same port meanwhile: raw frames and UDP datagrams
    # (to a MAC nobody has, so no host answers them, with ICMP least of all).
    stop = threading.Event()
    udp = bytes.fromhex("450000210001000040110000" "0a4f0001" "0a4f0002"
                        "d43100090008" "0000") + b"x"

    def noise() -> None:
        src = bytes.fromhex(mac_of(a, ifn(a)).replace(":", ""))
        while not stop.is_set():
            send_frames(a, ifn(a), [eth(BROADCAST, src, ethertype=0x88B5,
                                        payload=b"noise".ljust(46, b"."))] * 5
                        + [eth(bytes.fromhex("02000000ee01"), src, payload=udp.ljust(46, b"\0"))])
            time.sleep(0.02)

    t = threading.Thread(target=noise, name="noise")
    t.start()
    try:
        r = ping(a, "10.79.0.2", count=10, interval=0.05)
    finally:
        stop.set()
        t.join()
    assert ping_loss(r.stdout) == 0, r.stdout
    _, err = cap.communicate(timeout=30)
    assert cap.returncode == 0, err
    assert b"20 frames captured, 0 dropped" in err
    assert b", 0 filtered out" not in err, err       # the noise reached the filter

    r2 = subprocess.run(["tcpdump", "-n", "-r", str(out)], capture_output=True, text=True,
                        check=True)
    lines = r2.stdout.splitlines()
    assert len(lines) == 20, lines
    assert sum("10.79.0.1 > 10.79.0.2: ICMP echo request" in x for x in lines) == 10
    assert sum("10.79.0.2 > 10.79.0.1: ICMP echo reply" in x for x in lines) == 10
    assert d.ctl("show")["ports"][0]["drops"] == 0


def test_capture_drops_shows_frames_of_a_vlan_the_trunk_refuses_with_the_reason(
        daemon: Factory, netns, tmp_path: Path) -> None:
    t, b = netns(), netns()
    d = daemon({"t": tap(t, mode="trunk", vlans="1-50"), "vm2": tap(b, vlan=10)})
    d.wait_ports_up("t", "vm2")
    # The host's own untagged chatter (IPv6 autoconfiguration) is dropped
    # too, as untagged_no_native: keep it out of the count.
    run(t, "sysctl", "-qw", f"net.ipv6.conf.{ifn(t)}.disable_ipv6=1")
    run(t, "ip", "link", "set", ifn(t), "up")
    cap = start_capture(d, "t", "--direction", "tx", "--drops", "--filter", "vlan 99",
                        "-c", "3", "-w", "-")
    src = bytes.fromhex("02000000bb01")
    send_frames(t, ifn(t), [eth(BROADCAST, src, vid=99, ethertype=0x88B5,
                                payload=b"refused".ljust(46, b"."))] * 3)
    data, err = cap.communicate(timeout=30)
    assert cap.returncode == 0, err
    assert pcapng_comments(data) == ["dropped: vlan_not_allowed"] * 3
    r = subprocess.run(["tcpdump", "-n", "-e", "-r", "-"], input=data, capture_output=True,
                       check=True)
    assert r.stdout.decode().count("vlan 99") == 3


def test_capture_to_stdout_pipes_into_tcpdump_and_ends_when_the_client_goes(
        daemon: Factory, netns) -> None:
    a, b = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, vlan=10)})
    d.wait_ports_up("vm1", "vm2")
    addr(a, ifn(a), "10.79.1.1/24")
    addr(b, ifn(b), "10.79.1.2/24")
    # Only the pings: the namespaces' own IPv6 and ARP chatter is filtered
    # out in the workers, so the first lines tcpdump prints are ICMP.
    cap = start_capture(d, "vm1", "--filter", "icmp", "-w", "-")
    dump = subprocess.Popen(["tcpdump", "-n", "-l", "-r", "-"], stdin=cap.stdout,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert cap.stdout is not None and dump.stdout is not None
    cap.stdout.close()
    assert ping_loss(ping(a, "10.79.1.2", count=2, interval=0.1).stdout) == 0
    seen = [dump.stdout.readline() for _ in range(2)]
    assert all("10.79.1." in line for line in seen), seen
    # Killing the client ends the capture in the daemon, which keeps forwarding.
    cap.kill()
    cap.wait()
    dump.kill()
    dump.wait()
    d.wait_log("capture on vm1 ended")
    assert ping_loss(ping(a, "10.79.1.2", count=2, interval=0.1).stdout) == 0


def test_capture_of_an_unknown_port_or_a_bad_filter_is_one_clear_line(daemon: Factory,
                                                                     netns) -> None:
    a = netns()
    d = daemon({"vm1": tap(a, vlan=10)})
    r = d.ctl_raw("capture", "nope", "-w", "-")
    assert r.returncode == 1 and r.stderr == "vswitchctl: ports.nope: no such port\n"
    r = d.ctl_raw("capture", "vm1", "--filter", "icmp and and", "-w", "-")
    assert r.returncode == 1
    assert r.stderr == "vswitchctl: --filter: can't parse filter expression: syntax error\n"


def test_a_capture_client_that_never_reads_costs_copies_not_frames(daemon: Factory,
                                                                  netns) -> None:
    import socket as socketlib

    from vswitchd.protocol import Request, encode_request

    a, b = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, vlan=10)})
    d.wait_ports_up("vm1", "vm2")
    for ns in (a, b):
        run(ns, "sysctl", "-qw", f"net.ipv6.conf.{ifn(ns)}.disable_ipv6=1")
        run(ns, "ip", "link", "set", ifn(ns), "up")
    stalled = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    stalled.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
    stalled.connect(d.socket)
    stalled.sendall(encode_request(Request(1, "capture", {"port": "vm1"})))
    d.wait_log("capture on vm1 started")
    src = bytes.fromhex(mac_of(a, ifn(a)).replace(":", ""))
    frames = [eth(BROADCAST, src, ethertype=0x88B5, payload=b"x" * 1400)] * 100
    for _ in range(40):                     # 4000 frames of 1.4 KB: 5.6 MB, rings of 1 MiB
        send_frames(a, ifn(a), frames)
        time.sleep(0.005)
    time.sleep(0.5)
    vm1, vm2 = (d.port(n) for n in ("vm1", "vm2"))     # the daemon still answers
    assert vm1["rx_packets"] >= 2000, vm1
    assert vm1["drops"] == 0 and vm2["tx_packets"] >= vm1["rx_packets"], (vm1, vm2)
    stalled.close()
    d.wait_log("capture on vm1 ended")
    ended = [line for line in d.log().splitlines() if "capture on vm1 ended" in line][-1]
    dropped = int(ended.split(" frames written, ")[1].split(" dropped")[0])
    assert dropped > 0, ended


def test_the_daemon_stops_cleanly_under_a_stalled_capture_client(daemon: Factory,
                                                                 netns) -> None:
    import socket as socketlib

    from vswitchd.protocol import Request, encode_request

    a, b = netns(), netns()
    d = daemon({"vm1": tap(a, vlan=10), "vm2": tap(b, vlan=10)})
    d.wait_ports_up("vm1", "vm2")
    stalled = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    stalled.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_RCVBUF, 4096)
    stalled.connect(d.socket)
    stalled.sendall(encode_request(Request(1, "capture", {"port": "vm1"})))
    d.wait_log("capture on vm1 started")
    src = bytes.fromhex(mac_of(a, ifn(a)).replace(":", ""))
    for _ in range(20):
        send_frames(a, ifn(a), [eth(BROADCAST, src, ethertype=0x88B5, payload=b"y" * 1400)] * 50)
    t0 = time.monotonic()
    try:
        assert d.stop() == 0, d.log()
    finally:
        stalled.close()
    assert time.monotonic() - t0 < 10
