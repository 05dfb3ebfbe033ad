"""The VXLAN rows (issue 9): two namespace-hosts joined by a veth underlay.

    VM a ── [host a: switch + VTEP 10.198.0.1] ══ veth ══ [host b: VTEP 10.198.0.2 + switch] ── VM b

Every row carries the VMs' segment (10.199.0.0/24, MTU 1450 = the
underlay's 1500 - 50) as VNI 5010 between two VTEPs, each host its own
network namespace with its own switch:
- `vxlan-vsw`: a vswitchd per host, running inside the host's namespace, a
  TAP port with offloads for the VM (as a VM's TAP would be) and a vxlan
  port with the other host as static peer;
- `vxlan-kernel`: the in-kernel reference, a Linux bridge + vxlan device
  per host, a veth to the VM, the peer as the all-zero (flood) fdb entry;
- `vxlan-ovs`: Open vSwitch's userspace datapath per host, the way its
  "userspace tunneling" how-to sets it up: br-int (the VM's TAP and a
  vxlan port) and br-phy (the underlay veth as an AF_PACKET port, the
  VTEP address on br-phy's internal port, from which OVS learns the route
  and, by snooping, the peer's MAC).  Userspace TSO stays off: Open
  vSwitch 3.1 drops TSO frames it would tunnel ("Tunneling packets with
  TSO is not supported"), so its VM TAPs segment in the VM's stack.

The switch CPU of a row is the sum over both hosts' switch processes (a
frame is switched twice); the kernel row has none to measure.  Every name
comes from `Topology.name`, is recorded when created and removed by it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from ovs import OvsInstance
from proc import in_netns, run, wait_until
from topology import Host, Topology, link_mac
from vswitchd_runner import PortSpec, VswitchdInstance

if TYPE_CHECKING:
    from scenarios import Config, Setup

UNDERLAY = "10.198.0"
VNI = 5010
VLAN = 10
VM_MTU = 1450
SIDES = "ab"


def _underlay_ip(i: int) -> str:
    return f"{UNDERLAY}.{i + 1}"


def _quiet_netns(topo: Topology, role: str) -> str:
    """A namespace without IPv6 (no ND/MLD noise in the counts)."""
    ns = topo.add_netns(role)
    run(in_netns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"), 10)
    run(in_netns(ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"), 10)
    return ns


def _hosts_and_underlay(topo: Topology, address: bool = True) -> tuple[list[str], list[str]]:
    """Host namespaces h<a|b> joined by veth u<a|b>; returns (namespaces, veth ends)."""
    hosts = [_quiet_netns(topo, f"h{s}") for s in SIDES]
    ends = [topo.name(f"u{s}") for s in SIDES]
    run(["ip", "link", "add", ends[0], "netns", hosts[0], "type", "veth", "peer", "name",
         ends[1], "netns", hosts[1]], 10)
    for i, (ns, dev) in enumerate(zip(hosts, ends, strict=True)):
        topo.track_ns_link(ns, dev)
        if address:
            run(["ip", "-n", ns, "addr", "add", f"{_underlay_ip(i)}/24", "dev", dev], 10)
        run(["ip", "-n", ns, "link", "set", dev, "up"], 10)
    return hosts, ends


def _vm(topo: Topology, index: int, ns: str, ifname: str) -> Host:
    run(["ip", "-n", ns, "link", "set", ifname, "mtu", str(VM_MTU)], 10)
    return topo.configure_host(index, ns, ifname)


def build(cfg: Config, topo: Topology, stack: contextlib.ExitStack, workdir: Path,
          code_dir: Path) -> Setup:
    if cfg.ports == "vxlan-kernel":
        return _kernel(topo)
    if cfg.ports == "vxlan-ovs":
        return _ovs(topo, stack, workdir)
    return _vswitchd(cfg, topo, stack, workdir, code_dir)


def _kernel(topo: Topology) -> Setup:
    from scenarios import Setup
    hosts, _ = _hosts_and_underlay(topo)
    vms = []
    for i, (side, hns) in enumerate(zip(SIDES, hosts, strict=True)):
        ip = ["ip", "-n", hns]
        br, vx, veth, vm_if = (topo.name(f"{r}{side}") for r in ("br", "vx", "v", "n"))
        run([*ip, "link", "add", br, "type", "bridge"], 10)
        run([*ip, "link", "add", vx, "type", "vxlan", "id", str(VNI), "local",
             _underlay_ip(i), "dstport", "4789"], 10)
        run([*ip, "link", "set", vx, "mtu", str(VM_MTU)], 10)
        run(["bridge", "-n", hns, "fdb", "append", "00:00:00:00:00:00", "dev", vx,
             "dst", _underlay_ip(1 - i)], 10)
        vm_ns = _quiet_netns(topo, side)
        run([*ip, "link", "add", veth, "type", "veth", "peer", "name", vm_if,
             "netns", vm_ns], 10)
        for dev in (br, vx, veth):
            topo.track_ns_link(hns, dev)
        for dev in (vx, veth):
            run([*ip, "link", "set", dev, "master", br, "up"], 10)
        run([*ip, "link", "set", br, "up"], 10)
        vms.append(_vm(topo, i, vm_ns, vm_if))
    return Setup(vms, None)


def _vswitchd(cfg: Config, topo: Topology, stack: contextlib.ExitStack, workdir: Path,
              code_dir: Path) -> Setup:
    from scenarios import Setup
    hosts, _ = _hosts_and_underlay(topo)
    switches, vm_ifs = [], []
    for i, (side, hns) in enumerate(zip(SIDES, hosts, strict=True)):
        vm_ns = _quiet_netns(topo, side)
        tap = topo.name(f"t{side}")
        vxlan = (f'[ports.vx0]\ntype = "vxlan"\nlocal_ip = "{_underlay_ip(i)}"\n'
                 f'vni_map = {{ {VLAN} = {VNI} }}\npeers = ["{_underlay_ip(1 - i)}"]\n')
        sw = VswitchdInstance(workdir / f"vswitchd-{side}",
                              [PortSpec(name="vm0", type="tap", ifname=tap, netns=vm_ns,
                                        vlan=VLAN)],
                              cfg.workers, code_dir, netns=hns, extra_toml=vxlan,
                              n_ports=2)
        stack.callback(sw.stop)
        sw.start()
        topo.track_ns_link(vm_ns, tap)
        switches.append(sw)
        vm_ifs.append((vm_ns, tap))
    vms = [_vm(topo, i, ns, ifname) for i, (ns, ifname) in enumerate(vm_ifs)]
    return Setup(vms, switches[0].pid, switches[0].dir / "vswitchd.log",
                 extra_pids=[s.pid for s in switches[1:]])


def _ovs(topo: Topology, stack: contextlib.ExitStack, workdir: Path) -> Setup:
    from scenarios import Setup
    hosts, ends = _hosts_and_underlay(topo, address=False)
    instances, vm_ifs = [], []
    for i, (side, hns) in enumerate(zip(SIDES, hosts, strict=True)):
        ovs = OvsInstance(workdir / f"ovs-{side}", userspace_tso=False, netns=hns)
        stack.callback(ovs.stop)
        ovs.start()
        br_int, br_phy, tap = topo.name(f"bi{side}"), topo.name(f"bp{side}"), \
            topo.name(f"t{side}")
        # OVS creates the bridges' internal ports as TAPs in the host namespace.
        topo.track_ns_link(hns, br_phy)
        topo.track_ns_link(hns, br_int)
        ovs.add_bridge(br_phy)
        ovs.add_system_port(br_phy, ends[i])
        ovs.add_bridge(br_int)
        ovs.vsctl("add-port", br_int, "vx0", "--", "set", "interface", "vx0", "type=vxlan",
                  f"options:remote_ip={_underlay_ip(1 - i)}",
                  f"options:local_ip={_underlay_ip(i)}", f"options:key={VNI}")
        ovs.add_tap_port(br_int, tap)
        run(["ip", "-n", hns, "addr", "add", f"{_underlay_ip(i)}/24", "dev", br_phy], 10)
        run(["ip", "-n", hns, "link", "set", br_phy, "up"], 10)
        vm_ns = _quiet_netns(topo, side)
        run(["ip", "-n", hns, "link", "set", tap, "netns", vm_ns], 10)
        topo.track_ns_link(vm_ns, tap)
        instances.append(ovs)
        vm_ifs.append((vm_ns, tap))
    # The tunnel's next hop: OVS learns it by snooping ARP on br-phy, which
    # races with the kernel's ARP cache (a host that already knows the
    # peer never asks); set it, as the how-to allows (tnl/neigh/set).
    phy_macs = [link_mac(topo.name(f"bp{side}"), hns) for side, hns in zip(SIDES, hosts,
                                                                          strict=True)]
    for i, ovs in enumerate(instances):
        ovs.appctl("tnl/neigh/set", topo.name(f"bp{SIDES[i]}"), _underlay_ip(1 - i),
                   phy_macs[1 - i])
    for i, hns in enumerate(hosts):
        wait_until(lambda hns=hns, i=i: run(in_netns(
            hns, "ping", "-c", "1", "-W", "1", _underlay_ip(1 - i)), 10,
            check=False).returncode == 0, 15, interval_s=0.3,
            what=f"underlay ping from {hns} over Open vSwitch's br-phy")
    vms = [_vm(topo, i, ns, ifname) for i, (ns, ifname) in enumerate(vm_ifs)]
    return Setup(vms, instances[0].pid, instances[0].dir / "ovs-vswitchd.log",
                 extra_pids=[o.pid for o in instances[1:]])
