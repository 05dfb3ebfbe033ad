"""A real QEMU guest on the switch: its tap, held by QEMU, is a netdev port.

QEMU creates and holds the tap (`-netdev tap,ifname=...,script=no`), so the
switch cannot TUNSETIFF it (EBUSY) and attaches from the host side with
AF_PACKET, the way it attaches every VM tap it does not own.
"""

from __future__ import annotations

import json
import re

from tests.e2e.conftest import sh, unique_name
from tests.e2e.nsnet import addr, run
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

        # The image's iperf3 and nstat work (issue 12's tests measure with them):
        # TCP from the namespace into the guest, guest offloads on, no bad checksums.
        # -D returns before the server listens: wait for the socket.
        g.check("iperf3 -s -D -1 && for i in $(seq 50); do netstat -ltn | grep -q :5201 "
                "&& break; sleep 0.1; done")
        r = run(ns, "iperf3", "-c", "10.93.0.2", "-t", "2", "-J", check=False, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["end"]["sum_received"]["bytes"] > 0, r.stdout
        out = g.check("nstat -az TcpInCsumErrors")
        assert re.search(r"TcpInCsumErrors\s+0\s", out), out
    finally:
        g.stop()
