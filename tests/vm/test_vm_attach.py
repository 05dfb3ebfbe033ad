"""Plain QEMU guests (no libvirt) attach themselves: an attach rule, or the ifup script.

One guest with two NICs covers both: eth0's tap matches an [attach.NAME]
rule (QEMU made it with script=no, nobody else touches it), eth1's tap is
handed to vswitchd-qemu-ifup with its VLAN in the environment.  When QEMU
exits, the ifdown script detaches one and the vanished tap drops the other.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.e2e.conftest import unique_name
from tests.e2e.nsnet import addr
from tests.vm.guest import scripted_tap_nic, tap_nic

BIN = Path(sys.executable).parent


def test_rule_and_ifup_attach_a_qemu_guests_taps_and_both_go_when_qemu_exits(
        daemon, netns, guest) -> None:
    a, b = netns(), netns()
    t_a, t_b = unique_name("vms"), unique_name("vms")
    base = unique_name("vmr")
    rule_tap, ifup_tap = f"{base}r", unique_name("vms")
    d = daemon({"a": {"type": "tap", "ifname": t_a, "netns": a, "vlan": 10},
                "b": {"type": "tap", "ifname": t_b, "netns": b, "vlan": 20}},
               extra_toml=f'[attach.vms]\nifname = "{base}*"\nmode = "access"\nvlan = 10\n')
    addr(a, t_a, "10.96.0.1/24")
    addr(b, t_b, "10.97.0.1/24")
    env = dict(os.environ, VSWITCHD_SOCKET=d.socket, VSWITCHD_VLAN="20")
    g = guest(tap_nic(rule_tap, "52:54:00:5e:20:01", index=0)
              + scripted_tap_nic(ifup_tap, "52:54:00:5e:20:02", str(BIN / "vswitchd-qemu-ifup"),
                                 str(BIN / "vswitchd-qemu-ifdown"), index=1),
              ip="10.96.0.2/24", eth1="10.97.0.2/24", env=env)
    ports = {p["name"]: p for p in d.ctl("show")["ports"]}
    assert (ports[rule_tap]["vlan"], ports[rule_tap]["attached_by"]) == (10, "rule vms")
    assert (ports[ifup_tap]["vlan"], ports[ifup_tap]["attached_by"]) == (20, "qemu-ifup")
    r = g.run("ping -c 3 -W 2 10.96.0.1", timeout_s=40)
    assert r.rc == 0, r.output
    r = g.run("ping -c 3 -W 2 -I eth1 10.97.0.1", timeout_s=40)
    assert r.rc == 0, r.output

    g.stop()
    deadline = time.monotonic() + 20
    while {rule_tap, ifup_tap} & {p["name"] for p in d.ctl("show")["ports"]}:
        assert time.monotonic() < deadline, d.ctl("show")["ports"]
        time.sleep(0.2)
    assert f"port {ifup_tap} detached (by qemu-ifup)" in d.log()    # ifdown, before the tap went
