"""EVPN interop with FRR (issue 9, acceptance 2).

Host B runs FRR (zebra + bgpd in its namespace, `advertise-all-vni`) over a
kernel bridge and a vxlan device with data-plane learning off; host A runs
vswitchd with [evpn].  Each side learns the other's VM MAC from BGP only:
B's kernel fdb gets A's VM at A's address from a type-2 route
(extern_learn), A's fdb gets B's VM at B's VTEP.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
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


def test_evpn_with_frr_learns_macs_from_bgp_on_both_sides(netns, tmp_path: Path) -> None:
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
        wait_ping(vma, VM_B, timeout_s=20)
        a_mac, b_mac = mac_of(vma, vma_if), mac_of(vmb, vmb_if)

        def kernel_fdb() -> str:
            return run(hb, "bridge", "fdb", "show", "dev", vx).stdout

        wait_for("A's VM in B's kernel fdb from BGP", lambda: re.search(
            rf"{a_mac} dst {re.escape(A_IP)} .*extern_learn", kernel_fdb()) is not None)
        wait_for("B's VM at B's VTEP on A", lambda: [
            e.get("vtep") for e in d.ctl("fdb", "show") if e["mac"] == b_mac] == [B_IP])
        r = ping(vma, VM_B, count=10, interval=0.05)
        assert ping_loss(r.stdout) == 0, r.stdout
        server = subprocess.Popen(["ip", "netns", "exec", vmb, "iperf3", "-s", "-1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            client = run(vma, "iperf3", "-c", VM_B, "-t", "1", check=False, timeout=30)
            assert client.returncode == 0, client.stdout + client.stderr
        finally:
            server.kill()
            server.wait()
    finally:
        if d is not None:
            rc = d.stop()
            assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"
        stop_frr(frr)
        shutil.rmtree(frr_dir, ignore_errors=True)
