"""VXLAN between vswitchd and the Linux kernel, namespaces as hosts (issue 9).

Topology, every name unique per test and removed with its namespace:

    vm_a ── TAP ── [host A: vswitchd, port vx0] ══ veth underlay ══
        [host B: kernel vxlan (VNI 5010, dstport 4789) + Linux bridge] ── veth ── vm_b

Host A's daemon runs inside its namespace; the underlay is 198.18.0.0/24
(the benchmarking range, RFC 2544) between host A (.1) and host B (.2),
and the VMs share 10.50.0.0/24 in VLAN 10 = VNI 5010.  Host B floods to A
through an all-zero fdb entry (the kernel's static flood list) and learns
A's VM from traffic; vswitchd floods to B as its static `peers`.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, mac_of, ping, ping_loss, run

Factory = Callable[..., RunningDaemon]
A_IP, B_IP = "198.18.0.1", "198.18.0.2"
A_IP6, B_IP6 = "2001:db8:ff::1", "2001:db8:ff::2"     # documentation prefix
VM_A, VM_B = "10.50.0.1", "10.50.0.2"


@dataclass
class Hosts:
    host_a: str
    host_b: str
    vm_a: str
    vm_b: str
    underlay_b: str         # host B's end of the underlay
    vm_a_if: str
    vm_b_if: str


def two_hosts(netns: Callable[[], str], vm_b_mtu: int = 1450, v6: bool = False) -> Hosts:
    host_a, host_b, vm_a, vm_b = netns(), netns(), netns(), netns()
    ua, ub = f"vu{host_a[-8:]}", f"vu{host_b[-8:]}"
    sh("ip", "link", "add", ua, "netns", host_a, "type", "veth", "peer", "name", ub,
       "netns", host_b)
    a_ip, b_ip = (A_IP6, B_IP6) if v6 else (A_IP, B_IP)
    for ns, dev, ip in ((host_a, ua, a_ip), (host_b, ub, b_ip)):
        if v6:      # nodad: usable at once, not after duplicate detection
            run(ns, "ip", "addr", "add", f"{ip}/64", "dev", dev, "nodad")
            run(ns, "ip", "link", "set", dev, "up")
            run(ns, "ip", "link", "set", "lo", "up")
        else:
            addr(ns, dev, f"{ip}/24")
    # The veth trap, VXLAN edition: a kernel VTEP sending over a veth with
    # checksum offload leaves the inner TCP/UDP checksum partial (veth
    # hands CHECKSUM_PARTIAL to its peer), and a UDP socket cannot tell
    # userspace so.  A real NIC computes it; here the kernel must.
    run(host_b, "ethtool", "-K", ub, "tx", "off")
    # Host B: the in-kernel VTEP, flood-and-learn.
    br, vx, vb, vm_b_if = f"br{host_b[-8:]}", f"vx{host_b[-8:]}", f"vb{host_b[-8:]}", \
        f"ve{vm_b[-8:]}"
    run(host_b, "ip", "link", "add", br, "type", "bridge")
    run(host_b, "ip", "link", "add", vx, "type", "vxlan", "id", "5010", "local", b_ip,
        "dstport", "4789")
    run(host_b, "ip", "link", "set", vx, "mtu", str(vm_b_mtu))
    run(host_b, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", a_ip)
    sh("ip", "link", "add", vb, "netns", host_b, "type", "veth", "peer", "name", vm_b_if,
       "netns", vm_b)
    for dev in (vx, vb):
        run(host_b, "ip", "link", "set", dev, "master", br, "up")
    run(host_b, "ip", "link", "set", br, "up")
    run(vm_b, "ip", "link", "set", vm_b_if, "mtu", str(vm_b_mtu))
    addr(vm_b, vm_b_if, f"{VM_B}/24")
    return Hosts(host_a, host_b, vm_a, vm_b, ub, f"vt{vm_a[-8:]}", vm_b_if)


def start_host_a(daemon: Factory, h: Hosts, vm_mtu: int = 1450, v6: bool = False,
                 **vx: object) -> RunningDaemon:
    ports = {
        "vm0": {"type": "tap", "ifname": h.vm_a_if, "netns": h.vm_a, "vlan": 10},
        "vx0": {"type": "vxlan", "local_ip": A_IP6 if v6 else A_IP, "vni_map": {"10": 5010},
                "peers": [B_IP6 if v6 else B_IP], **vx},
    }
    d = daemon(ports, netns=h.host_a)
    d.wait_ports_up("vm0", "vx0")
    run(h.vm_a, "ip", "link", "set", h.vm_a_if, "mtu", str(vm_mtu))
    addr(h.vm_a, h.vm_a_if, f"{VM_A}/24")
    return d


def drops(d: RunningDaemon, port: str) -> dict[str, int]:
    (row,) = d.ctl("stats", "--port", port)["ports"]
    return row["drops"]


def wait_ping(ns: str, dst: str, timeout_s: float = 10.0) -> None:
    """Until one ping answers: ARP across the overlay and first learning."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ping_loss(ping(ns, dst, count=1, deadline=1).stdout) == 0:
            return
    raise AssertionError(f"{dst} unreachable from {ns}")


