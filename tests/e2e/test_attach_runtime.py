"""Ports VMs attach at run time, through the real hook and ifup programs.

No libvirt or QEMU here (tests/vm has those): the hook gets a domain XML on
stdin as libvirt would give it, and the "VM NICs" are veths.  What is
pinned: one request attaches all of a domain's ports or none, bad input is
one line and leaves the switch unchanged, runtime ports survive a reload and
a daemon restart (for interfaces still there), and ifup/ifdown take their
keys from the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import sh, unique_name
from tests.e2e.daemon_fixture import RunningDaemon

BIN = Path(sys.executable).parent


def hook(d: RunningDaemon, xml: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "vswitchd-libvirt-hook"), *args], input=xml,
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, VSWITCHD_SOCKET=d.socket))


def domain_xml(name: str, nics: list[tuple[str, str]], ports: str) -> str:
    ifaces = "".join(f'<interface type="ethernet"><mac address="{mac}"/>'
                     f'<target dev="{dev}" managed="yes"/></interface>' for dev, mac in nics)
    return (f'<domain type="qemu" xmlns:vswitchd="urn:vswitchd:1"><name>{name}</name>'
            f"<metadata><vswitchd:ports>{ports}</vswitchd:ports></metadata>"
            f"<devices>{ifaces}</devices></domain>")


@pytest.fixture
def links(require_root: None) -> Iterator[Callable[[], str]]:
    made: list[str] = []

    def make() -> str:
        name = unique_name("vmh")
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        made.append(name)
        return name

    yield make
    for name in made:
        sh("ip", "link", "del", "dev", name, check=False)


def names(d: RunningDaemon) -> dict[str, dict]:
    return {p["name"]: p for p in d.ctl("show")["ports"]}


def test_hook_attaches_a_domains_ports_keeps_them_over_reload_and_restart_then_detaches(
        daemon, links) -> None:
    a, b = links(), links()
    d = daemon({}, acls={"web": [{"name": "r1", "weight": 10, "direction": "in",
                                  "action": "allow", "protocol": "tcp", "local_port": 80}]})
    xml = domain_xml("web1", [(a, "52:54:00:00:00:0a"), (b, "52:54:00:00:00:0b")],
                     '<vswitchd:port mac="52:54:00:00:00:0a" vlan="10" acls="web" '
                     'max_bandwidth_out="500Mbit"/>'
                     '<vswitchd:port mac="52:54:00:00:00:0b" mode="trunk" vlans="10-20"/>')
    r = hook(d, xml, "web1", "start", "begin", "-")
    assert r.returncode == 0, r.stderr
    p = names(d)
    assert (p[a]["type"], p[a]["vlan"], p[a]["acls"], p[a]["max_bandwidth_out"],
            p[a]["attached_by"]) == ("netdev", 10, ["web"], 500_000_000, "libvirt web1")
    assert p[b]["vlans"] == "10-20"

    assert hook(d, xml, "web1", "reconnect", "begin", "-").returncode == 0
    assert d.ctl_raw("reload").returncode == 0
    assert set(names(d)) == {a, b}

    # Restart: the daemon's record brings back the ports whose interface is still there.
    assert d.stop() == 0
    sh("ip", "link", "del", "dev", b)
    (d.tmp / "notify.sock").unlink()
    d.start()
    p = names(d)
    assert set(p) == {a} and p[a]["attached_by"] == "libvirt web1" and p[a]["vlan"] == 10

    for op in ("stopped", "release"):
        r = hook(d, xml, "web1", op, "end", "-")
        assert r.returncode == 0, r.stderr
    assert names(d) == {}


@pytest.mark.parametrize(("attrs", "message"), [
    ('vlan="10" acls="nope"',
     '<vswitchd:port mac="52:54:00:00:00:0b">: acls: no ACL set "nope" (defined: none)'),
    ('vlan="4095"', '<vswitchd:port mac="52:54:00:00:00:0b">: vlan: 4095 is not in 1-4094'),
])
def test_hook_refuses_a_bad_port_with_one_line_and_attaches_none_of_the_domain(
        daemon, links, attrs: str, message: str) -> None:
    a, b = links(), links()
    d = daemon({})
    xml = domain_xml("db1", [(a, "52:54:00:00:00:0a"), (b, "52:54:00:00:00:0b")],
                     f'<vswitchd:port mac="52:54:00:00:00:0a" vlan="10"/>'
                     f'<vswitchd:port mac="52:54:00:00:00:0b" {attrs}/>')
    r = hook(d, xml, "db1", "start", "begin", "-")
    assert r.returncode == 1
    assert r.stderr == f"vswitchd: domain db1: {message}\n"
    assert names(d) == {}


def test_qemu_ifup_attaches_with_keys_from_the_environment_and_ifdown_detaches(
        daemon, links) -> None:
    tap = links()
    d = daemon({})
    env = dict(os.environ, VSWITCHD_SOCKET=d.socket, VSWITCHD_MODE="trunk",
               VSWITCHD_VLANS="100-200", VSWITCHD_NATIVE_VLAN="150")
    r = subprocess.run([str(BIN / "vswitchd-qemu-ifup"), tap], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    p = names(d)[tap]
    assert (p["mode"], p["vlans"], p["native_vlan"], p["attached_by"]) == (
        "trunk", "100-200", 150, "qemu-ifup")
    assert sh("cat", f"/sys/class/net/{tap}/flags").stdout.strip() != "0x1002"  # set up

    bad = subprocess.run([str(BIN / "vswitchd-qemu-ifup"), tap, "vlan=0"], capture_output=True,
                         text=True, timeout=30, env=dict(os.environ, VSWITCHD_SOCKET=d.socket))
    assert bad.returncode == 1 and bad.stderr == (
        f"vswitchd-qemu-ifup {tap}: ports.{tap}.vlan: 0 is not in 1-4094\n")
    r = subprocess.run([str(BIN / "vswitchd-qemu-ifdown"), tap], env=env, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert names(d) == {}
