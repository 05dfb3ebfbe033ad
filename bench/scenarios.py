"""The benchmark configurations: what each row of the table sets up.

A scenario is a context manager that builds the topology and the switch, and
yields a `Setup` (the end hosts and the PID whose CPU time is the switch's).
Teardown runs in reverse order of construction -- the switch first (which
removes the TAPs it created), then links and namespaces -- with SIGINT
ignored, so a second Ctrl-C cannot interrupt the cleanup half-way.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ovs import OvsInstance
from topology import LETTERS, Host, Topology
from vswitchd_runner import PortSpec, VswitchdInstance
from wire import WireInstance


@dataclass(frozen=True)
class Config:
    """One row: which switch, which ports, how many workers and end hosts."""

    name: str
    family: str                  # "bridge" | "ovs" | "vswitchd" | "wire" (kernel floor)
    ports: str                   # "veth" | "tap" | "tap-tso" | "tap-nooff" | "netdev"
    hosts: int = 2
    workers: int = 0             # vswitchd only
    ovs_match: str | None = None     # the Open vSwitch row this one is compared with
    bridge_match: str = "bridge"     # the Linux bridge row this one is compared with
    quick: bool = False              # part of --quick
    # vswitchd only: a capture (`vswitchctl capture`) runs all along on one
    # more port, which carries no traffic: the cost an idle capture adds.
    capture: bool = False


CONFIGS: tuple[Config, ...] = (
    Config("bridge", "bridge", "veth", quick=True),
    Config("ovs-tap", "ovs", "tap"),
    Config("ovs-tap-tso", "ovs", "tap-tso", quick=True),
    Config("ovs-veth-tso", "ovs", "veth", quick=True),
    Config("vsw-tap-w1", "vswitchd", "tap", workers=1, ovs_match="ovs-tap-tso", quick=True),
    Config("vsw-tap-w2", "vswitchd", "tap", workers=2, ovs_match="ovs-tap-tso"),
    Config("vsw-tap-cap-w1", "vswitchd", "tap", workers=1, ovs_match="ovs-tap-tso",
           capture=True),
    Config("vsw-tap-nooff-w1", "vswitchd", "tap-nooff", workers=1, ovs_match="ovs-tap"),
    Config("vsw-tap-nooff-w2", "vswitchd", "tap-nooff", workers=2, ovs_match="ovs-tap"),
    Config("vsw-netdev-w1", "vswitchd", "netdev", workers=1, ovs_match="ovs-veth-tso",
           quick=True),
    Config("vsw-netdev-w2", "vswitchd", "netdev", workers=2, ovs_match="ovs-veth-tso"),
    # The kernel's floor: a bare forwarding loop with vswitchd's I/O, no switching.
    Config("wire-tap", "wire", "tap", ovs_match="ovs-tap-tso", quick=True),
    Config("wire-tap-nooff", "wire", "tap-nooff", ovs_match="ovs-tap"),
    Config("wire-veth", "wire", "netdev", ovs_match="ovs-veth-tso"),
    Config("bridge-4ns", "bridge", "veth", hosts=4, bridge_match="bridge-4ns"),
    Config("vsw-tap-4ns-w1", "vswitchd", "tap", hosts=4, workers=1,
           bridge_match="bridge-4ns"),
    Config("vsw-tap-4ns-w2", "vswitchd", "tap", hosts=4, workers=2,
           bridge_match="bridge-4ns"),
)
BY_NAME = {c.name: c for c in CONFIGS}


@dataclass
class Setup:
    hosts: list[Host]
    switch_pid: int | None
    switch_log: Path | None = None

    def pairs(self) -> list[tuple[Host, Host]]:
        """A->B, and C->D when there are four hosts."""
        return [(self.hosts[i], self.hosts[i + 1]) for i in range(0, len(self.hosts) - 1, 2)]


@contextlib.contextmanager
def _shielded_exit(stack: contextlib.ExitStack) -> Iterator[contextlib.ExitStack]:
    try:
        yield stack
    finally:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            stack.close()
        finally:
            signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def build(cfg: Config, workdir: Path, code_dir: Path) -> Iterator[Setup]:
    """Set up `cfg` under `workdir` (vswitchd from `code_dir`); tear it all down on exit."""
    with _shielded_exit(contextlib.ExitStack()) as stack:
        topo = stack.enter_context(Topology())
        if cfg.family == "bridge":
            yield Setup(topo.bridge_hosts(cfg.hosts), None)
        elif cfg.family == "ovs":
            yield _ovs(cfg, topo, stack, workdir)
        elif cfg.family == "wire":
            yield _wire(cfg, topo, stack, workdir)
        else:
            yield _vswitchd(cfg, topo, stack, workdir, code_dir)


def _ovs(cfg: Config, topo: Topology, stack: contextlib.ExitStack, workdir: Path) -> Setup:
    ovs = OvsInstance(workdir / "ovs", userspace_tso=cfg.ports != "tap")
    stack.callback(ovs.stop)
    ovs.start()
    br = topo.name("ovs")
    # OVS creates the bridge's internal port as a TAP in our namespace.
    topo.links.append(br)
    ovs.add_bridge(br)
    hosts = []
    if cfg.ports == "veth":
        for i, (ns, ns_if, host_if) in enumerate(topo.veth_hosts(cfg.hosts)):
            ovs.add_system_port(br, host_if)
            hosts.append(topo.configure_host(i, ns, ns_if))
    else:
        for i, letter in enumerate(LETTERS[:cfg.hosts]):
            ns = topo.add_netns(letter)
            tap = topo.name(f"t{letter}")
            topo.links.append(tap)      # in case OVS exits before we move it
            ovs.add_tap_port(br, tap)
            hosts.append(topo.host_on_tap(i, ns, tap))
    return Setup(hosts, ovs.pid, workdir / "ovs" / "ovs-vswitchd.log")


def _wire(cfg: Config, topo: Topology, stack: contextlib.ExitStack, workdir: Path) -> Setup:
    if cfg.ports == "netdev":
        veths = topo.veth_hosts(2)
        hosts = [topo.configure_host(i, ns, ns_if) for i, (ns, ns_if, _) in enumerate(veths)]
        wire = WireInstance(workdir / "wire", "packet", veths[0][2], veths[1][2])
        stack.callback(wire.stop)
        wire.start()
        return Setup(hosts, wire.pid, wire.log_path)
    letters = LETTERS[:2]
    taps = [topo.name(f"t{letter}") for letter in letters]
    topo.links.extend(taps)             # in case the wire exits before we move them
    wire = WireInstance(workdir / "wire", "tap", taps[0], taps[1],
                        offload=cfg.ports != "tap-nooff")
    stack.callback(wire.stop)
    wire.start()
    hosts = [topo.host_on_tap(i, topo.add_netns(letter), tap)
             for i, (letter, tap) in enumerate(zip(letters, taps, strict=True))]
    return Setup(hosts, wire.pid, wire.log_path)


def _vswitchd(cfg: Config, topo: Topology, stack: contextlib.ExitStack,
              workdir: Path, code_dir: Path) -> Setup:
    ports: list[PortSpec] = []
    ns_ifs: list[tuple[str, str]] = []
    if cfg.ports == "netdev":
        for ns, ns_if, host_if in topo.veth_hosts(cfg.hosts):
            ports.append(PortSpec(name=f"p{len(ports)}", type="netdev", ifname=host_if))
            ns_ifs.append((ns, ns_if))
    else:
        for letter in LETTERS[:cfg.hosts]:
            ns = topo.add_netns(letter)
            tap = topo.name(f"t{letter}")
            ports.append(PortSpec(name=f"p{len(ports)}", type="tap", ifname=tap, netns=ns,
                                  offload=cfg.ports != "tap-nooff"))
            topo.track_ns_link(ns, tap)
            ns_ifs.append((ns, tap))
    if cfg.capture:
        letter = LETTERS[cfg.hosts]
        ns = topo.add_netns(letter)
        tap = topo.name(f"t{letter}")
        # On a VLAN of its own: no flood of the measured traffic reaches it.
        ports.append(PortSpec(name="captured", type="tap", ifname=tap, netns=ns, vlan=2))
        topo.track_ns_link(ns, tap)
    # A veth has carrier only once both ends are up, and vswitchd reports a
    # netdev port's link as it is: address the hosts first on veth.  TAPs
    # only exist once vswitchd has created them.
    early = cfg.ports == "netdev"
    hosts = [topo.configure_host(i, ns, ifname) for i, (ns, ifname) in enumerate(ns_ifs)
             ] if early else []
    sw = VswitchdInstance(workdir / "vswitchd", ports, cfg.workers, code_dir)
    stack.callback(sw.stop)
    sw.start()
    if cfg.capture:
        capture = sw.capture("captured")
        stack.callback(capture.stop)
    if not early:
        hosts = [topo.configure_host(i, ns, ifname) for i, (ns, ifname) in enumerate(ns_ifs)]
    return Setup(hosts, sw.pid, sw.dir / "vswitchd.log")
