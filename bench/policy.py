"""One abstract port policy, rendered for vswitchd, nftables and OpenFlow.

The policy rows (`vsw-tap-acl*`, `bridge-nft*`, `ovs-tap-tso-acl*/ct*`)
must filter the same traffic with the same rules, or their ratios mean
nothing; so the rules are written once here, as Hyper-V-style port ACL
rules on the sender's port (host A, the "VM"), and rendered three ways:

- vswitchd: `[acls.bench]` rule tables (vswitchd/acl_config.py syntax);
- nftables: a forward chain that jumps to one chain per direction;
  stateless in the `bridge` family, keyed by bridge port
  (`iifname`/`oifname`); stateful in the `inet` family through
  br_netfilter, keyed by A's address, because this kernel has no
  nf_conntrack_bridge (`ct state` in a bridge-family chain is refused with
  "Protocol error");
- Open vSwitch: OpenFlow flows (table 0 sorts by direction, one table per
  direction, NORMAL to forward); stateful with `ct(table=...)` and
  `ct(commit)`, established traffic accepted before the rule tables.

Directions are the VM's (as in vswitchd): "out" = from A, "in" = toward A;
`remote_*` is the other side.  The measured flows (iperf3 A->B on TCP 5201,
trafgen's UDP 9->9 to an unowned address, ping) never match the N-1 filler
rules, so every IP frame is checked against all of them before the rule
that lets it through: the worst place in the list for a linear classifier.

    stateless(N): N-1 x deny tcp remote_ip <distinct /32> remote_port <P> (both)
                  1 x allow remote_ip 10.199.0.0/24 (both)
                  + allow ARP (both); default deny
    stateful(N):  N-1 x deny tcp remote_ip <distinct /32> remote_port <P> (out)
                  allow tcp, udp, icmp out, stateful
                  + allow ARP (both); deny all in; default deny
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from topology import SUBNET

BENCH_NET = f"{SUBNET}.0/24"
FILLER_NET = ipaddress.ip_network("10.200.0.0/14")   # disjoint from the bench subnet
ARP = 0x0806
PROTO_NUM = {"tcp": 6, "udp": 17, "icmp": 1}


@dataclass(frozen=True)
class Rule:
    """One rule, vswitchd's model; None matches anything."""

    name: str
    weight: int
    direction: str                   # "in" | "out" | "both"
    action: str                      # "allow" | "deny"
    protocol: str | None = None      # "tcp" | "udp" | "icmp"
    remote_ip: str | None = None     # address or CIDR
    remote_port: int | None = None
    ethertype: int | None = None
    stateful: bool = False

    @property
    def directions(self) -> tuple[str, ...]:
        return ("in", "out") if self.direction == "both" else (self.direction,)


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...]          # weight descending
    stateful: bool
    default: str = "deny"

    @property
    def n_fillers(self) -> int:
        return sum(r.name.startswith("f") for r in self.rules)


def _fillers(n: int, direction: str, top_weight: int) -> list[Rule]:
    base = int(FILLER_NET.network_address)
    return [Rule(f"f{i}", top_weight - i, direction, "deny", protocol="tcp",
                 remote_ip=f"{ipaddress.ip_address(base + i + 1)}/32",
                 remote_port=1024 + i % 60000)
            for i in range(n)]


def bench_policy(n_rules: int, stateful: bool = False) -> Policy:
    """The policy of the rows with `n_rules` rules (see the module doc)."""
    if not 1 <= n_rules <= 9000:
        raise ValueError(f"n_rules {n_rules} not in 1-9000")
    top = 10_000 + n_rules
    arp = Rule("arp", 20, "both", "allow", ethertype=ARP)
    if not stateful:
        rules = [*_fillers(n_rules - 1, "both", top),
                 Rule("allow-bench", 100, "both", "allow", remote_ip=BENCH_NET), arp]
    else:
        rules = [*_fillers(n_rules - 1, "out", top),
                 *(Rule(f"out-{p}", 100 - i, "out", "allow", protocol=p, stateful=True)
                   for i, p in enumerate(("tcp", "udp", "icmp"))),
                 arp, Rule("deny-in", 1, "in", "deny")]
    return Policy(tuple(rules), stateful)


# --- vswitchd -----------------------------------------------------------------------

def vswitchd_rules(policy: Policy) -> list[dict[str, object]]:
    """The rules as vswitchd's `[acls.NAME] rules = [...]` tables."""
    out: list[dict[str, object]] = []
    for r in policy.rules:
        d: dict[str, object] = {"name": r.name, "weight": r.weight,
                                "direction": r.direction, "action": r.action}
        if r.protocol:
            d["protocol"] = r.protocol
        if r.remote_ip:
            d["remote_ip"] = r.remote_ip
        if r.remote_port is not None:
            d["remote_port"] = str(r.remote_port)
        if r.ethertype is not None:
            d["ethertype"] = f"0x{r.ethertype:04x}"
        if r.stateful:
            d["stateful"] = True
        out.append(d)
    return out


def toml_inline(d: dict[str, object]) -> str:
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return f'"{v}"'
    return "{ " + ", ".join(f"{k} = {value(v)}" for k, v in d.items()) + " }"


# --- nftables -----------------------------------------------------------------------

NFT_TABLE = "vsb_acl"


