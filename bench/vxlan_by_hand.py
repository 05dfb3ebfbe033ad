"""VXLAN throughput by hand, until bench/run.py has the rows of issue 9.

Builds two namespace-hosts with the topology helpers of
tests/e2e/test_vxlan.py, runs iperf3 -t 5 between a VM on each and prints
Gbit/s; everything it creates is removed by exact name.  As root:

    .venv/bin/python bench/vxlan_by_hand.py kernel_vs      # vswitchd <-> kernel VTEP
    .venv/bin/python bench/vxlan_by_hand.py kernel_kernel  # kernel vxlan + bridge on both
    .venv/bin/python bench/vxlan_by_hand.py vs_vs          # vswitchd <-> vswitchd
    SW='{"workers": 1}' VSWITCHD_VXLAN_TX=raw ...          # [switch] keys; the raw socket
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tests.e2e import test_vxlan as T  # noqa: E402
from tests.e2e.conftest import sh, unique_name  # noqa: E402
from tests.e2e.daemon_fixture import RunningDaemon  # noqa: E402
from tests.e2e.nsnet import addr, run  # noqa: E402

SWITCH = json.loads(os.environ.get("SW", "null"))
names: list[str] = []
daemons: list[RunningDaemon] = []


def mk() -> str:
    n = unique_name("vst-")
    sh("ip", "netns", "add", n)
    names.append(n)
    return n


def daemon(ports: dict, **kw: object) -> RunningDaemon:
    tmp = pathlib.Path(f"/tmp/vxlan-bench-d{len(daemons)}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    d = RunningDaemon(tmp, ports, switch=SWITCH, **kw)  # type: ignore[arg-type]
    d.start()
    daemons.append(d)
    return d


def iperf(src: str, dst_ns: str, dst_ip: str, *extra: str) -> object:
    srv = subprocess.Popen(["ip", "netns", "exec", dst_ns, "iperf3", "-s", "-1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    r = run(src, "iperf3", "-c", dst_ip, "-t", "5", "-J", *extra, check=False, timeout=40)
    srv.kill()
    srv.wait()
    try:
        return round(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9, 2)
    except (ValueError, KeyError):
        return r.stdout[-300:]


def ping_line(src: str, ip: str) -> str:
    return run(src, "ping", "-q", "-c", "20", "-i", "0.05", ip, check=False).stdout \
        .strip().splitlines()[-1]


def kernel_vtep(h: T.Hosts) -> None:
    """Host A as a kernel VTEP too: bridge + vxlan + a veth to its VM."""
    a = h.host_a
    br, vx, va = f"br{a[-8:]}", f"vx{a[-8:]}", f"vb{a[-8:]}"
    run(a, "ip", "link", "add", br, "type", "bridge")
    run(a, "ip", "link", "add", vx, "type", "vxlan", "id", "5010", "local", T.A_IP,
        "dstport", "4789")
    run(a, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", vx, "dst", T.B_IP)
    sh("ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", h.vm_a_if,
       "netns", h.vm_a)
    for dev in (vx, va):
        run(a, "ip", "link", "set", dev, "master", br, "up")
    run(a, "ip", "link", "set", br, "up")
    run(h.vm_a, "ip", "link", "set", h.vm_a_if, "mtu", "1450")
    addr(h.vm_a, h.vm_a_if, T.VM_A + "/24")


def vswitchd_pair() -> tuple[str, str]:
    ha, hb, vma, vmb = mk(), mk(), mk(), mk()
    ua, ub = f"vu{ha[-8:]}", f"vu{hb[-8:]}"
    sh("ip", "link", "add", ua, "netns", ha, "type", "veth", "peer", "name", ub, "netns", hb)
    addr(ha, ua, T.A_IP + "/24")
    addr(hb, ub, T.B_IP + "/24")
    for host, vm, lip, pip, vip in ((ha, vma, T.A_IP, T.B_IP, T.VM_A),
                                    (hb, vmb, T.B_IP, T.A_IP, T.VM_B)):
        vif = f"vt{vm[-8:]}"
        d = daemon({"vm0": {"type": "tap", "ifname": vif, "netns": vm, "vlan": 10},
                    "vx0": {"type": "vxlan", "local_ip": lip, "vni_map": {"10": 5010},
                            "peers": [pip]}}, netns=host)
        d.wait_ports_up("vm0", "vx0")
        run(vm, "ip", "link", "set", vif, "mtu", "1450")
        addr(vm, vif, vip + "/24")
    return vma, vmb


def main(mode: str) -> None:
    if mode == "kernel_vs":
        h = T.two_hosts(mk)
        T.start_host_a(daemon, h)
        T.wait_ping(h.vm_a, T.VM_B)
        print("A(vswitchd)->B(kernel)", iperf(h.vm_a, h.vm_b, T.VM_B), "Gbit/s")
        print("B(kernel)->A(vswitchd)", iperf(h.vm_b, h.vm_a, T.VM_A), "Gbit/s")
        print("A->B -P4", iperf(h.vm_a, h.vm_b, T.VM_B, "-P", "4"))
        print("ping", ping_line(h.vm_a, T.VM_B))
    elif mode == "kernel_kernel":
        h = T.two_hosts(mk)
        kernel_vtep(h)
        T.wait_ping(h.vm_a, T.VM_B)
        print("kernel A->B", iperf(h.vm_a, h.vm_b, T.VM_B), "Gbit/s")
        print("kernel A->B -P4", iperf(h.vm_a, h.vm_b, T.VM_B, "-P", "4"))
        print("ping", ping_line(h.vm_a, T.VM_B))
    elif mode == "vs_vs":
        vma, vmb = vswitchd_pair()
        T.wait_ping(vma, T.VM_B)
        print("vswitchd A->B", iperf(vma, vmb, T.VM_B), "Gbit/s")
        print("vswitchd A->B -P4", iperf(vma, vmb, T.VM_B, "-P", "4"))
        print("ping", ping_line(vma, T.VM_B))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv[1] if len(sys.argv) > 1 else "")
    finally:
        for d in daemons:
            d.stop()
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)
