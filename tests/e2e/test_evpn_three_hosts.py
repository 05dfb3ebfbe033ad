"""Three hosts in one VNI (issue 9, acceptance 3): two vswitchd hosts with
[evpn] and one FRR/kernel host, an iBGP full mesh over one underlay switch
(a Linux bridge in a namespace of its own).  Every VM reaches every other,
and a broadcast from one VM arrives exactly once at each other VM: head-end
replication sends one copy per VTEP and nobody floods it back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import sh
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import Capture, addr, mac_of, ping, ping_loss, run, send_frames
from tests.e2e.test_evpn_frr import FRR, stop_frr, wait_for
from tests.e2e.test_vxlan import wait_ping
from tests.frames import BROADCAST, eth

IPS = {"a": "198.18.4.1", "b": "198.18.4.2", "c": "198.18.4.3"}
VMS = {"a": "10.80.0.1", "b": "10.80.0.2", "c": "10.80.0.3"}


def frr_conf(me: str, peers: list[str]) -> str:
    lines = ["hostname hostc", "router bgp 65000", f" bgp router-id {me}",
             " no bgp default ipv4-unicast"]
    lines += [f" neighbor {p} remote-as 65000\n neighbor {p} timers connect 1" for p in peers]
    lines += [" address-family l2vpn evpn"]
    lines += [f"  neighbor {p} activate" for p in peers]
    lines += ["  advertise-all-vni", " exit-address-family", ""]
    return "\n".join(lines)


def test_three_hosts_reach_each_other_and_a_broadcast_arrives_once_at_each_vm(
        netns, tmp_path: Path) -> None:
    if not shutil.which("gobgpd") or not (FRR / "bgpd").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("gobgpd or FRR not installed (make deps)")
        pytest.skip("gobgpd or FRR not installed (make deps)")
    under = netns()
    hosts = {k: netns() for k in IPS}
    vms = {k: netns() for k in IPS}
    sw = f"bu{under[-8:]}"
    run(under, "ip", "link", "add", sw, "type", "bridge")
    run(under, "ip", "link", "set", sw, "up")
    for k, host in hosts.items():
        up, down = f"vu{host[-8:]}", f"vd{host[-8:]}"
        sh("ip", "link", "add", up, "netns", host, "type", "veth", "peer", "name", down,
           "netns", under)
        run(under, "ip", "link", "set", down, "master", sw, "up")
        addr(host, up, f"{IPS[k]}/24")
        if k == "c":
            run(host, "ethtool", "-K", up, "tx", "off")     # test_vxlan.py: the veth trap
    vm_if = {k: (f"ve{vm[-8:]}" if k == "c" else f"vt{vm[-8:]}") for k, vm in vms.items()}

    # Host C: FRR over a kernel VTEP, learning off.
    hc = hosts["c"]
    br, vx, vb = f"br{hc[-8:]}", f"vx{hc[-8:]}", f"vb{hc[-8:]}"
    run(hc, "ip", "link", "add", br, "type", "bridge")
    run(hc, "ip", "link", "add", vx, "type", "vxlan", "id", "5010", "local", IPS["c"],
        "dstport", "4789", "nolearning")
    sh("ip", "link", "add", vb, "netns", hc, "type", "veth", "peer", "name", vm_if["c"],
       "netns", vms["c"])
    for dev in (vx, vb):
        run(hc, "ip", "link", "set", dev, "master", br, "up")
    run(hc, "bridge", "link", "set", "dev", vx, "learning", "off")
    run(hc, "ip", "link", "set", br, "up")
    frr_dir = Path(tempfile.mkdtemp(prefix="vst-frr-"))
    frr: list[Path] = []
    daemons: list[RunningDaemon] = []
    try:
        (frr_dir / "run").mkdir()
        (frr_dir / "zebra.conf").write_text("hostname hostc\n")
        (frr_dir / "bgpd.conf").write_text(frr_conf(IPS["c"], [IPS["a"], IPS["b"]]))
        sh("chown", "-R", "frr:frr", str(frr_dir))
        for daemon in ("zebra", "bgpd"):
            pid = frr_dir / "run" / f"{daemon}.pid"
            run(hc, str(FRR / daemon), "-d", "-f", str(frr_dir / f"{daemon}.conf"), "-i",
                str(pid), "-z", str(frr_dir / "run" / "zserv.api"), "--vty_socket",
                str(frr_dir / "run"), "-P", "0")
            frr.append(pid)
            wait_for(f"{daemon} started", pid.exists, 10)

        for k in ("a", "b"):
            (tmp_path / k).mkdir()
            d = RunningDaemon(tmp_path / k, {
                "vm0": {"type": "tap", "ifname": vm_if[k], "netns": vms[k], "vlan": 10},
                "vx0": {"type": "vxlan", "local_ip": IPS[k], "vni_map": {"10": 5010}},
            }, netns=hosts[k], evpn={"asn": 65000, "router_id": IPS[k],
                                     "neighbors": [IPS[o] for o in IPS if o != k]})
            d.start()
            daemons.append(d)
            d.wait_ports_up("vm0", "vx0")
        for k, vm in vms.items():
            run(vm, "ip", "link", "set", vm_if[k], "mtu", "1450")
            addr(vm, vm_if[k], f"{VMS[k]}/24")
        for d in daemons:
            wait_for("both sessions up", lambda d=d: sorted(
                s["state"] for s in d.ctl("evpn", "show")["sessions"]) == ["established"] * 2)
            wait_for("two VTEPs in the flood list",
                     lambda d=d: len(d.ctl("evpn", "show")["flood_list"]) == 2)

        for src, dst in (("a", "b"), ("a", "c"), ("b", "c"), ("c", "a"), ("b", "a")):
            wait_ping(vms[src], VMS[dst], timeout_s=20)
            r = ping(vms[src], VMS[dst], count=5, interval=0.05)
            assert ping_loss(r.stdout) == 0, f"{src} -> {dst}: {r.stdout}"

        # A broadcast from each VM arrives exactly once at each other VM.
        for src in IPS:
            tag = secrets.token_hex(6).encode()
            mac = bytes.fromhex(mac_of(vms[src], vm_if[src]).replace(":", ""))
            caps = {k: Capture(vms[k], vm_if[k]) for k in IPS if k != src}
            try:
                for cap in caps.values():
                    cap.drain()
                frames = [eth(BROADCAST, mac, ethertype=0x88B5, payload=tag + bytes([i]) * 40)
                          for i in range(5)]
                send_frames(vms[src], vm_if[src], frames)
                time.sleep(0.3)
                for k, cap in caps.items():
                    got = [f for f in cap.frames(0.5) if tag in f]
                    assert len(got) == 5, f"broadcast from {src}: {len(got)} copies at {k}"
            finally:
                for cap in caps.values():
                    cap.close()
    finally:
        for d in daemons:
            rc = d.stop()
            assert rc == 0, f"vswitchd exited {rc}:\n{d.log()}"
        stop_frr(frr)
        shutil.rmtree(frr_dir, ignore_errors=True)
