"""EVPN interop with FRR (issue 9, acceptance 2).

Host B runs FRR (zebra + bgpd in its namespace, `advertise-all-vni`) over a
kernel bridge and a vxlan device with data-plane learning off; host A runs
vswitchd with [evpn].  Each side learns the other's VM MAC from BGP only:
B's kernel fdb gets A's VM at A's address from a type-2 route
(extern_learn), A's fdb gets B's VM at B's VTEP.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, mac_of, ping, ping_loss, run
from tests.e2e.test_vxlan import wait_ping

A_IP, B_IP = "198.18.3.1", "198.18.3.2"
VM_A, VM_B = "10.70.0.1", "10.70.0.2"
FRR = Path("/usr/lib/frr")

BGPD_CONF = f"""\
hostname hostb
router bgp 65000
 bgp router-id {B_IP}
 no bgp default ipv4-unicast
 neighbor {A_IP} remote-as 65000
 neighbor {A_IP} timers connect 1
 address-family l2vpn evpn
  neighbor {A_IP} activate
  advertise-all-vni
 exit-address-family
"""


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout_s} s")


def start_frr(ns: str, d: Path) -> list[Path]:
    (d / "run").mkdir(parents=True)
    (d / "zebra.conf").write_text("hostname hostb\n")
    (d / "bgpd.conf").write_text(BGPD_CONF)
    sh("chown", "-R", "frr:frr", str(d))
    pids = []
    for daemon in ("zebra", "bgpd"):
        pid = d / "run" / f"{daemon}.pid"
        run(ns, str(FRR / daemon), "-d", "-f", str(d / f"{daemon}.conf"), "-i", str(pid),
            "-z", str(d / "run" / "zserv.api"), "--vty_socket", str(d / "run"), "-P", "0")
        pids.append(pid)
        wait_for(f"{daemon} started", pid.exists, 10)
    return pids


def stop_frr(pids: list[Path]) -> None:
    for pid in reversed(pids):
        try:
            os.kill(int(pid.read_text().strip()), 15)
        except (OSError, ValueError):
            pass


@dataclass
class Pair:
    ha: str
    hb: str
    vma: str
    vmb: str
    vx: str
    vb: str
    br: str
    vma_if: str
    vmb_if: str
    frr_dir: Path
    d: RunningDaemon

    def kernel_fdb(self) -> str:
        return run(self.hb, "bridge", "fdb", "show", "dev", self.vx).stdout

    def vtysh(self, command: str) -> str:
        return run(self.hb, "vtysh", "--vty_socket", str(self.frr_dir / "run"), "-c",
                   command).stdout


@contextlib.contextmanager
def frr_pair(netns: Callable[[], str], tmp_path: Path) -> Iterator[Pair]:
    """Host A (vswitchd, [evpn]) and host B (FRR + kernel VTEP), a VM each,
    the session up and each in the other's flood list."""
    if not shutil.which("gobgpd") or not (FRR / "bgpd").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("gobgpd or FRR not installed (make deps)")
        pytest.skip("gobgpd or FRR not installed (make deps)")
    ha, hb, vma, vmb = netns(), netns(), netns(), netns()
    ua, ub = f"vf{ha[-8:]}", f"vf{hb[-8:]}"
    sh("ip", "link", "add", ua, "netns", ha, "type", "veth", "peer", "name", ub, "netns", hb)
    addr(ha, ua, f"{A_IP}/24")
    addr(hb, ub, f"{B_IP}/24")
    run(hb, "ethtool", "-K", ub, "tx", "off")      # the veth checksum trap: test_vxlan.py
    br, vx, vb, vmb_if = f"br{hb[-8:]}", f"vx{hb[-8:]}", f"vb{hb[-8:]}", f"ve{vmb[-8:]}"
    run(hb, "ip", "link", "add", br, "type", "bridge")
    run(hb, "ip", "link", "add", vx, "type", "vxlan", "id", "5010", "local", B_IP,
        "dstport", "4789", "nolearning")
    sh("ip", "link", "add", vb, "netns", hb, "type", "veth", "peer", "name", vmb_if,
       "netns", vmb)
    for dev in (vx, vb):
        run(hb, "ip", "link", "set", dev, "master", br, "up")
    run(hb, "bridge", "link", "set", "dev", vx, "learning", "off")
    run(hb, "ip", "link", "set", br, "up")
    run(vmb, "ip", "link", "set", vmb_if, "mtu", "1450")
    addr(vmb, vmb_if, f"{VM_B}/24")
    # FRR's daemons run as user frr: pytest's tmp_path (0700, root) is out
    # of their reach, so their files live in a directory of their own.
    frr_dir = Path(tempfile.mkdtemp(prefix="vst-frr-"))
    frr: list[Path] = []
    d = None
    try:
        frr = start_frr(hb, frr_dir)
        vma_if = f"vt{vma[-8:]}"
        d = RunningDaemon(tmp_path, {
            "vm0": {"type": "tap", "ifname": vma_if, "netns": vma, "vlan": 10},
            "vx0": {"type": "vxlan", "local_ip": A_IP, "vni_map": {"10": 5010}},
        }, netns=ha, evpn={"asn": 65000, "router_id": A_IP, "neighbors": [B_IP]})
        d.start()
        d.wait_ports_up("vm0", "vx0")
        run(vma, "ip", "link", "set", vma_if, "mtu", "1450")
        addr(vma, vma_if, f"{VM_A}/24")
        wait_for("the session with FRR up", lambda: [
            s["state"] for s in d.ctl("evpn", "show")["sessions"]] == ["established"])
        wait_for("B (FRR) in A's flood list",
                 lambda: d.ctl("evpn", "show")["flood_list"] == [B_IP])
        yield Pair(ha, hb, vma, vmb, vx, vb, br, vma_if, vmb_if, frr_dir, d)
    finally:
        if d is not None:
            rc = d.stop()
            assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"
        stop_frr(frr)
        shutil.rmtree(frr_dir, ignore_errors=True)


