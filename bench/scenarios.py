"""The benchmark configurations: what each row of the table sets up.

A scenario is a context manager that builds the topology and the switch, and
yields a `Setup` (the end hosts and the PID whose CPU time is the switch's).
Teardown runs in reverse order of construction -- the switch first (which
removes the TAPs it created), then links and namespaces -- with SIGINT
ignored, so a second Ctrl-C cannot interrupt the cleanup half-way.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import overlay
import policy
from ovs import OvsInstance
from proc import BenchError, in_netns, run
from topology import LETTERS, Host, Topology
from vswitchd_runner import PortSpec, VswitchdInstance
from wire import WireInstance


@dataclass(frozen=True)
class Config:
    """One row: which switch, which ports, how many workers and end hosts."""

    name: str
    family: str                  # "bridge" | "ovs" | "vswitchd" | "wire" (kernel floor)
    ports: str                   # "veth" | "tap" | "tap-tso" | "tap-nooff" | "netdev"
    #                              | "vxlan-vsw" | "vxlan-kernel" | "vxlan-ovs" (bench/overlay.py)
    hosts: int = 2
    workers: int = 0             # vswitchd only
    ovs_match: str | None = None     # the Open vSwitch row this one is compared with
    bridge_match: str = "bridge"     # the Linux bridge row this one is compared with
    quick: bool = False              # part of --quick
    # vswitchd only: a capture (`vswitchctl capture`) runs all along on one
    # more port, which carries no traffic: the cost an idle capture adds.
    capture: bool = False
    acl_rules: int = 0               # policy rows: rules on host A's port (bench/policy.py)
    stateful: bool = False           # policy rows: the stateful variant

    @property
    def policy(self) -> policy.Policy | None:
        return policy.bench_policy(self.acl_rules, self.stateful) if self.acl_rules else None


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
    # Port policy (issue 10): the same rules on host A's port in each switch,
    # the measured traffic matched behind N-1 rules that never match it.
    Config("vsw-tap-acl1", "vswitchd", "tap", workers=1, acl_rules=1, ovs_match="ovs-tap-tso"),
    Config("vsw-tap-acl100", "vswitchd", "tap", workers=1, acl_rules=100,
           ovs_match="ovs-tap-tso"),
    Config("vsw-tap-acl1000", "vswitchd", "tap", workers=1, acl_rules=1000,
           ovs_match="ovs-tap-tso-ct1000", bridge_match="bridge-nft1000", quick=True),
    Config("vsw-tap-acl1000-stateful", "vswitchd", "tap", workers=1, acl_rules=1000,
           stateful=True, ovs_match="ovs-tap-tso-ct1000",
           bridge_match="bridge-nft1000-stateful"),
    Config("bridge-nft1000", "bridge", "veth", acl_rules=1000),
    Config("bridge-nft1000-stateful", "bridge", "veth", acl_rules=1000, stateful=True),
    Config("ovs-tap-tso-acl1000", "ovs", "tap-tso", acl_rules=1000,
           bridge_match="bridge-nft1000"),
    Config("ovs-tap-tso-ct1000", "ovs", "tap-tso", acl_rules=1000, stateful=True,
           bridge_match="bridge-nft1000-stateful"),
    # VXLAN between two namespace-hosts (issue 9, bench/overlay.py): the
    # in-kernel reference is the "bridge" row of the vswitchd one.
    Config("vxlan-vsw", "vswitchd", "vxlan-vsw", workers=1, ovs_match="vxlan-ovs",
           bridge_match="vxlan-kernel", quick=True),
    Config("vxlan-kernel", "bridge", "vxlan-kernel", bridge_match="vxlan-kernel", quick=True),
    Config("vxlan-ovs", "ovs", "vxlan-ovs", bridge_match="vxlan-kernel", quick=True),
)
BY_NAME = {c.name: c for c in CONFIGS}


@dataclass
class Setup:
    hosts: list[Host]
    switch_pid: int | None
    switch_log: Path | None = None
    # Policy rows: what was loaded (rule/flow counts), and a function that
    # reads the switch's policy counters after the traffic (for the record:
    # the measured traffic went through the rule meant to pass it).
    policy_loaded: dict[str, Any] = field(default_factory=dict)
    policy_counters: Callable[[], dict[str, Any]] | None = None
    # More switch processes whose CPU counts (the VXLAN rows: one per host).
    extra_pids: list[int] = field(default_factory=list)

    def cpu_pids(self) -> list[int]:
        return ([self.switch_pid] if self.switch_pid else []) + self.extra_pids

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
        if cfg.ports.startswith("vxlan-"):
            yield overlay.build(cfg, topo, stack, workdir, code_dir)
        elif cfg.family == "bridge" and cfg.policy:
            yield _bridge_nft(cfg, topo, workdir)
        elif cfg.family == "bridge":
            yield Setup(topo.bridge_hosts(cfg.hosts), None)
        elif cfg.family == "ovs":
            yield _ovs(cfg, topo, stack, workdir)
        elif cfg.family == "wire":
            yield _wire(cfg, topo, stack, workdir)
        else:
            yield _vswitchd(cfg, topo, stack, workdir, code_dir)


def _bridge_nft(cfg: Config, topo: Topology, workdir: Path) -> Setup:
    """The Linux bridge with the row's policy as nftables rules.

    The bridge lives in a namespace of its own, so its ruleset and the
    br_netfilter switch the stateful variant needs (bridged IP through the
    inet hooks and conntrack) are the namespace's, not the host's."""
    pol = cfg.policy
    assert pol is not None
    sw_ns = topo.add_netns("s")
    hosts = topo.bridge_hosts(cfg.hosts, switch_ns=sw_ns)
    a_port = topo.name("ha")
    run(in_netns(sw_ns, "sysctl", "-qw",
                 f"net.bridge.bridge-nf-call-iptables={1 if pol.stateful else 0}"), 10)
    script = workdir / "nft.rules"
    script.write_text(policy.nft_ruleset(pol, a_port, hosts[0].ip))
    run(in_netns(sw_ns, "nft", "-f", str(script)), 60)
    listed = json.loads(run(in_netns(sw_ns, "nft", "-j", "list", "ruleset"), 30).stdout)
    n = sum(1 for item in listed.get("nftables", []) if "rule" in item)
    return Setup(hosts, None, policy_loaded={"nft_rules": n, "family": "inet" if pol.stateful
                                             else "bridge"})


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
    setup = Setup(hosts, ovs.pid, workdir / "ovs" / "ovs-vswitchd.log")
    pol = cfg.policy
    if pol:
        a_tap = topo.name("ta") if cfg.ports != "veth" else topo.name("ha")
        flows = policy.openflow_flows(pol, ovs.ofport(a_tap), hosts[0].mac)
        setup.policy_loaded = {"openflow_flows": ovs.replace_flows(br, flows)}
        setup.policy_counters = lambda: _ovs_counters(ovs, br)
    return setup


def _ovs_counters(ovs: OvsInstance, br: str) -> dict[str, Any]:
    """Packets per flow that is not a filler (a filler never matches: 0)."""
    out = run(["ovs-ofctl", "dump-flows", br], 30, env=ovs.env).stdout
    flows: dict[str, Any] = {}
    fillers = 0
    for line in out.splitlines():
        if "n_packets=" not in line:
            continue
        packets = int(line.split("n_packets=", 1)[1].split(",", 1)[0])
        spec = line.split("priority=", 1)[-1]
        if policy.is_filler_flow(spec):
            fillers += packets
        else:
            flows[spec] = packets
    return {"flows": flows, "filler_packets": fillers}


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
    pol = cfg.policy
    acl_sets = {"bench": policy.vswitchd_rules(pol)} if pol else None
    # The policy goes on host A's port (p0): A is the sender, the "VM".
    acl_keys: dict[str, Any] = {"acls": ("bench",), "acl_default": pol.default} if pol else {}
    ports: list[PortSpec] = []
    ns_ifs: list[tuple[str, str]] = []
    if cfg.ports == "netdev":
        for ns, ns_if, host_if in topo.veth_hosts(cfg.hosts):
            ports.append(PortSpec(name=f"p{len(ports)}", type="netdev", ifname=host_if,
                                  **(acl_keys if not ports else {})))
            ns_ifs.append((ns, ns_if))
    else:
        for letter in LETTERS[:cfg.hosts]:
            ns = topo.add_netns(letter)
            tap = topo.name(f"t{letter}")
            ports.append(PortSpec(name=f"p{len(ports)}", type="tap", ifname=tap, netns=ns,
                                  offload=cfg.ports != "tap-nooff",
                                  **(acl_keys if not ports else {})))
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
    sw = VswitchdInstance(workdir / "vswitchd", ports, cfg.workers, code_dir, acl_sets)
    stack.callback(sw.stop)
    sw.start()
    if cfg.capture:
        capture = sw.capture("captured")
        stack.callback(capture.stop)
    if not early:
        hosts = [topo.configure_host(i, ns, ifname) for i, (ns, ifname) in enumerate(ns_ifs)]
    setup = Setup(hosts, sw.pid, sw.dir / "vswitchd.log")
    if pol:
        report = _vswitchd_acl(sw)
        loaded = len(report["rules"])
        if loaded != len(pol.rules):
            raise BenchError(f"vswitchd loaded {loaded} ACL rules on p0, "
                             f"the policy has {len(pol.rules)}")
        setup.policy_loaded = {"vswitchd_rules": loaded}
        setup.policy_counters = lambda: _vswitchd_counters(sw)
    return setup


def _vswitchd_acl(sw: VswitchdInstance) -> dict[str, Any]:
    res = run([*sw.cli_cmd(), "--json", "acl", "show", "--port", "p0"], 15, cwd=sw.code)
    [report] = json.loads(res.stdout)
    return dict(report)


def _vswitchd_counters(sw: VswitchdInstance) -> dict[str, Any]:
    """Packets per rule that is not a filler, fillers' total (0), the default's."""
    report = _vswitchd_acl(sw)
    rules = {r["rule"]: r["packets"] for r in report["rules"] if not r["rule"].startswith("f")}
    fillers = sum(r["packets"] for r in report["rules"] if r["rule"].startswith("f"))
    return {"rules": rules, "filler_packets": fillers, "default": report["default"],
            "sessions": report.get("sessions")}