def _nft_match(r: Rule, direction: str) -> str:
    """The nft expression of `r` for A's traffic in `direction`."""
    # out: A is the source, the remote side the destination; in: reversed.
    far, far_port = ("daddr", "dport") if direction == "out" else ("saddr", "sport")
    words = []
    if r.ethertype == ARP:
        words.append("ether type arp")
    if r.remote_ip:
        words.append(f"ip {far} {r.remote_ip}")
    if r.protocol and r.remote_port is not None:
        words.append(f"{r.protocol} {far_port} {r.remote_port}")
    elif r.protocol:
        words.append(f"meta l4proto {r.protocol}")
    words.append("accept" if r.action == "allow" else "drop")
    return " ".join(words)


def nft_ruleset(policy: Policy, a_port: str, a_ip: str) -> str:
    """An `nft -f` script for the switch namespace's bridge.

    The forward chain sends A's traffic to one regular chain per direction
    (as an nft user would write it, and as the OpenFlow rendering has one
    table per direction), so a frame walks only its direction's rules.
    Stateless: bridge family, A's traffic picked by bridge port `a_port`.
    Stateful: inet family (br_netfilter hands bridged IP to it, and
    conntrack with it), A's traffic picked by `a_ip`, established and
    related traffic accepted first; ARP never reaches an inet chain, so
    the ARP rule has nothing to render there."""
    if policy.stateful:
        family = "inet"
        sel = {"out": f"ip saddr {a_ip}", "in": f"ip daddr {a_ip}"}
        hook = ["ct state established,related accept"]
    else:
        family = "bridge"
        sel = {"out": f'iifname "{a_port}"', "in": f'oifname "{a_port}"'}
        hook = []
    hook += [f"{sel['out']} jump acl_out", f"{sel['in']} jump acl_in"]
    chains: dict[str, list[str]] = {"out": [], "in": []}
    for r in policy.rules:
        if policy.stateful and r.ethertype == ARP:
            continue
        for d in r.directions:
            chains[d].append(_nft_match(r, d))
    if policy.default == "deny":
        for lines in chains.values():
            if lines[-1:] != ["drop"]:      # "deny-in" already is one
                lines.append("drop")

    def chain(name: str, head: list[str], lines: list[str]) -> str:
        body = "\n".join(f"    {line}" for line in [*head, *lines])
        return f"  chain {name} {{\n{body}\n  }}\n"

    return (f"table {family} {NFT_TABLE} {{\n"
            + chain("acl_out", [], chains["out"]) + chain("acl_in", [], chains["in"])
            + chain("acl", ["type filter hook forward priority 0; policy accept;"], hook)
            + "}\n")


# --- OpenFlow (Open vSwitch) --------------------------------------------------------

def _of_match(r: Rule, direction: str) -> str:
    far, far_port = ("nw_dst", "tp_dst") if direction == "out" else ("nw_src", "tp_src")
    words: list[str] = []
    if r.ethertype == ARP:
        words.append("arp")
    elif r.protocol:
        words.append(r.protocol)
    elif r.remote_ip:
        words.append("ip")
    if r.remote_ip:
        words.append(f"{far}={r.remote_ip}")
    if r.remote_port is not None:
        words.append(f"{far_port}={r.remote_port}")
    return ",".join(words)


def openflow_flows(policy: Policy, a_ofport: int, a_mac: str) -> str:
    """`ovs-ofctl add-flows` text for a bridge whose port `a_ofport` is A.

    Table 0 (stateless) or 1 (stateful, after conntrack) sends A's frames
    to the "out" table and unicast toward `a_mac` to the "in" table;
    everything else (B's broadcasts) is forwarded as NORMAL.  Stateful:
    IP is sent through conntrack first (zone 1) and established or related
    traffic goes straight to NORMAL; a stateful allow commits the
    connection."""
    flows: list[str] = []
    if policy.stateful:
        flows += ["table=0,priority=100,ip,actions=ct(table=1,zone=1)",
                  "table=0,priority=0,actions=resubmit(,1)",
                  "table=1,priority=200,ct_state=+trk+est,ip,actions=NORMAL",
                  "table=1,priority=200,ct_state=+trk+rel,ip,actions=NORMAL"]
        sort_table, out_t, in_t = 1, 2, 3
    else:
        sort_table, out_t, in_t = 0, 1, 2
    flows += [f"table={sort_table},priority=100,in_port={a_ofport},actions=resubmit(,{out_t})",
              f"table={sort_table},priority=90,dl_dst={a_mac},actions=resubmit(,{in_t})",
              f"table={sort_table},priority=0,actions=NORMAL"]
    for r in policy.rules:
        for d in r.directions:
            table = out_t if d == "out" else in_t
            match = _of_match(r, d)
            if r.action == "deny":
                action = "drop"
            elif r.stateful:
                action = "ct(commit,zone=1),NORMAL"
            else:
                action = "NORMAL"
            # OpenFlow priorities are 16 bits; the weights fit.
            flows.append(f"table={table},priority={r.weight}"
                         f"{',' + match if match else ''},actions={action}")
    default = "drop" if policy.default == "deny" else "NORMAL"
    flows += [f"table={out_t},priority=0,actions={default}",
              f"table={in_t},priority=0,actions={default}"]
    return "\n".join(flows) + "\n"


def is_filler_flow(spec: str) -> bool:
    """Whether an `ovs-ofctl dump-flows` line is one of the filler rules'."""
    for word in spec.replace(" ", ",").split(","):
        if word.startswith(("nw_dst=", "nw_src=")):
            addr = word.split("=", 1)[1].split("/", 1)[0]
            return ipaddress.ip_address(addr) in FILLER_NET
    return False
