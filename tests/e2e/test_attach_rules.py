"""[attach.NAME] rules with real interfaces: ports that come and go with them.

The interfaces are veths whose far end is created straight inside a test
namespace (so only the near end ever matches the rule's glob); the QEMU
version of the same story is tests/vm/test_vm_attach.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.e2e.conftest import sh, unique_name
from tests.e2e.daemon_fixture import RunningDaemon
from tests.e2e.nsnet import addr, ping, ping_loss


def rule(name: str, glob: str, **keys: object) -> str:
    lines = [f"[attach.{name}]", f'ifname = "{glob}"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in keys.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def vm_link(require_root: None) -> Iterator[Callable[[str, str], None]]:
    """Factory: `vm_link(name, netns)` makes a veth `name` whose peer "eth0"
    lives in `netns`; deleted by exact name after the test."""
    made: list[str] = []

    def make(name: str, netns: str) -> None:
        sh("ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", netns)
        made.append(name)
        sh("ip", "-n", netns, "link", "set", "eth0", "up")

    yield make
    for name in made:
        sh("ip", "link", "del", "dev", name, check=False)


def ports(d: RunningDaemon) -> dict[str, dict]:
    return {p["name"]: p for p in d.ctl("show")["ports"]}


def wait_for(cond: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def test_rule_attaches_a_matching_interface_when_it_appears_and_detaches_it_when_it_goes(
        daemon, netns, vm_link) -> None:
    ns, vm = netns(), netns()
    ns_tap, base = unique_name("vms"), unique_name("vr")
    d = daemon({"ns": {"type": "tap", "ifname": ns_tap, "netns": ns, "vlan": 10}},
               extra_toml=rule("vms", f"{base}*", mode="access", vlan=10))
    vm_link(f"{base}a", vm)
    wait_for(lambda: f"{base}a" in ports(d), f"port {base}a attached")
    p = ports(d)[f"{base}a"]
    assert (p["type"], p["ifname"], p["vlan"], p["attached_by"]) == (
        "netdev", f"{base}a", 10, "rule vms")
    assert f'port {base}a: attached_by = "rule vms"' in d.ctl_raw("show").stdout
    assert ports(d)["ns"]["attached_by"] is None
    d.wait_ports_up("ns", f"{base}a")
    addr(ns, ns_tap, "10.94.0.1/24")
    addr(vm, "eth0", "10.94.0.2/24")
    r = ping(vm, "10.94.0.1", count=3, interval=0.2)
    assert ping_loss(r.stdout) == 0, r.stdout

    sh("ip", "link", "del", "dev", f"{base}a")
    wait_for(lambda: f"{base}a" not in ports(d), f"port {base}a detached")


def test_reload_keeps_rule_ports_remakes_them_when_the_rule_changes_and_yields_to_ports(
        daemon, netns, vm_link) -> None:
    vm = netns()
    base = unique_name("vr")
    link = f"{base}a"
    vm_link(link, vm)                      # there before the daemon: found at start
    d = daemon({}, extra_toml=rule("vms", f"{base}*", vlan=10))
    wait_for(lambda: link in ports(d), f"attached at start: {d.log()}")

    assert d.ctl_raw("reload").returncode == 0
    assert ports(d)[link]["vlan"] == 10 and ports(d)[link]["attached_by"] == "rule vms"

    d.write_config(extra_toml=rule("vms", f"{base}*", vlan=20))
    assert d.ctl_raw("reload").returncode == 0
    wait_for(lambda: ports(d).get(link, {}).get("vlan") == 20, "re-made on VLAN 20")

    d.write_config(ports={"explicit": {"type": "netdev", "ifname": link, "vlan": 30}})
    assert d.ctl_raw("reload").returncode == 0
    wait_for(lambda: link not in ports(d), "rule port gone")
    assert ports(d)["explicit"]["vlan"] == 30 and ports(d)["explicit"]["attached_by"] is None

    d.write_config(ports={})               # the interface is free again: the rule takes it
    assert d.ctl_raw("reload").returncode == 0
    wait_for(lambda: ports(d).get(link, {}).get("attached_by") == "rule vms", "rule again")


def test_overlapping_rules_are_refused_naming_both_keys(tmp_path) -> None:
    d = RunningDaemon(tmp_path, {}, extra_toml=rule("a", "vnet*") + rule("b", "*7"))
    out = subprocess.run([sys.executable, "-m", "vswitchd.daemon", "--check", "--config",
                          str(d.config_path)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip() == ('vswitchd: attach.b.ifname: "*7" overlaps attach.a.ifname '
                                  '"vnet*" (both match "vnet7"; one interface, one rule)')
