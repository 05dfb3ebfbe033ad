"""Real libvirt domains plug themselves into vswitchd through the hook.

One libvirtd for the session (tests/vm/libvirt_env.py), one booted guest for
the lifecycle test; the bad-input domains never get past the hook, so they
boot nothing.  Domain names, taps and namespaces carry a unique "vms" prefix.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import unique_name
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr
from tests.vm.guest import Console, kernel_cmdline
from tests.vm.image import GuestImage
from tests.vm.libvirt_env import Libvirt, virsh
from vswitchd.cli import call


def domain_xml(name: str, image: GuestImage, serial: str, tap: str, mac: str, ip: str,
               port_attrs: str, mac_in_metadata: str | None = None) -> str:
    return f"""<domain type='qemu' xmlns:vswitchd='urn:vswitchd:1'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <metadata>
    <vswitchd:ports>
      <vswitchd:port mac='{mac_in_metadata or mac}' {port_attrs}/>
    </vswitchd:ports>
  </metadata>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>{kernel_cmdline(ip)}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='ethernet'>
      <mac address='{mac}'/>
      <target dev='{tap}' managed='yes'/>
      <model type='virtio'/>
      <driver name='qemu'/>
    </interface>
    <serial type='unix'><source mode='bind' path='{serial}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"""


@pytest.fixture
def lv(libvirt: Libvirt) -> Iterator[Libvirt]:
    """The session's libvirtd; the domains a test defines are destroyed and
    undefined when it ends, passed or failed."""
    yield libvirt
    libvirt.undefine_all()


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def ports(d: RunningDaemon) -> dict[str, dict]:
    return {p["name"]: p for p in d.ctl("show")["ports"]}


def new_domain(libvirt: Libvirt, image: GuestImage, ip: str, attrs: str,
               mac_in_metadata: str | None = None) -> tuple[str, str, str, str]:
    """Defines a domain; returns (name, tap, mac, serial socket path)."""
    name = f"vms-{secrets.token_hex(4)}"
    tap = unique_name("vms")
    mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    serial = str(libvirt.workdir / f"{name}.serial")
    libvirt.define(name, domain_xml(name, image, serial, tap, mac, ip, attrs, mac_in_metadata))
    return name, tap, mac, serial


def test_domain_with_metadata_gets_its_vlan_port_before_it_runs_and_keeps_it_over_restarts(
        lv: Libvirt, guest_image: GuestImage, daemon, netns) -> None:
    same, other = netns(), netns()
    t_same, t_other = unique_name("vms"), unique_name("vms")
    d = daemon({"same": {"type": "tap", "ifname": t_same, "netns": same, "vlan": 10},
                "other": {"type": "tap", "ifname": t_other, "netns": other, "vlan": 20}})
    lv.use_daemon(d.socket)
    addr(same, t_same, "10.95.0.1/24")
    addr(other, t_other, "10.95.0.3/24")      # same subnet, other VLAN: must stay unreachable
    name, tap, _mac, serial = new_domain(lv, guest_image, "10.95.0.2/24", "vlan='10'")

    virsh("start", name)
    # The hook ran at "start begin": the port is there as virsh start returns,
    # seconds before the guest's /init.
    p = ports(d)[tap]
    assert (p["type"], p["ifname"], p["vlan"], p["attached_by"]) == (
        "netdev", tap, 10, f"libvirt {name}")
    console = Console(serial)
    try:
        console.wait_ready()
        r = console.run("ping -c 3 -W 2 10.95.0.1", timeout_s=40)
        assert r.rc == 0, r.output
        r = console.run("ping -c 2 -W 1 10.95.0.3", timeout_s=30)
        assert r.rc != 0, r.output
        assert ports(d)["other"]["tx_packets"] == 0

        # libvirtd restarts (the guest runs on): its reconnect keeps the port,
        # and re-adds it if it went missing meanwhile.
        lv.stop_libvirtd()
        assert ports(d)[tap]["attached_by"] == f"libvirt {name}"
        call(d.socket, "port/detach", {"names": [tap], "by": f"libvirt {name}"}, 10)
        assert tap not in ports(d)
        lv.start_libvirtd()
        wait_for(lambda: tap in ports(d), "port re-added by the reconnect hook")
        assert ports(d)[tap]["attached_by"] == f"libvirt {name}"
        assert console.run("ping -c 2 -W 2 10.95.0.1", timeout_s=30).rc == 0
    finally:
        console.close()

    virsh("destroy", name)
    wait_for(lambda: tap not in ports(d), "port removed after virsh destroy")
    virsh("start", name)
    assert ports(d)[tap]["vlan"] == 10
    virsh("destroy", name)
    wait_for(lambda: tap not in ports(d), "port removed again")