VXLAN_LINE = re.compile(
    r"IP (\S+)\.(\d+) > (\S+)\.(\d+): VXLAN, flags \[I\] \(0x08\), vni (\d+)\s+"
    r"IP 10\.50\.0\.1\.(\d+) > 10\.50\.0\.2\.5201:")


def test_kernel_vtep_interop_flood_and_learn(daemon: Factory, netns, tmp_path: Path) -> None:
    h = two_hosts(netns)
    d = start_host_a(daemon, h)
    wait_ping(h.vm_a, VM_B)
    r = ping(h.vm_a, VM_B, count=10, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout

    # A's fdb has B's VM behind B's VTEP; B's kernel learned A's VM at A.
    b_mac = mac_of(h.vm_b, h.vm_b_if)
    fdb = d.ctl("fdb", "show", "--vlan", "10")
    assert {"mac": b_mac, "port": "vx0", "vtep": B_IP} in [
        {k: e[k] for k in ("mac", "port", "vtep")} for e in fdb], fdb
    text = d.ctl_raw("fdb", "show").stdout
    assert re.search(rf"vx0\s+10\s+{b_mac}\s+\d+\s+{re.escape(B_IP)}", text), text
    a_mac = mac_of(h.vm_a, h.vm_a_if)
    kernel_fdb = run(h.host_b, "bridge", "fdb", "show").stdout
    assert re.search(rf"{a_mac} dev vx\S+ dst {re.escape(A_IP)}", kernel_fdb), kernel_fdb

    # TCP across the overlay while the underlay is captured on host B.
    pcap = tmp_path / "underlay.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", h.host_b, "tcpdump", "-i", h.underlay_b,
                             "-nn", "-s", "160", "-c", "3000", "-w", str(pcap),
                             "udp", "and", "src", "host", A_IP],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = subprocess.Popen(["ip", "netns", "exec", h.vm_b, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.8)     # tcpdump and the server listening
        client = run(h.vm_a, "iperf3", "-c", VM_B, "-t", "2", "-P", "4", "-J", check=False,
                     timeout=30)
        assert client.returncode == 0, client.stdout + client.stderr
        assert '"bits_per_second"' in client.stdout
    finally:
        server.kill()
        server.wait()
        time.sleep(0.3)
        dump.send_signal(signal.SIGINT)
        try:
            dump.wait(10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    text = sh("tcpdump", "-r", str(pcap), "-nn").stdout
    flows: dict[int, set[int]] = {}
    for src, sport, dst, dport, vni, inner_sport in VXLAN_LINE.findall(text):
        assert (src, dst, dport, vni) == (A_IP, B_IP, "4789", "5010")
        flows.setdefault(int(inner_sport), set()).add(int(sport))
    assert len(flows) >= 5, text[:2000]                  # iperf3's control + 4 streams
    assert all(len(s) == 1 for s in flows.values())     # a flow keeps its source port
    outer = set().union(*flows.values())
    assert len(outer) >= 2 and all(32768 <= p <= 61000 for p in outer), flows
    show = d.ctl("vxlan", "show")
    (vtep,) = show[0]["vteps"]
    assert vtep["address"] == B_IP and vtep["tx_packets"] > 0 and vtep["rx_packets"] > 0


def test_df_ping_that_fits_the_underlay_passes_and_one_byte_more_is_dropped(
        daemon: Factory, netns) -> None:
    h = two_hosts(netns)
    # VM A is given the underlay's MTU, not 1500 - 50: the switch must drop.
    d = start_host_a(daemon, h, vm_mtu=1500)
    wait_ping(h.vm_a, VM_B)
    fits = run(h.vm_a, "ping", "-n", "-q", "-M", "do", "-s", "1422", "-c", "3", "-i", "0.1",
               "-W", "1", VM_B, check=False, timeout=20)
    assert ping_loss(fits.stdout) == 0, fits.stdout
    before = drops(d, "vx0")["oversize"]
    big = run(h.vm_a, "ping", "-n", "-q", "-M", "do", "-s", "1423", "-c", "3", "-i", "0.1",
              "-W", "1", VM_B, check=False, timeout=20)
    assert ping_loss(big.stdout) == 100, big.stdout
    assert drops(d, "vx0")["oversize"] - before == 3
    assert d.ctl("vxlan", "show")[0]["mtu"] == 1450


MALFORMED = {
    "vxlan_short": "bytes([8, 0, 0, 0, 0, 0x13, 0x92, 0]) + bytes(5)",
    "vxlan_no_vni_flag": "bytes([0, 0, 0, 0, 0, 0x13, 0x92, 0]) + bytes(60)",
    "vxlan_reserved": "bytes([0x88, 0, 0, 0, 0, 0x13, 0x92, 0]) + bytes(60)",
    "vxlan_unknown_vni": "bytes([8, 0, 0, 0, 0, 0x1f, 0x40, 0]) + bytes(60)",
}


def test_malformed_vxlan_is_counted_by_reason_and_forwarding_goes_on(
        daemon: Factory, netns) -> None:
    h = two_hosts(netns)
    d = start_host_a(daemon, h)
    wait_ping(h.vm_a, VM_B)
    payloads = "[" + ", ".join(MALFORMED.values()) + "]"
    script = ("import socket\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"s.bind(({B_IP!r}, 0))\n"
              f"for p in {payloads}:\n"
              "    for _ in range(5):\n"
              f"        s.sendto(p, ({A_IP!r}, 4789))\n")
    run(h.host_b, "python3", "-c", script)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        got = drops(d, "vx0")
        if all(got[reason] == 5 for reason in MALFORMED):
            break
        time.sleep(0.1)
    assert {r: got[r] for r in MALFORMED} == {r: 5 for r in MALFORMED}, got
    r = ping(h.vm_a, VM_B, count=5, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout
    assert d.proc is not None and d.proc.poll() is None


def test_local_ip_not_on_this_host_is_refused_naming_the_key(daemon: Factory, netns) -> None:
    h = two_hosts(netns)
    ports = {"vx0": {"type": "vxlan", "local_ip": "198.18.0.9", "vni_map": {"10": 5010}}}
    try:
        daemon(ports, netns=h.host_a)
    except RuntimeError as exc:
        assert "ports.vx0.local_ip: 198.18.0.9 is not an address of this host" in str(exc)
    else:
        raise AssertionError("vswitchd started with a local_ip it does not have")


def test_ipv6_underlay_interop_with_a_kernel_vtep(daemon: Factory, netns) -> None:
    h = two_hosts(netns, vm_b_mtu=1430, v6=True)
    d = start_host_a(daemon, h, vm_mtu=1430, v6=True)
    wait_ping(h.vm_a, VM_B)
    r = ping(h.vm_a, VM_B, count=10, interval=0.05)
    assert ping_loss(r.stdout) == 0, r.stdout
    b_mac = mac_of(h.vm_b, h.vm_b_if)
    assert {"mac": b_mac, "vtep": B_IP6} in [{k: e[k] for k in ("mac", "vtep")}
                                             for e in d.ctl("fdb", "show")]
    server = subprocess.Popen(["ip", "netns", "exec", h.vm_b, "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        client = run(h.vm_a, "iperf3", "-c", VM_B, "-t", "1", "-J", check=False, timeout=30)
        assert client.returncode == 0, client.stdout + client.stderr
    finally:
        server.kill()
        server.wait()
    (port,) = d.ctl("vxlan", "show")
    assert port["mtu"] == 1430                         # 1500 - 70
    assert port["vteps"][0]["rx_packets"] > 0
