"""Namespaces, veth pairs and a Linux bridge for one benchmark configuration.

Every object is named `vsb-<tag>-<role>` (at most 15 characters), where the
tag is unique to one `Topology`, and is recorded the moment it is created.
`close()` deletes exactly those names, in reverse order, and tolerates
objects that are already gone (a TAP vanishes when its switch exits).
Nothing is ever looked up or deleted by pattern.

Addressing: end host `i` (a, b, c, d) lives in namespace `vsb-<tag>-<x>` with
one interface carrying 10.199.0.<i+1>/24; all hosts share one L2 segment.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from proc import BenchError, run

PREFIX = "vsb-"
IFNAMSIZ = 15
SUBNET = "10.199.0"
LETTERS = "abcd"
_counter = 0


def new_tag() -> str:
    """A short tag unique within this run and unlikely to collide across runs."""
    global _counter
    _counter += 1
    return f"{secrets.token_hex(1)}{_counter:x}"


@dataclass
class Host:
    """One end host: a namespace and the interface its traffic leaves by."""

    ns: str
    ifname: str
    ip: str
    mac: str = ""


@dataclass
class Topology:
    """The namespaces/links/bridges of one configuration; a context manager."""

    tag: str = field(default_factory=new_tag)
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)      # host-namespace links we created
    ns_links: list[tuple[str, str]] = field(default_factory=list)  # (ns, ifname) others made

    def name(self, role: str) -> str:
        n = f"{PREFIX}{self.tag}-{role}"
        if len(n) > IFNAMSIZ:
            raise BenchError(f"name {n!r} longer than {IFNAMSIZ} characters")
        return n

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Building blocks.

    def add_netns(self, letter: str) -> str:
        ns = self.name(letter)
        run(["ip", "netns", "add", ns], 10)
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"], 10)
        return ns

    def add_veth(self, host_if: str, ns_if: str, ns: str, switch_ns: str | None = None) -> None:
        """A veth pair: `host_if` stays here (or in `switch_ns`), up; `ns_if`
        goes into `ns`."""
        ip = ["ip"] + (["-n", switch_ns] if switch_ns else [])
        run([*ip, "link", "add", host_if, "type", "veth", "peer", "name", ns_if], 10)
        if switch_ns:
            self.track_ns_link(switch_ns, host_if)
        else:
            self.links.append(host_if)
        run([*ip, "link", "set", ns_if, "netns", ns], 10)
        run([*ip, "link", "set", host_if, "up"], 10)

    def add_bridge(self, switch_ns: str | None = None) -> str:
        br = self.name("br")
        ip = ["ip"] + (["-n", switch_ns] if switch_ns else [])
        run([*ip, "link", "add", br, "type", "bridge"], 10)
        if switch_ns:
            self.track_ns_link(switch_ns, br)
        else:
            self.links.append(br)
        run([*ip, "link", "set", br, "up"], 10)
        return br

    def track_ns_link(self, ns: str, ifname: str) -> None:
        """Remember an interface a switch created and moved into `ns`."""
        self.ns_links.append((ns, ifname))

    def host_on_tap(self, index: int, ns: str, tap: str) -> Host:
        """Move `tap`, which a switch created in our namespace, into `ns` and
        make it end host number `index` there."""
        move_to_netns(tap, ns)
        self.track_ns_link(ns, tap)
        return self.configure_host(index, ns, tap)

    def configure_host(self, index: int, ns: str, ifname: str) -> Host:
        """Address and bring up `ifname` in `ns` as host number `index`."""
        ip = f"{SUBNET}.{index + 1}"
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname], 10)
        run(["ip", "-n", ns, "link", "set", ifname, "up"], 10)
        return Host(ns=ns, ifname=ifname, ip=ip, mac=link_mac(ifname, ns))

    # Whole topologies.

    def veth_hosts(self, count: int,
                   switch_ns: str | None = None) -> list[tuple[str, str, str]]:
        """`count` namespaces each with a veth pair whose other end is here (or
        in `switch_ns`); returns (ns, ns_if, host_if)."""
        out = []
        for letter in LETTERS[:count]:
            ns = self.add_netns(letter)
            host_if, ns_if = self.name(f"h{letter}"), self.name(f"n{letter}")
            self.add_veth(host_if, ns_if, ns, switch_ns)
            out.append((ns, ns_if, host_if))
        return out

    def bridge_hosts(self, count: int, switch_ns: str | None = None) -> list[Host]:
        """The Linux bridge reference: `count` namespaces on one bridge, which
        lives here or in `switch_ns` (the nftables rows keep their bridge,
        its rules and its br_netfilter setting out of the host's namespace)."""
        br = self.add_bridge(switch_ns)
        ip = ["ip"] + (["-n", switch_ns] if switch_ns else [])
        hosts = []
        for i, (ns, ns_if, host_if) in enumerate(self.veth_hosts(count, switch_ns)):
            run([*ip, "link", "set", host_if, "master", br], 10)
            hosts.append(self.configure_host(i, ns, ns_if))
        return hosts

    # Teardown.

    def close(self) -> None:
        """Delete what we created, by exact name, newest first; never raises."""
        errors = []
        for ns, ifname in reversed(self.ns_links):
            if ns in self.namespaces and link_exists(ifname, ns):
                errors += _try(["ip", "-n", ns, "link", "del", ifname])
        for link in reversed(self.links):
            if link_exists(link):
                errors += _try(["ip", "link", "del", link])
        for ns in reversed(self.namespaces):
            errors += _try(["ip", "netns", "del", ns])
        self.ns_links.clear()
        self.links.clear()
        self.namespaces.clear()
        if errors:
            print(f"bench: cleanup of {self.tag}: " + "; ".join(errors))


def _try(cmd: list[str]) -> list[str]:
    try:
        run(cmd, 15)
    except BenchError as e:
        return [str(e)]
    return []


def link_exists(ifname: str, ns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", ns] if ns else []) + ["link", "show", "dev", ifname]
    return run(cmd, 10, check=False).returncode == 0


def link_mac(ifname: str, ns: str | None = None) -> str:
    cmd = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", "dev", ifname]
    return str(json.loads(run(cmd, 10).stdout)[0]["address"])


def link_up(ifname: str, ns: str | None = None) -> bool:
    cmd = ["ip", "-j"] + (["-n", ns] if ns else []) + ["link", "show", "dev", ifname]
    res = run(cmd, 10, check=False)
    if res.returncode != 0:
        return False
    flags = json.loads(res.stdout)[0].get("flags", [])
    return "UP" in flags and "LOWER_UP" in flags


def move_to_netns(ifname: str, ns: str) -> None:
    run(["ip", "link", "set", ifname, "netns", ns], 10)