@pytest.mark.parametrize(("attrs", "metadata_mac", "message"), [
    ("vlan='10' acls='nope'", None, 'acls: no ACL set "nope" (defined: none)'),
    ("vlan='4095'", None, "vlan: 4095 is not in 1-4094"),
    ("vlan='10'", "52:54:00:ff:ff:fe", "no interface of the domain has this MAC"),
])
def test_domain_with_bad_metadata_fails_to_start_with_the_message_and_changes_nothing(
        lv: Libvirt, guest_image: GuestImage, daemon, netns, attrs: str,
        metadata_mac: str | None, message: str) -> None:
    d = daemon({})
    lv.use_daemon(d.socket)
    before = d.ctl("show")["ports"]
    name, tap, _mac, _serial = new_domain(lv, guest_image, "10.95.1.2/24", attrs,
                                          metadata_mac)
    r = virsh("start", name, check=False)
    assert r.returncode != 0
    assert f"vswitchd: domain {name}: " in r.stderr and message in r.stderr, r.stderr
    assert virsh("domstate", name).stdout.strip() == "shut off"
    assert d.ctl("show")["ports"] == before


def vhost_domain_xml(name: str, image: GuestImage, serial: str, sock: str, mac: str,
                     ip: str, port_attrs: str) -> str:
    """A domain on a vhost-user NIC: guest memory shared (memfd) so the switch
    can map it, and the NIC's MSI-X off, which this QEMU needs under TCG."""
    return f"""<domain type='qemu' xmlns:vswitchd='urn:vswitchd:1'
        xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu>1</vcpu>
  <metadata>
    <vswitchd:ports><vswitchd:port mac='{mac}' {port_attrs}/></vswitchd:ports>
  </metadata>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{image.kernel}</kernel>
    <initrd>{image.initrd}</initrd>
    <cmdline>{kernel_cmdline(ip)}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='vhostuser'>
      <mac address='{mac}'/>
      <source type='unix' path='{sock}' mode='client'/>
      <model type='virtio'/>
    </interface>
    <serial type='unix'><source mode='bind' path='{serial}'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:override>
    <qemu:device alias='net0'>
      <qemu:frontend><qemu:property name='vectors' type='unsigned' value='0'/></qemu:frontend>
    </qemu:device>
  </qemu:override>
</domain>"""


def test_vhostuser_domain_gets_a_server_port_at_its_socket_and_pings_an_ethernet_domain(
        lv: Libvirt, guest_image: GuestImage, daemon) -> None:
    d = daemon({})
    lv.use_daemon(d.socket)
    eth_name, tap, _mac, eth_serial = new_domain(lv, guest_image, "10.95.3.1/24", "vlan='30'")
    vu_name = f"vms-{secrets.token_hex(4)}"
    port = unique_name("vmu")
    sock = str(lv.workdir / f"{port}.sock")
    vu_serial = str(lv.workdir / f"{vu_name}.serial")
    vu_mac = "52:54:00:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(3))
    lv.define(vu_name, vhost_domain_xml(vu_name, guest_image, vu_serial, sock, vu_mac,
                                        "10.95.3.2/24", "vlan='30'"))
    virsh("start", eth_name)
    r = virsh("start", vu_name, check=False)
    assert r.returncode == 0, f"{r.stderr}\n{d.log()[-3000:]}"
    p = ports(d)[port]
    assert (p["type"], p["vlan"], p["attached_by"]) == ("vhostuser", 30, f"libvirt {vu_name}")
    eth, vu = Console(eth_serial), Console(vu_serial)
    try:
        eth.wait_ready()
        vu.wait_ready()
        r = vu.run("ping -c 3 -W 3 10.95.3.1", timeout_s=60)
        assert r.rc == 0, f"{r.output}\n{d.ctl('show')}"
    finally:
        eth.close()
        vu.close()
    virsh("destroy", vu_name)
    virsh("destroy", eth_name)
    wait_for(lambda: port not in ports(d) and tap not in ports(d), "both ports removed")


def test_domain_fails_to_start_when_the_daemon_is_down(
        lv: Libvirt, guest_image: GuestImage, tmp_path) -> None:
    lv.use_daemon(str(tmp_path / "nobody.sock"))
    name, _tap, _mac, _serial = new_domain(lv, guest_image, "10.95.2.2/24", "vlan='10'")
    r = virsh("start", name, check=False)
    assert r.returncode != 0
    assert (f"vswitchd: domain {name}: cannot connect to {tmp_path}/nobody.sock: no such file "
            "(is vswitchd running?)") in r.stderr, r.stderr
    assert virsh("domstate", name).stdout.strip() == "shut off"
