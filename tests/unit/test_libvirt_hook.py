"""The libvirt hook's reading of a domain: which interfaces become which ports."""

from __future__ import annotations

import pytest

from vswitchd import libvirt_hook
from vswitchd.libvirt_hook import HookError, parse_domain
from vswitchd.qemu_ifup import pairs_from


def domain(ports: str, interfaces: str | None = None) -> str:
    interfaces = interfaces if interfaces is not None else """
      <interface type="ethernet"><mac address="52:54:00:12:34:56"/>
        <target dev="web1-eth0" managed="yes"/><model type="virtio"/></interface>
      <interface type="vhostuser"><mac address="52:54:00:12:34:57"/>
        <source type="unix" path="/run/vswitchd/web1-eth1.sock" mode="client"/></interface>"""
    return f"""<domain type="qemu" xmlns:vswitchd="urn:vswitchd:1"><name>web1</name>
      <metadata><vswitchd:ports>{ports}</vswitchd:ports></metadata>
      <devices>{interfaces}</devices></domain>"""


def test_ethernet_interface_becomes_a_netdev_port_on_its_tap_with_the_attributes() -> None:
    reqs = parse_domain(domain('<vswitchd:port mac="52:54:00:12:34:56" vlan="10" acls="web" '
                               'max_bandwidth_out="500Mbit"/>'))
    assert [(r.name, r.mac, r.pairs) for r in reqs] == [
        ("web1-eth0", "52:54:00:12:34:56",
         ["type=netdev", "ifname=web1-eth0", "vlan=10", "acls=web", "max_bandwidth_out=500Mbit"])]


def test_vhostuser_interface_becomes_a_server_mode_port_at_the_domains_socket() -> None:
    reqs = parse_domain(domain('<vswitchd:port mac="52:54:00:12:34:57" vlan="10"/>'))
    assert reqs[0].name == "web1-eth1"
    assert reqs[0].pairs[:3] == ["type=vhostuser", "socket=/run/vswitchd/web1-eth1.sock",
                                 "socket_mode=server"]


def test_a_domain_without_vswitchd_metadata_asks_for_nothing() -> None:
    assert parse_domain("<domain><name>x</name><devices/></domain>") == []


@pytest.mark.parametrize(("ports", "message"), [
    ('<vswitchd:port mac="52:54:00:12:34:56" vlan="5000"/>',
     '<vswitchd:port mac="52:54:00:12:34:56">: vlan: 5000 is not in 1-4094'),
    ('<vswitchd:port mac="52:54:00:99:99:99" vlan="10"/>',
     '<vswitchd:port mac="52:54:00:99:99:99">: no interface of the domain has this MAC'),
    ('<vswitchd:port mac="52:54:00:12:34:56" ifname="eth9"/>',
     '<vswitchd:port mac="52:54:00:12:34:56">: ifname is set from the domain\'s interface, '
     'not in the metadata'),
    ('<vswitchd:port mac="52:54:00:12:34:56" colour="red"/>',
     '<vswitchd:port mac="52:54:00:12:34:56">: colour: unknown key (allowed: type, ifname, '),
])
def test_bad_metadata_is_one_line_naming_the_port_and_attribute(ports: str, message: str) -> None:
    with pytest.raises(HookError) as e:
        parse_domain(domain(ports))
    assert str(e.value).startswith(message)


def test_hook_fails_start_with_one_line_when_the_daemon_is_down(capsys, monkeypatch,
                                                                tmp_path) -> None:
    monkeypatch.setenv("VSWITCHD_SOCKET", str(tmp_path / "none.sock"))
    xml = domain('<vswitchd:port mac="52:54:00:12:34:56" vlan="10"/>')
    assert libvirt_hook.run(["web1", "start", "begin", "-"], xml) == 1
    err = capsys.readouterr().err
    assert err == (f"vswitchd: domain web1: cannot connect to {tmp_path}/none.sock: no such file "
                   "(is vswitchd running?)\n")
    # Stopping never fails, nor does reconnecting (libvirt would kill the
    # running guest); other operations do nothing.
    assert libvirt_hook.run(["web1", "stopped", "end", "-"], xml) == 0
    assert libvirt_hook.run(["web1", "reconnect", "begin", "-"], xml) == 0
    assert "warning: cannot connect" in capsys.readouterr().err
    assert libvirt_hook.run(["web1", "prepare", "begin", "-"], xml) == 0


def test_ifup_keys_come_from_the_environment_and_arguments_win() -> None:
    env = {"VSWITCHD_VLAN": "10", "VSWITCHD_ACLS": "web,ssh", "VSWITCHD_OFFLOAD_CSUM": "off",
           "HOME": "/root"}
    assert pairs_from(env, ["vlan=20"]) == ["acls=web,ssh", "offload.csum=off", "vlan=20"]