def test_evpn_with_frr_learns_macs_from_bgp_on_both_sides(netns, tmp_path: Path) -> None:
    with frr_pair(netns, tmp_path) as p:
        d = p.d
        wait_ping(p.vma, VM_B, timeout_s=20)
        a_mac, b_mac = mac_of(p.vma, p.vma_if), mac_of(p.vmb, p.vmb_if)
        wait_for("A's VM in B's kernel fdb from BGP", lambda: re.search(
            rf"{a_mac} dst {re.escape(A_IP)} .*extern_learn", p.kernel_fdb()) is not None)
        wait_for("B's VM at B's VTEP on A", lambda: [
            e.get("vtep") for e in d.ctl("fdb", "show") if e["mac"] == b_mac] == [B_IP])
        r = ping(p.vma, VM_B, count=10, interval=0.05)
        assert ping_loss(r.stdout) == 0, r.stdout
        server = subprocess.Popen(["ip", "netns", "exec", p.vmb, "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            client = run(p.vma, "iperf3", "-c", VM_B, "-t", "1", check=False, timeout=30)
            assert client.returncode == 0, client.stdout + client.stderr
        finally:
            server.kill()
            server.wait()


def test_a_vm_moved_from_the_frr_host_to_vswitchd_wins_with_a_higher_sequence(
        netns, tmp_path: Path) -> None:
    with frr_pair(netns, tmp_path) as p:
        d = p.d
        wait_ping(p.vma, VM_B, timeout_s=20)
        b_mac = mac_of(p.vmb, p.vmb_if)
        wait_for("B's VM known on A from FRR's route", lambda: [
            m["seq"] for m in d.ctl("evpn", "show")["received_macs"] if m["mac"] == b_mac]
            == [0])
        # Move: the VM leaves host B (its port there is deleted) and is
        # attached to host A with the same MAC and address.
        run(p.hb, "ip", "link", "del", p.vb)
        new_if = f"vm{p.vmb[-8:]}"
        d.ctl("port", "add", "vm1", "type=tap", f"ifname={new_if}", f"netns={p.vmb}",
              "vlan=10")
        d.wait_ports_up("vm1")
        run(p.vmb, "ip", "link", "set", new_if, "address", b_mac)
        run(p.vmb, "ip", "link", "set", new_if, "mtu", "1450")
        addr(p.vmb, new_if, f"{VM_B}/24")
        wait_ping(p.vmb, VM_A, timeout_s=20)
        wait_for("A advertises the moved MAC with sequence 1", lambda: [
            m["seq"] for m in d.ctl("evpn", "show")["sent_macs"] if m["mac"] == b_mac] == [1])
        wait_for("B's kernel points the MAC at A", lambda: re.search(
            rf"{b_mac} dst {re.escape(A_IP)} .*extern_learn", p.kernel_fdb()) is not None)
        routes = p.vtysh("show bgp l2vpn evpn route type macip")
        assert "MM:1" in routes, routes


def test_a_vm_moved_from_vswitchd_to_the_frr_host_converges_with_a_higher_sequence(
        netns, tmp_path: Path) -> None:
    with frr_pair(netns, tmp_path) as p:
        d = p.d
        wait_ping(p.vma, VM_B, timeout_s=20)
        a_mac = mac_of(p.vma, p.vma_if)
        wait_for("A's route for its VM in B's kernel", lambda: re.search(
            rf"{a_mac} dst {re.escape(A_IP)} .*extern_learn", p.kernel_fdb()) is not None)
        # The VM comes up on host B (same MAC and address) while A still
        # has it, then its port on A is deleted: a live migration's order.
        moved = netns()
        new_if, vb2 = f"vm{moved[-8:]}", f"vc{moved[-8:]}"
        sh("ip", "link", "add", vb2, "netns", p.hb, "type", "veth", "peer", "name", new_if,
           "netns", moved)
        run(p.hb, "ip", "link", "set", vb2, "master", p.br, "up")
        run(moved, "ip", "link", "set", new_if, "address", a_mac)
        run(moved, "ip", "link", "set", new_if, "mtu", "1450")
        addr(moved, new_if, f"{VM_A}/24")
        wait_ping(moved, VM_B, timeout_s=20)
        d.ctl("port", "del", "vm0")
        wait_for("FRR's claim with a higher sequence on A", lambda: [
            m["seq"] for m in d.ctl("evpn", "show")["received_macs"] if m["mac"] == a_mac]
            == [1])
        wait_for("A forwards to the VM at B's VTEP", lambda: [
            e.get("vtep") for e in d.ctl("fdb", "show") if e["mac"] == a_mac] == [B_IP])
        wait_for("A's own route withdrawn", lambda: not [
            m for m in d.ctl("evpn", "show")["sent_macs"] if m["mac"] == a_mac])
        assert "MM:1" in p.vtysh("show bgp l2vpn evpn route type macip")
