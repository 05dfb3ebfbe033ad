"""A real QEMU guest on the switch: its tap, held by QEMU, is a netdev port.

QEMU creates and holds the tap (`-netdev tap,ifname=...,script=no`), so the
switch cannot TUNSETIFF it (EBUSY) and attaches from the host side with
AF_PACKET, the way it attaches every VM tap it does not own.
"""

from __future__ import annotations

from tests.e2e.conftest import sh, unique_name
from tests.e2e.nsnet import addr
from tests.vm.guest import tap_nic


def test_guest_on_a_qemu_tap_pings_a_namespace_through_the_switch(daemon, netns, guest) -> None:
    ns = netns()
    ns_tap, vm_tap = unique_name("vms"), unique_name("vms")
    d = daemon({"ns": {"type": "tap", "ifname": ns_tap, "netns": ns, "vlan": 10}})
    g = guest(tap_nic(vm_tap, "52:54:00:5e:10:02"), ip="10.93.0.2/24")
    try:
        sh("ip", "link", "set", vm_tap, "up")       # script=no: nobody else brings it up
        d.ctl("port", "add", "vm", "type=netdev", f"ifname={vm_tap}", "vlan=10")
        d.wait_ports_up("ns", "vm")
        addr(ns, ns_tap, "10.93.0.1/24")
        r = g.run("ping -c 3 -W 2 10.93.0.1", timeout_s=40)
        assert r.rc == 0, r.output
        assert d.port("vm")["rx_packets"] >= 3
    finally:
        g.stop()
